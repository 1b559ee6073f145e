#if canImport(Glibc)
import Glibc
#endif
import CCID
import ThreadSupport

/// `CCIDTransport` over a relay socket: one connection is one device; the
/// server closing it means the device is unplugged.
///
/// No reader thread: whichever thread waits for a frame reads the socket
/// itself (leader/follower) and files frames of other kinds into their
/// queues. The thread waiting for interrupts gives the socket up as soon as
/// an exchange starts, so a reply wakes the thread that wants it directly.
public final class RelayClientTransport: CCIDTransport, Sendable {
    public let identity: DeviceIdentity
    public let path: String
    private let stream: FrameStream
    private let wake: (read: Int32, write: Int32)
    private let log: @Sendable (String) -> Void

    private struct State: Sendable {
        var bulkIn: [[UInt8]] = []
        var interrupts: [[UInt8]] = []
        var controlReplies: [UInt32: (stalled: Bool, data: [UInt8])] = [:]
        var nextTag: UInt32 = 1
        var closed = false
        var interruptWaitCancelled = false
        /// A thread is reading the socket (it owns `stream`'s read side).
        var reading = false
        /// The reader is the interrupt waiter, which yields to exchanges.
        var readerYields = false
        /// An exchange is in flight: the interrupt waiter leaves the socket alone.
        var exchangeInFlight = false
        /// When the last exchange ended: the interrupt waiter takes the socket
        /// back only after `linger` of quiet, not between the messages of a
        /// chained APDU or back-to-back APDUs.
        var lastExchangeEnded = Deadline(nanoseconds: 0)
        /// The interrupt waiter sleeps until an exchange ends: its end wakes it.
        var waiterAwaitsExchangeEnd = false
        /// When the last bulk message went out, to learn how fast the peer answers.
        var sentAt = Deadline(nanoseconds: 0)
        var spin: AdaptiveSpin
        /// Whoever waits on the socket yields it to an exchange if this says so.
        var yieldingReader: Bool { reading && readerYields }
    }
    private let state: Mutex<State>
    /// Broadcast whenever `state` changes in a way a waiter may be waiting for.
    private let changed = Signal()

    /// Interrupt messages kept while nobody polls; older ones are dropped (a
    /// flood must not grow memory) — the slot status is re-read anyway.
    static let interruptQueueLimit = 64
    /// Unread bulk replies kept; a device that streams replies is cut off.
    static let bulkQueueLimit = 16
    /// Each time the interrupt waiter gives the socket up to an exchange it is
    /// woken (a pipe) and wakes again to take it back: two context switches,
    /// which cost more than the exchange itself on a busy machine (measured:
    /// ~20 µs of pcscd CPU per CCID message). While exchanges keep coming it
    /// stays away; frames they read on the way, interrupts included, are filed
    /// and wake it as before. Short, as an interrupt nobody reads waits for it.
    static let linger: Duration = .milliseconds(2)

    /// `spinBudget`: how long a thread waiting for a reply may poll before
    /// sleeping, while the peer keeps answering that fast (0: never).
    public init(path: String, deadline: Deadline, spinBudget: Duration = .zero,
                log: @escaping @Sendable (String) -> Void) throws(RelayConnectError) {
        self.path = path
        self.log = log
        state = Mutex(State(spin: AdaptiveSpin(budget: spinBudget)))
        let socket: StreamSocket
        do throws(SocketError) { socket = try StreamSocket.connect(path: path) } catch { throw .socket(error) }
        let stream = FrameStream(socket: socket)
        let first: RelayFrame
        do throws(FrameStream.ReadError) {
            first = try stream.receive(until: deadline)
        } catch {
            socket.close()
            switch error {
            case .protocolViolation(let e): throw .protocolViolation(e)
            case .timeout, .closed: throw .noHello
            case .socket(let e): throw .socket(e)
            }
        }
        guard case .hello(let hello) = first else {
            socket.close()
            throw .noHello
        }
        do throws(USBDescriptorError) { identity = try hello.descriptors.identity() } catch {
            socket.close()
            throw .descriptors(error)
        }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            socket.close()
            throw .socket(SocketError(operation: "pipe2", errno: errno))
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wake = (fds[0], fds[1])
        self.stream = stream
    }

    deinit {
        stream.socket.close()
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    // MARK: Reading, by whoever waits

    /// Waits until `take` finds what the caller wants in the state, reading
    /// the socket itself when nobody else does. `yields`: the interrupt
    /// waiter, which leaves the socket to exchanges.
    private func waitFor<T>(until deadline: Deadline, yields: Bool,
                            _ take: (inout State) throws(TransportError) -> T?) throws(TransportError) -> T {
        while true {
            let seen = changed.generation
            let step = try state.withLock { s throws(TransportError) -> WaitStep<T> in
                if let value = try take(&s) { return .done(value) }
                if s.closed { throw .noDevice }
                if deadline.hasPassed { throw .timeout }
                let quietFrom = s.lastExchangeEnded.advanced(by: Self.linger)
                if !s.reading && !(yields && (s.exchangeInFlight || !quietFrom.hasPassed)) {
                    s.reading = true
                    s.readerYields = yields
                    return .read
                }
                // The interrupt waiter kept off the socket looks again when the quiet
                // begins, or when the exchange in flight ends.
                var until = deadline
                if yields && !s.reading {
                    if s.exchangeInFlight { s.waiterAwaitsExchangeEnd = true } else { until = Deadline.min(deadline, quietFrom) }
                }
                return .wait(seen: seen, poke: s.yieldingReader && !yields, until: until)
            }
            switch step {
            case .done(let value): return value
            case .read:
                let outcome = readFrames(until: deadline, yields: yields)
                state.withLock { s in
                    s.reading = false
                    s.readerYields = false
                    file(outcome, into: &s)
                }
                changed.broadcast()
            case .wait(let seen, let poke, let until):
                if poke { self.poke() }
                changed.wait(after: seen, until: until)
            }
        }
    }

    private enum WaitStep<T> { case done(T), read, wait(seen: UInt64, poke: Bool, until: Deadline) }

    private enum ReadOutcome {
        case frames([RelayFrame])
        case nothing
        case closed(reason: String?)
    }

    /// Reads what the socket has (one read), or returns when poked or at the deadline.
    private func readFrames(until deadline: Deadline, yields: Bool) -> ReadOutcome {
        if !yields, let limit = state.withLock({ $0.spin.isWorthSpinning ? Deadline.after($0.spin.budget) : nil }) {
            var probe = pollfd(fd: stream.socket.fd, events: Int16(POLLIN), revents: 0)
            while poll(&probe, 1, 0) == 0 && !limit.hasPassed {}
        }
        var fds = [pollfd(fd: stream.socket.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        let ms = deadline == .distantFuture ? -1 : Int32(clamping: deadline.remaining.milliseconds + 1)
        let rc = poll(&fds, yields ? 2 : 1, ms)
        if rc < 0 { return errno == EINTR ? .nothing : .closed(reason: "poll: \(errno)") }
        if yields && fds[1].revents != 0 { drainWake() }
        guard fds[0].revents != 0 else { return .nothing }
        var frames: [RelayFrame] = []
        do throws(FrameStream.ReadError) {
            frames.append(try stream.receive(until: Deadline.now()))
            while let more = try stream.next() { frames.append(more) }
        } catch {
            switch error {
            case .timeout: break
            case .closed: return frames.isEmpty ? .closed(reason: nil) : .frames(frames)
            case .socket(let e): return .closed(reason: "\(e)")
            case .protocolViolation(let e): return .closed(reason: "\(e)")
            }
        }
        return .frames(frames)
    }

    /// Files frames into their queues; a violation drops the device.
    private func file(_ outcome: ReadOutcome, into s: inout State) {
        switch outcome {
        case .nothing: return
        case .closed(let reason):
            if let reason, !s.closed { log("relay \(path): \(reason); dropping the connection") }
            disconnect(&s)
        case .frames(let frames):
            for frame in frames {
                switch frame {
                case .bulkIn(let m):
                    guard s.bulkIn.count < Self.bulkQueueLimit else {
                        log("relay \(path): more than \(Self.bulkQueueLimit) unsolicited bulk replies; dropping the connection")
                        disconnect(&s)
                        return
                    }
                    s.bulkIn.append(m)
                    s.spin.record(.nanoseconds(Int64(clamping: Deadline.now().nanoseconds &- s.sentAt.nanoseconds)))
                case .interruptIn(let m):
                    if s.interrupts.count >= Self.interruptQueueLimit { s.interrupts.removeFirst() }
                    s.interrupts.append(m)
                case .controlReply(let tag, let stalled, let data):
                    s.controlReplies[tag] = (stalled, data)
                case .hello, .bulkOut, .control:
                    log("relay \(path): server sent a \(frame.frameType) frame; dropping the connection")
                    disconnect(&s)
                    return
                }
            }
        }
    }

    private func disconnect(_ s: inout State) {
        s.closed = true
        stream.socket.shutdown()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wake.read, &buffer, buffer.count) > 0 {}
    }

    // MARK: CCIDTransport

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        let (yieldingReader, closed) = state.withLock { s in
            s.exchangeInFlight = true
            s.sentAt = Deadline.now()
            return (s.yieldingReader, s.closed)
        }
        // Ask the interrupt waiter to give up the socket while the device works.
        if yieldingReader { poke() }
        if closed { throw .noDevice }
        do throws(SocketError) { try stream.send(.bulkOut(message)) } catch { throw .noDevice }
    }

    /// Runs `body` as an exchange in flight: the interrupt waiter leaves the
    /// socket alone until it ends and `linger` after (also while waiting again
    /// after a time extension, with nothing sent).
    private func inFlight<T>(_ body: () throws(TransportError) -> T) throws(TransportError) -> T {
        state.withLock { $0.exchangeInFlight = true }
        defer {
            let wake = state.withLock { s in
                s.exchangeInFlight = false
                s.lastExchangeEnded = .now()
                defer { s.waiterAwaitsExchangeEnd = false }
                return s.waiterAwaitsExchangeEnd
            }
            if wake { changed.broadcast() }
        }
        return try body()
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        try inFlight { () throws(TransportError) -> [UInt8] in
            try waitFor(until: deadline, yields: false) { s in s.bulkIn.isEmpty ? nil : s.bulkIn.removeFirst() }
        }
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        try waitFor(until: deadline, yields: true) { s throws(TransportError) -> [UInt8]? in
            if !s.interrupts.isEmpty { return s.interrupts.removeFirst() }
            if s.interruptWaitCancelled {
                s.interruptWaitCancelled = false
                throw .cancelled
            }
            return nil
        }
    }

    /// Ends the current (or, if none, the next) interrupt wait: pcscd may ask
    /// to stop polling before the polling thread has started waiting.
    public func cancelInterruptWait() {
        let poker = state.withLock { s in
            s.interruptWaitCancelled = true
            return s.yieldingReader
        }
        changed.broadcast()
        if poker { poke() }
    }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        let (tag, yieldingReader) = state.withLock { s in
            defer { s.nextTag &+= 1 }
            s.exchangeInFlight = true
            return (s.nextTag, s.yieldingReader)
        }
        if yieldingReader { poke() }
        do throws(SocketError) { try stream.send(.control(tag: tag, request)) } catch { throw .noDevice }
        let reply = try inFlight { () throws(TransportError) -> (stalled: Bool, data: [UInt8]) in
            try waitFor(until: deadline, yields: false) { s in s.controlReplies.removeValue(forKey: tag) }
        }
        if reply.stalled { throw .stalled }
        return request.isDeviceToHost ? Array(reply.data.prefix(Int(request.length))) : []
    }

    /// Unplugs from our side: every waiter returns `.noDevice`.
    public func close() {
        state.withLock { $0.closed = true }
        changed.broadcast()
        stream.socket.shutdown()
        poke()
    }
}

public enum RelayConnectError: Error, Sendable, CustomStringConvertible {
    case socket(SocketError)
    case noHello
    case protocolViolation(RelayError)
    case descriptors(USBDescriptorError)

    public var description: String {
        switch self {
        case .socket(let e): "\(e)"
        case .noHello: "relay server sent no hello"
        case .protocolViolation(let e): "\(e)"
        case .descriptors(let e): "\(e)"
        }
    }
}
