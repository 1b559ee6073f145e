import CCID
import ThreadSupport

/// Card events from the interrupt pipe, fanned out to one waiter per slot:
/// pcscd runs a polling thread for each slot of a multi-slot reader, but the
/// reader has a single interrupt pipe, so one thread (`pump`) reads it and
/// counts. A single-slot reader needs no such thread: its one waiter, pcscd's
/// polling thread, reads the pipe itself (`direct`), as libccid's does, which
/// saves a thread and its stack per reader.
final class CardEvents: Sendable {
    private struct State: Sendable {
        /// Events seen per slot, and what each waiter last saw.
        var generation: [UInt64]
        var seen: [UInt64]
        var stopRequested: [Bool]
        /// When the interrupt pipe failed for good, if it has.
        var goneAt: Deadline?
    }
    private let state: Mutex<State>
    /// Each slot's waiter sleeps on its own wakeup.
    private let wakeups: [Wakeup]
    /// The interrupt pipe the waiter reads itself (a single-slot reader), or nil (a pump, or no pipe).
    private let direct: CCIDTransport?
    /// Whether `pipe` needs a thread of its own running `pump` (several slots share it).
    static func needsPump(slotCount: Int) -> Bool { slotCount != 1 }
    private let log: @Sendable (String) -> Void
    /// How long a wait holds on after the device went, for pcscd's stop.
    static let goneGrace: Duration = .seconds(2)

    init(slotCount: Int, readDirectly transport: CCIDTransport? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        let zeros = [UInt64](repeating: 0, count: slotCount)
        state = Mutex(State(generation: zeros, seen: zeros, stopRequested: Array(repeating: false, count: slotCount)))
        wakeups = (0..<slotCount).map { _ in Wakeup() }
        direct = Self.needsPump(slotCount: slotCount) ? nil : transport
        self.log = log
    }

    /// Runs on its own thread until the transport closes.
    func pump(from transport: CCIDTransport) {
        while receiveOne(from: transport, until: .distantFuture) {}
    }

    /// Waits for one interrupt message and counts it; false once the pipe has failed for good.
    private func receiveOne(from transport: CCIDTransport, until deadline: Deadline) -> Bool {
        let bytes: [UInt8]
        do throws(TransportError) {
            bytes = try transport.receiveInterrupt(deadline: deadline)
        } catch {
            if error == .cancelled || error == .timeout { return true }
            state.withLock { $0.goneAt = .now() }
            for w in wakeups { w.signal() }
            return false
        }
        let message: InterruptMessage
        do throws(CCIDDecodingError) { message = try InterruptMessage(decoding: bytes) } catch {
            log("dropping interrupt message (\(error)): \(hexString(bytes.prefix(16)))")
            return true
        }
        var changed: [Int] = []
        switch message {
        case .notifySlotChange(let changes):
            changed = changes.enumerated().filter { $0.element.changed }.map(\.offset)
        case .hardwareError(let slot, _, let code):
            log("reader reports hardware error 0x\(hexString([code])) on slot \(slot)")
            changed = [Int(slot)]
        }
        changed = changed.filter { wakeups.indices.contains($0) }
        state.withLock { s in for slot in changed { s.generation[slot] &+= 1 } }
        for slot in changed { wakeups[slot].signal() }
        return true
    }

    enum WaitResult { case changed, timeout, stopped, deviceGone }

    /// Waits for an event on `slot` not yet reported to this slot's waiter;
    /// with a `direct` pipe, reading it meanwhile (`stop` cancels the read).
    func wait(slot: Int, until deadline: Deadline) -> WaitResult {
        guard wakeups.indices.contains(slot) else { return .deviceGone }
        while true {
            enum Next { case result(WaitResult), sleep(Deadline), read(Deadline) }
            let next: Next = state.withLock { s in
                if s.stopRequested[slot] {
                    s.stopRequested[slot] = false
                    return .result(.stopped)
                }
                if s.generation[slot] != s.seen[slot] {
                    s.seen[slot] = s.generation[slot]
                    return .result(.changed)
                }
                // pcscd's hotplug removes an unplugged USB reader and stops this
                // wait within a moment; answering "gone" at once instead sends its
                // event thread into a slower path (measured: the reader goes about
                // 1 s later than with libccid, which also waits). Readers pcscd
                // does not hotplug (relay) learn of it after a short grace.
                if let goneAt = s.goneAt {
                    let grace = Deadline.min(deadline, goneAt.advanced(by: Self.goneGrace))
                    return grace.hasPassed ? .result(.deviceGone) : .sleep(grace)
                }
                if deadline.hasPassed { return .result(.timeout) }
                return direct == nil ? .sleep(deadline) : .read(deadline)
            }
            switch next {
            case .result(let r): return r
            case .sleep(let until): wakeups[slot].wait(until: until)
            case .read(let until): if let direct { _ = receiveOne(from: direct, until: until) }
            }
        }
    }

    /// Ends the current wait of `slot`, or the next one if none is in progress.
    func stop(slot: Int) {
        guard wakeups.indices.contains(slot) else { return }
        state.withLock { $0.stopRequested[slot] = true }
        wakeups[slot].signal()
        direct?.cancelInterruptWait()
    }

    func stopAll() {
        state.withLock { s in for i in s.stopRequested.indices { s.stopRequested[i] = true } }
        for w in wakeups { w.signal() }
        direct?.cancelInterruptWait()
    }
}

extension Reader {
    public enum CardEventWait: Sendable { case changed, timeout, stopped, deviceGone }

    /// Blocks until the card in `slot` may have changed, for pcscd's polling thread.
    public func waitForCardEvent(slot: Int, timeout: Duration) -> CardEventWait {
        switch events.wait(slot: slot, until: .after(timeout)) {
        case .changed: .changed
        case .timeout: .timeout
        case .stopped: .stopped
        case .deviceGone: .deviceGone
        }
    }

    public func stopWaitingForCardEvent(slot: Int) { events.stop(slot: slot) }
}
