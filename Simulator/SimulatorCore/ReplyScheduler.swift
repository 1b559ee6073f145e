import ThreadSupport

/// Times one simulated reader's replies on one bus (relay, umockdev, gadget
/// or in-process): the one place for reply delay, ABORT and hang-up.
///
/// Replies without delay go out at once on the caller's thread while nothing
/// waits before them (back-to-back exchanges cost no thread hop). Others wait
/// in order on a thread that lives while there is something to send, so the
/// bus keeps reading meanwhile: an ABORT class request then reaches the
/// reader while its command's replies wait, and those not yet sent are
/// dropped (unless the reader is set to answer anyway).
public final class ReplyScheduler: Sendable {
    /// Where the replies go: `send` writes one bulk-in message; `hangUp` makes
    /// the device go away (relay: the connection drops; USB: it falls silent).
    public struct Sink: Sendable {
        public let send: @Sendable ([UInt8]) -> Void
        public let hangUp: @Sendable () -> Void
        public init(send: @escaping @Sendable ([UInt8]) -> Void, hangUp: @escaping @Sendable () -> Void = {}) {
            self.send = send
            self.hangUp = hangUp
        }
    }

    private struct Pending: Sendable {
        let due: Deadline
        let reply: TimedReply
    }

    private struct State: Sendable {
        var sink: Sink?
        var queue: [Pending] = []
        var threadRunning = false
        /// A reply is being written, inline or by the thread: the next waits for it (order).
        var sending = false
    }

    private let state: Mutex<State>
    private let wakeup = Wakeup()

    public init(sink: Sink? = nil) { state = Mutex(State(sink: sink)) }

    /// The bus can carry data now (a relay client connected, a USB host opened the device).
    public func attach(_ sink: Sink) { state.withLock { $0.sink = sink } }

    /// The bus is gone: what waits is dropped, and once this returns the sink
    /// is not called again (its socket can be closed).
    public func detach() {
        state.withLock {
            $0.sink = nil
            $0.queue = []
        }
        wakeup.signal()
        let limit = Deadline.after(.seconds(2))
        while state.withLock({ $0.sending }) && !limit.hasPassed { usleep(1_000) }
    }

    /// Queues one command's replies; each reply's delay counts from the one
    /// before it, the first's from when the reader is done with what it sent before.
    public func deliver(_ replies: [TimedReply]) {
        guard !replies.isEmpty else { return }
        enum Plan { case inline(Sink), queued(startThread: Bool), dropped }
        let plan: Plan = state.withLock { s in
            guard let sink = s.sink else { return .dropped }
            if s.queue.isEmpty, !s.sending, replies.allSatisfy({ $0.delay == .zero && !$0.hangUp }) {
                s.sending = true
                return .inline(sink)
            }
            var due = Deadline.max(.now(), s.queue.last?.due ?? .now())
            for reply in replies {
                due = due.advanced(by: reply.delay)
                s.queue.append(Pending(due: due, reply: reply))
            }
            defer { s.threadRunning = true }
            return .queued(startThread: !s.threadRunning)
        }
        switch plan {
        case .dropped: return
        case .inline(let sink):
            for reply in replies { sink.send(reply.bytes) }
            state.withLock { $0.sending = false }
            wakeup.signal()
        case .queued(let start):
            if start, !startThread({ [self] in run() }) {
                state.withLock { s in s.threadRunning = false; s.queue = [] }
            }
            wakeup.signal()
        }
    }

    /// The host sent ABORT: the replies still waiting go, except a late reader's.
    public func abort() {
        state.withLock { $0.queue.removeAll { !$0.reply.survivesAbort } }
        wakeup.signal()
    }

    /// The sender thread: each reply when due, in order; it ends when nothing waits.
    private func run() {
        enum Step { case exit, wait(Deadline), send(TimedReply, Sink) }
        while true {
            let step: Step = state.withLock { s in
                guard let first = s.queue.first else {
                    s.threadRunning = false
                    return .exit
                }
                guard let sink = s.sink else {
                    s.queue = []
                    s.threadRunning = false
                    return .exit
                }
                // An inline send in progress goes first.
                if s.sending { return .wait(.after(.milliseconds(1))) }
                if first.due > .now() { return .wait(first.due) }
                s.queue.removeFirst()
                s.sending = true
                return .send(first.reply, sink)
            }
            switch step {
            case .exit: return
            case .wait(let until): wakeup.wait(until: until)
            case .send(let reply, let sink):
                if reply.hangUp { sink.hangUp() } else { sink.send(reply.bytes) }
                state.withLock { $0.sending = false }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
