import CCID
import ISO7816
import ReaderQuirks
import ThreadSupport

/// One CCID reader: its slots, the bulk exchange with sequence numbers and
/// deadlines, and the card events from its interrupt pipe. Safe to call from
/// pcscd's reader, event and hotplug threads at once.
public final class Reader: Sendable {
    public let transport: CCIDTransport
    /// The device as it really behaves: its descriptor with the quirks' rewrites applied.
    public let identity: DeviceIdentity
    /// What the driver does differently for this device (ReaderQuirks); refined
    /// at open by what the firmware says of itself (quirk P4).
    public var quirks: AppliedQuirks { appliedQuirks.withLock { $0 } }
    private let appliedQuirks: Mutex<AppliedQuirks>
    public var descriptor: ClassDescriptor { identity.classDescriptor }
    public let timeouts: ExchangeTimeouts
    let log: @Sendable (String) -> Void

    /// One command in flight per reader; holds the last bSeq used.
    private let sequence = Mutex<UInt8>(0)
    private let slots: Mutex<[SlotState]>
    /// One operation at a time per slot (power, protocol selection, APDU, PIN
    /// entry): a TPDU exchange is many commands long, and a reset or a new
    /// protocol must not land between them or under the T=1 state it leaves.
    /// pcscd serialises a reader's calls itself; the driver does not rely on it.
    let slotGates: [SlotGate]
    let events: CardEvents
    /// Quirk M6: slots whose power-up found no card, on a reader that cannot sense one; empty until reopened.
    let noCardFound = Mutex<Set<Int>>([])

    public init(transport: CCIDTransport, timeouts: ExchangeTimeouts = ExchangeTimeouts(), quirks: AppliedQuirks = .none,
                log: @escaping @Sendable (String) -> Void) {
        // An ICCD token is driven through the same commands; its transport makes them class requests.
        let transport = ICCDTransport.wrapping(transport)
        self.transport = transport
        identity = quirks.adjusted(transport.identity)
        appliedQuirks = Mutex(quirks)
        self.timeouts = timeouts
        self.log = log
        let slotCount = identity.classDescriptor.slotCount
        self.slotCount = slotCount
        slots = Mutex(Array(repeating: SlotState(), count: slotCount))
        slotGates = (0..<slotCount).map { _ in SlotGate() }
        let pipe = identity.hasInterruptEndpoint ? transport : nil
        events = CardEvents(slotCount: slotCount, readDirectly: pipe, log: log)
        // A multi-slot reader's pipe is read by a thread of its own (see CardEvents).
        if let pipe, CardEvents.needsPump(slotCount: slotCount) {
            let events = self.events
            if !startThread({ events.pump(from: pipe) }) {
                log("cannot start the interrupt thread; card events will be polled")
            }
        }
    }

    /// What the firmware said of itself (quirk P4) refines the quirks from now on.
    func refineQuirks(by features: GemaltoFirmwareFeatures) {
        appliedQuirks.withLock { $0 = $0.refined(by: features) }
    }

    /// Fixed at init, so that checking a slot number takes no lock.
    public let slotCount: Int

    public func state(of slot: Int) -> SlotState? {
        slots.withLock { $0.indices.contains(slot) ? $0[slot] : nil }
    }

    func update(_ slot: Int, _ change: (inout SlotState) -> Void) {
        slots.withLock { if $0.indices.contains(slot) { change(&$0[slot]) } }
    }

    func checkSlot(_ slot: Int) throws(DriverError) -> UInt8 {
        guard slot >= 0, slot < slotCount, let s = UInt8(exactly: slot) else { throw .invalidSlot(slot) }
        return s
    }

    /// Runs `body` as the only power, protocol, APDU or PIN operation on `slot`.
    func serialised<T>(slot: Int, _ body: (UInt8) throws(DriverError) -> T) throws(DriverError) -> T {
        let s = try checkSlot(slot)   // slotGates has slotCount gates
        return try slotGates[slot].lock.withLock { () throws(DriverError) -> T in try body(s) }
    }

    /// Lets the device go. `poweringOff` (the last user closed it, G24): powered
    /// cards are powered off first, each within a short deadline, failures
    /// ignored; skipped while a command is in flight (that user is being torn down).
    public func close(poweringOff: Bool = false) {
        if poweringOff, !isExchanging {
            for slot in 0..<slotCount where state(of: slot)?.powered == true {
                guard let s = UInt8(exactly: slot) else { continue }
                do throws(DriverError) {
                    _ = try exchange(.iccPowerOff, slot: s, waitingTime: .zero, cap: .after(Self.powerOffAtClose))
                } catch {
                    log("slot \(slot): power-off at close: \(error)")
                }
            }
        }
        events.stopAll()
        transport.close()
    }

    /// What powering a card off may take when the reader is closed.
    static let powerOffAtClose: Duration = .milliseconds(500)

    /// Whether a command is in flight right now (a snapshot, for shutdown decisions).
    public var isExchanging: Bool {
        sequence.withLockIfAvailable { _ in false } ?? true
    }

    // MARK: One command, one reply

    /// Sends `body` to `slot` and waits for its reply under one deadline:
    /// replies with another slot or sequence are dropped, time extensions move
    /// the deadline within its cap, expiry aborts the command.
    func exchange(_ body: Command.Body, slot: UInt8, waitingTime: Duration, cap: Deadline? = nil) throws(DriverError) -> Reply {
        try self.sequence.withLock { sequence throws(DriverError) -> Reply in
            sequence &+= 1
            return try exchangeLocked(body, slot: slot, sequence: sequence, waitingTime: waitingTime, cap: cap)
        }
    }

    private func exchangeLocked(_ body: Command.Body, slot: UInt8, sequence: UInt8, waitingTime: Duration,
                                cap: Deadline?) throws(DriverError) -> Reply {
        let command = Command(slot: slot, sequence: sequence, body: body)
        var deadline = ExchangeDeadline(waitingTime: waitingTime, timeouts: timeouts, cap: cap)
        if deadline.current.hasPassed { throw .timeout }
        do throws(TransportError) {
            try transport.sendBulk(command.encoded(), deadline: deadline.current)
        } catch {
            throw DriverError(error)
        }
        let expected = Reply.expectedType(for: command.messageType)
        while true {
            let bytes: [UInt8]
            do throws(TransportError) {
                bytes = try transport.receiveBulk(deadline: deadline.current)
            } catch {
                if error == .timeout {
                    log("slot \(slot) seq \(command.sequence): no reply before the deadline; aborting")
                    abortLocked(slot: slot, sequence: command.sequence)
                }
                throw DriverError(error)
            }
            let reply: Reply
            do throws(CCIDDecodingError) { reply = try Self.decodeTolerantly(bytes, log: log) } catch {
                log("slot \(slot): dropping undecodable reply (\(error)): \(hexString(bytes.prefix(32)))")
                continue
            }
            guard reply.slot == slot, reply.sequence == command.sequence else {
                log("dropping stale reply for slot \(reply.slot) seq \(reply.sequence) (awaiting slot \(slot) seq \(command.sequence))")
                continue
            }
            if reply.status.command == .timeExtension {
                deadline.extend(multiplier: reply.error)
                continue
            }
            guard reply.messageType == expected else {
                throw .protocolViolation("\(reply.messageType) in answer to \(command.messageType)")
            }
            return reply
        }
    }

    /// Bytes after the dwLength the header declares are ignored, as libccid
    /// does: QEMU's usb-ccid answers Get/SetParameters with dwLength 0 and the
    /// parameters after it. Fewer bytes than declared stay an error.
    static func decodeTolerantly(_ bytes: [UInt8], log: (String) -> Void) throws(CCIDDecodingError) -> Reply {
        do throws(CCIDDecodingError) {
            return try Reply(decoding: bytes)
        } catch .lengthMismatch(let declared, let actual) where actual > Int(declared) {
            log("reply carries \(actual - Int(declared)) bytes beyond its dwLength of \(declared); ignoring them")
            return try Reply(decoding: bytes.prefix(ccidHeaderLength + Int(declared)))
        }
    }

    /// CCID §5.3.1: the ABORT class request and PC_to_RDR_Abort with the same
    /// slot and sequence, then drain until the abort's answer, for at most the transport margin.
    private func abortLocked(slot: UInt8, sequence: UInt8) {
        let limit = Deadline.after(timeouts.transportMargin)
        _ = try? transport.control(.abort(slot: slot, sequence: sequence, interface: UInt16(identity.interfaceNumber)),
                                   deadline: limit)
        let abort = Command(slot: slot, sequence: sequence, body: .abort)
        guard (try? transport.sendBulk(abort.encoded(), deadline: limit)) != nil else { return }
        while let bytes = try? transport.receiveBulk(deadline: limit) {
            if let r = try? Reply(decoding: bytes), r.slot == slot, r.sequence == sequence,
               r.messageType == .slotStatus { return }
        }
    }

    /// Turns a failed reply into an error; `ICC_MUTE` with an absent card is `.noCard`.
    func check(_ reply: Reply) throws(DriverError) {
        guard reply.status.command == .failed else { return }
        if reply.status.icc == .absent { throw .noCard }
        switch reply.slotError {
        case .iccMute: throw .cardMute
        default: throw .commandFailed(reply.slotError)
        }
    }

    var controlWaitingTime: Duration { .seconds(2) }
}

/// What one slot's operations queue on: a lock that guards no state, so a
/// plain `Lock` (a `Mutex<Void>` has a zero-sized value, whose address
/// ThreadSanitizer confuses with the lock's own).
final class SlotGate: Sendable {
    let lock = Lock()
}
