import CCID
import ThreadSupport

/// Card events from the interrupt pipe, fanned out to one waiter per slot:
/// pcscd runs a polling thread for each slot of a multi-slot reader, but the
/// reader has a single interrupt pipe, so one thread reads it and counts.
final class CardEvents: @unchecked Sendable {
    private let state = ConditionLock()
    /// Guarded by `state`: events seen per slot, and what each waiter last saw.
    private var generation: [UInt64]
    private var seen: [UInt64]
    private var stopRequested: [Bool]
    /// When the interrupt pipe failed for good, if it has.
    private var goneAt: Deadline?
    /// How long a wait holds on after the device went, for pcscd's stop.
    static let goneGrace: Duration = .seconds(2)

    init(slotCount: Int) {
        generation = Array(repeating: 0, count: slotCount)
        seen = generation
        stopRequested = Array(repeating: false, count: slotCount)
    }

    /// Runs on its own thread until the transport closes.
    func pump(from transport: CCIDTransport, log: @Sendable (String) -> Void) {
        while true {
            let bytes: [UInt8]
            do throws(TransportError) {
                bytes = try transport.receiveInterrupt(deadline: .distantFuture)
            } catch {
                if error == .cancelled || error == .timeout { continue }
                break
            }
            let message: InterruptMessage
            do throws(CCIDDecodingError) { message = try InterruptMessage(decoding: bytes) } catch {
                log("dropping interrupt message (\(error)): \(hexString(bytes.prefix(16)))")
                continue
            }
            state.withLock {
                switch message {
                case .notifySlotChange(let changes):
                    for (slot, change) in changes.enumerated() where change.changed && slot < generation.count {
                        generation[slot] &+= 1
                    }
                case .hardwareError(let slot, _, let code):
                    log("reader reports hardware error 0x\(hexString([code])) on slot \(slot)")
                    if Int(slot) < generation.count { generation[Int(slot)] &+= 1 }
                }
                state.broadcast()
            }
        }
        state.withLock {
            goneAt = .now()
            state.broadcast()
        }
    }

    enum WaitResult { case changed, timeout, stopped, deviceGone }

    /// Waits for an event on `slot` not yet reported to this slot's waiter.
    func wait(slot: Int, until deadline: Deadline) -> WaitResult {
        state.lock()
        defer { state.unlock() }
        guard generation.indices.contains(slot) else { return .deviceGone }
        while true {
            if stopRequested[slot] {
                stopRequested[slot] = false
                return .stopped
            }
            if generation[slot] != seen[slot] {
                seen[slot] = generation[slot]
                return .changed
            }
            // pcscd's hotplug removes an unplugged USB reader and stops this
            // wait within a moment; answering "gone" at once instead sends its
            // event thread into a slower path (measured: the reader goes about
            // 1 s later than with libccid, which also waits). Readers pcscd
            // does not hotplug (relay) learn of it after a short grace.
            if let goneAt {
                let grace = Deadline.min(deadline, goneAt.advanced(by: Self.goneGrace))
                if grace.hasPassed { return .deviceGone }
                _ = state.wait(until: grace)
                continue
            }
            if !state.wait(until: deadline), deadline.hasPassed { return .timeout }
        }
    }

    /// Ends the current wait of `slot`, or the next one if none is in progress.
    func stop(slot: Int) {
        state.withLock {
            if stopRequested.indices.contains(slot) { stopRequested[slot] = true }
            state.broadcast()
        }
    }

    func stopAll() {
        state.withLock {
            for i in stopRequested.indices { stopRequested[i] = true }
            state.broadcast()
        }
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
