import CCID
import Relay
import RelayServer
import ThreadSupport

/// One simulated reader as the buses see it: the device model (`ReaderModel`)
/// behind a mutex, its USB identity, and who hears its interrupt messages.
/// Each bus times the replies with its own `ReplyScheduler`; the relay's is
/// here, as the reader is the relay's `RelayDevice`.
public final class SimulatedReader: RelayDevice, Sendable {
    public let name: String
    public let profile: ReaderProfile
    public let serialNumber: String
    public let descriptors: USBDescriptorSet
    public var descriptor: ClassDescriptor { profile.descriptor }
    public let slotCount: Int

    private let model: Mutex<ReaderModel>
    private let interruptObservers = Mutex<[@Sendable ([UInt8]) -> Void]>([])
    private let relay = ReplyScheduler()
    private let relayConnection = Mutex<RelayServerConnection?>(nil)
    private let recorder: Recorder?
    private let trace: USBTrace?
    private let traffic = Mutex(MessageCounts())
    /// Until when a firmware with `boot-silence` ignores commands.
    private let silentUntil = Mutex<Deadline?>(nil)
    /// When the last bulk-out command came (for firmware that minds the gap between commands).
    private let lastCommand = Mutex<Deadline?>(nil)

    /// CCID messages through the bulk pipes since the reader was created, for
    /// `ccid-sim list --counts` (a benchmark's cost per message).
    public struct MessageCounts: Sendable, Equatable {
        public var bulkOut = 0
        public var bulkIn = 0
    }

    public var messageCounts: MessageCounts { traffic.withLock { $0 } }

    /// `recorder`: the slots' card events and exchanges go to it; `capture`:
    /// the reader's USB traffic, as device `deviceNumber` on bus 1.
    public init(name: String, profile: ReaderProfile, serialNumber: String, timing: ReaderTiming = .realistic,
                recorder: Recorder? = nil, capture: USBCapture? = nil, deviceNumber: UInt8 = 2) {
        self.name = name
        self.recorder = recorder
        self.profile = profile
        self.serialNumber = serialNumber
        descriptors = USBDescriptorSet.ccidDevice(
            vendorID: profile.vendorID, productID: profile.productID, bcdDevice: profile.bcdDevice,
            manufacturer: profile.manufacturer, product: profile.product, serialNumber: serialNumber,
            classDescriptor: profile.descriptor, layout: profile.usbLayout)
        model = Mutex(ReaderModel(profile: profile, timing: timing))
        slotCount = profile.descriptor.slotCount
        trace = capture?.device(deviceNumber, descriptors: descriptors)
        startBootSilence()
    }

    /// The firmware (re)starts: with `boot-silence`, commands go unanswered for a while.
    private func startBootSilence() {
        guard let silence = profile.firmwareBugs.bootSilence else { return }
        silentUntil.withLock { $0 = .after(silence) }
    }

    /// A bus's sink for this reader's bulk-in replies, seen by the capture on the way.
    public func sink(send: @escaping @Sendable ([UInt8]) -> Void, hangUp: @escaping @Sendable () -> Void = {}) -> ReplyScheduler.Sink {
        guard let trace else { return ReplyScheduler.Sink(send: send, hangUp: hangUp) }
        return ReplyScheduler.Sink(send: { message in
            trace.bulkIn(message)
            send(message)
        }, hangUp: hangUp)
    }

    public func cardName(slot: Int) -> String? { model.withLock { $0.cardName(slot: slot) } }
    public func setPINPad(_ action: PINPadAction) { model.withLock { $0.setPINPad(action) } }
    public func faults(slot: Int) -> Faults? { model.withLock { $0.faults(slot: slot) } }
    public var dataRates: [UInt32] { model.withLock { $0.dataRates } }
    /// The display prompts the host loaded (`needs-prompts`), if it did.
    public var displayPrompts: [String]? { model.withLock { $0.displayPrompts } }

    /// Switches faults on the slot (`name[=value]` settings); returns false on an unknown setting.
    public func setFaults(slot: Int, _ settings: [String]) throws(SlotActionError) -> Bool {
        try checkSlot(slot)
        return model.withLock { $0.setFaults(slot: slot, settings) }
    }

    public enum SlotActionError: Error, CustomStringConvertible {
        case noSuchSlot(Int, count: Int)
        public var description: String {
            switch self {
            case .noSuchSlot(let s, let n): "slot \(s) does not exist (reader has \(n))"
            }
        }
    }

    private func checkSlot(_ slot: Int) throws(SlotActionError) {
        guard slot >= 0, slot < slotCount else { throw .noSuchSlot(slot, count: slotCount) }
    }

    // MARK: Card events

    public func insert(_ card: SimulatedCard, slot: Int) throws(SlotActionError) { try setCard(card, slot: slot) }
    public func remove(slot: Int) throws(SlotActionError) { try setCard(nil, slot: slot) }

    /// Takes `card` out, if it is still the slot's card (a card process that
    /// went away must not take out the card that replaced it).
    public func remove(slot: Int, ifStill card: SimulatedCard) {
        guard let message = model.withLock({ m in m.card(slot: slot)?.identity == card.identity ? m.setCard(nil, slot: slot) : nil }) else { return }
        recorder?.record(reader: name, slot: slot, .remove)
        interrupt([message])
    }

    private func setCard(_ card: SimulatedCard?, slot: Int) throws(SlotActionError) {
        try checkSlot(slot)
        let placed = card.map { c in recorder.map { RecordedCard(c, recorder: $0, reader: name, slot: slot) } ?? c }
        let (message, hadCard) = model.withLock { m in
            let had = m.card(slot: slot) != nil
            return (m.setCard(placed, slot: slot), had)
        }
        guard let message else { return }
        if card != nil || hadCard { recorder?.record(reader: name, slot: slot, card == nil ? .remove : .insert, card: card?.name) }
        interrupt([message])
    }

    /// For buses other than the relay: interrupt messages as the reader sends them.
    public func observeInterrupts(_ observer: @escaping @Sendable ([UInt8]) -> Void) {
        interruptObservers.withLock { $0.append(observer) }
    }

    private func interrupt(_ messages: [[UInt8]]) {
        guard !messages.isEmpty else { return }
        let connection = relayConnection.withLock { $0 }
        let observers = interruptObservers.withLock { $0 }
        for message in messages {
            trace?.interrupt(message)
            connection?.send(.interruptIn(message))
            for observer in observers { observer(message) }
        }
    }

    // MARK: What every bus calls

    /// One bulk-out message: the interrupts it causes go out now, its replies
    /// are returned for the bus's scheduler.
    public func respond(to message: [UInt8]) -> [TimedReply] {
        trace?.bulkOut(message)
        if let until = silentUntil.withLock({ $0 }), !until.hasPassed {
            traffic.withLock { $0.bulkOut &+= 1 }
            return []
        }
        let now = Deadline.now()
        let previous = lastCommand.withLock { last in defer { last = now }; return last }
        let output = model.withLock { m in
            m.sinceLastCommand = previous.map { .nanoseconds(Int64(clamping: now.nanoseconds &- $0.nanoseconds)) }
            return m.respond(to: message)
        }
        traffic.withLock {
            $0.bulkOut &+= 1
            $0.bulkIn &+= output.replies.count
        }
        interrupt(output.interrupts)
        return output.replies
    }

    /// Class requests (CCID §5.3); nil stalls. The bus's scheduler drops an aborted command's replies.
    public func controlRequest(_ request: ControlRequest, scheduler: ReplyScheduler? = nil) -> [UInt8]? {
        let answer = model.withLock { $0.control(request) }
        trace?.control(request, answer: answer)
        if request.requestType == 0x21, request.request == ClassRequest.abort.rawValue { scheduler?.abort() }
        return answer
    }

    /// The host let go of the device: as after a USB reset, cards are unpowered.
    public func hostReleased() { model.withLock { $0.hostReleased() } }

    // MARK: RelayDevice

    public func connected(_ connection: RelayServerConnection) {
        relayConnection.withLock { $0 = connection }
        startBootSilence()
        relay.attach(sink(send: { connection.send(.bulkIn($0)) }, hangUp: { connection.hangUp() }))
    }

    public func disconnected(_ connection: RelayServerConnection) {
        // The listener closes the socket next: the scheduler must be done with it.
        relay.detach()
        relayConnection.withLock { if $0 === connection { $0 = nil } }
        hostReleased()
    }

    public func bulkOut(_ message: [UInt8], from connection: RelayServerConnection) {
        relay.deliver(respond(to: message))
    }

    public func control(_ request: ControlRequest, from connection: RelayServerConnection) -> [UInt8]? {
        controlRequest(request, scheduler: relay)
    }
}
