import CCID
import ISO7816
import Relay
import ThreadSupport

/// A reply and how long the reader waits before sending it.
public struct TimedReply: Sendable {
    public var delay: Duration
    public var reply: Reply
    /// Bytes sent instead of `reply` (malformed messages for fault injection).
    public var raw: [UInt8]? = nil
    /// Sent even after the host aborted the command (a reader that answers after Abort).
    public var survivesAbort = false
    /// Instead of this reply the reader goes away (relay: the connection drops).
    public var hangUp = false

    /// What goes on the wire.
    public var bytes: [UInt8] { raw ?? reply.encoded() }
}

/// A simulated CCID reader at short or extended APDU exchange level: the
/// device side of the relay, or of an in-process transport in tests.
public final class SimulatedReader: RelayDevice, @unchecked Sendable {
    public let name: String
    public let profile: ReaderProfile
    public let serialNumber: String
    public let descriptors: USBDescriptorSet
    public var descriptor: ClassDescriptor { profile.descriptor }

    /// What the user does at the PIN pad when asked.
    public enum PINPadAction: Sendable, Equatable { case enter(String), cancel, timeout }

    private let lock = Lock()
    private var aborts: UInt64 = 0
    /// Replies of a command that takes time, for the sender thread (relay only).
    private var outgoing: [(step: TimedReply, generation: UInt64)] = []
    private var senderRunning = false
    private var draining = false
    private var slots: [SlotModel]
    private var connection: RelayServerConnection?
    private var interruptObservers: [@Sendable ([UInt8]) -> Void] = []
    private var pinPad: PINPadAction = .enter("1234")
    /// Time extensions are sent at this interval while the card is busy.
    static let timeExtensionInterval: Duration = .milliseconds(200)

    struct SlotModel {
        var card: SimulatedCard?
        var powered = false
        var protocolType: UInt8 = 0
        var parameters: [UInt8] = []
        var commandChain: [UInt8]? = nil
        var pendingResponse: [UInt8] = []
        /// T=1 at TPDU level: the card's engine, the response it owes, how long it stays busy.
        var t1: T1Card? = nil
        var t1Response: [UInt8] = []
        var t1Busy: Duration = .zero
        var t1WTXLeft = 0
        var faults = Faults()
        /// Fi/Di agreed by PPS; PPS is possible only right after the ATR.
        var fiDi: UInt8 = 0x11
        var ppsAllowed = false
        /// The rate the reader was told to use (SetParameters); unlike the card's, nothing is heard.
        var readerFiDi: UInt8 = 0x11
        /// Character level: bytes the card has sent and the reader not yet returned,
        /// how long the card is busy first, and partial input.
        var characterOut: [UInt8] = []
        var characterBusy: Duration = .zero
        var t0Character = T0CharacterCard()
        var t1CharacterIn: [UInt8] = []
        var ppsIn: [UInt8] = []
        var blockCounter = FaultCounter(), parityCounter = FaultCounter(), edcCounter = FaultCounter()
        var lostCounter = FaultCounter(), repeatCounter = FaultCounter(), sequenceCounter = FaultCounter()
        var lieCounter = FaultCounter(), hardwareErrorCounter = FaultCounter()
    }

    public init(name: String, profile: ReaderProfile, serialNumber: String) {
        self.name = name
        self.profile = profile
        self.serialNumber = serialNumber
        descriptors = USBDescriptorSet.ccidDevice(
            vendorID: profile.vendorID, productID: profile.productID, bcdDevice: profile.bcdDevice,
            manufacturer: profile.manufacturer, product: profile.product, serialNumber: serialNumber,
            classDescriptor: profile.descriptor, layout: profile.usbLayout)
        slots = Array(repeating: SlotModel(), count: profile.descriptor.slotCount)
    }

    public var slotCount: Int { slots.count }

    public func cardName(slot: Int) -> String? {
        lock.withLock { slots.indices.contains(slot) ? slots[slot].card?.name : nil }
    }

    public func setPINPad(_ action: PINPadAction) { lock.withLock { pinPad = action } }

    /// Switches faults on the slot (`name[=value]` settings); returns false on an unknown setting.
    public func setFaults(slot: Int, _ settings: [String]) throws(SlotActionError) -> Bool {
        guard slots.indices.contains(slot) else { throw .noSuchSlot(slot, count: slots.count) }
        return lock.withLock {
            var f = slots[slot].faults
            for setting in settings { guard f.apply(setting) else { return false } }
            slots[slot].faults = f
            return true
        }
    }

    public func faults(slot: Int) -> Faults? {
        lock.withLock { slots.indices.contains(slot) ? slots[slot].faults : nil }
    }

    /// A real reader reports a lost block (ICC_MUTE) after the card's block
    /// waiting time; the simulated one after this, so that fault tests stay quick.
    static let muteDelay: Duration = .milliseconds(100)

    // MARK: Card events

    public enum SlotActionError: Error, CustomStringConvertible {
        case noSuchSlot(Int, count: Int)
        public var description: String {
            switch self {
            case .noSuchSlot(let s, let n): "slot \(s) does not exist (reader has \(n))"
            }
        }
    }

    public func insert(_ card: SimulatedCard, slot: Int) throws(SlotActionError) {
        try change(slot: slot) { $0 = SlotModel(card: card) }
    }

    public func remove(slot: Int) throws(SlotActionError) {
        try change(slot: slot) { $0 = SlotModel() }
    }

    private func change(slot: Int, _ body: (inout SlotModel) -> Void) throws(SlotActionError) {
        let count = slots.count
        guard slot >= 0, slot < count else { throw .noSuchSlot(slot, count: count) }
        let (message, targets): ([UInt8], (RelayServerConnection?, [@Sendable ([UInt8]) -> Void])) = lock.withLock {
            body(&slots[slot])
            let changes = slots.enumerated().map { i, s in
                InterruptMessage.SlotChange(present: s.card != nil, changed: i == slot)
            }
            return (InterruptMessage.notifySlotChange(changes).encoded(), (connection, interruptObservers))
        }
        targets.0?.send(.interruptIn(message))
        for observer in targets.1 { observer(message) }
    }

    /// For in-process transports: interrupt messages as the reader sends them.
    public func observeInterrupts(_ observer: @escaping @Sendable ([UInt8]) -> Void) {
        lock.withLock { interruptObservers.append(observer) }
    }

    // MARK: RelayDevice

    public func connected(_ connection: RelayServerConnection) { lock.withLock { self.connection = connection } }

    public func disconnected(_ connection: RelayServerConnection) {
        // The listener closes the socket next: the sender thread must be done with it.
        lock.withLock { draining = true }
        let limit = Deadline.after(.seconds(2))
        while lock.withLock({ senderRunning }) && !limit.hasPassed { usleep(1_000) }
        lock.withLock {
            draining = false
            if self.connection === connection { self.connection = nil }
        }
        hostReleased()
    }

    /// The host let go of the device: as after a USB reset, cards are unpowered.
    public func hostReleased() {
        lock.withLock {
            for i in slots.indices { slots[i].powered = false; slots[i].commandChain = nil; slots[i].pendingResponse = [] }
        }
    }

    /// Sends the replies. Immediate ones go at once; a command whose replies
    /// take time is handed to a sender thread, so the relay connection goes on
    /// reading: an ABORT class request then reaches the reader while it waits,
    /// and what is left of the aborted command is not sent (unless the reader
    /// is set to answer anyway).
    public func bulkOut(_ message: [UInt8], from connection: RelayServerConnection) {
        let steps = respond(to: message)
        let (immediate, start) = lock.withLock { () -> (Bool, Bool) in
            if !senderRunning && steps.allSatisfy({ $0.delay == .zero }) { return (true, false) }
            outgoing += steps.map { ($0, aborts) }
            defer { senderRunning = true }
            return (false, !senderRunning)
        }
        if steps.contains(where: \.hangUp) {
            connection.hangUp()
            return
        }
        if immediate {
            for step in steps { connection.send(.bulkIn(step.bytes)) }
        } else if start, !startThread({ [self] in sendDelayed(on: connection) }) {
            lock.withLock { senderRunning = false; outgoing = [] }
        }
    }

    private func sendDelayed(on connection: RelayServerConnection) {
        while true {
            let next: (step: TimedReply, generation: UInt64)? = lock.withLock {
                if outgoing.isEmpty || draining { senderRunning = false; outgoing = []; return nil }
                return outgoing.removeFirst()
            }
            guard let (step, generation) = next else { return }
            let cancelled = { [self] in lock.withLock { draining || (!step.survivesAbort && aborts != generation) } }
            // An aborted command's replies go all at once (a time-extension storm queues thousands).
            let purge = { [self] in
                lock.withLock { outgoing.removeAll { $0.generation == generation && !$0.step.survivesAbort } }
            }
            if cancelled() { purge(); continue }
            if step.delay > .zero, !connection.pause(step.delay, unless: cancelled) {
                lock.withLock { outgoing = [] }
                continue
            }
            if cancelled() { purge(); continue }
            connection.send(.bulkIn(step.bytes))
        }
    }

    /// How many ABORT requests the reader has had (a command in flight watches it).
    public var abortGeneration: UInt64 { lock.withLock { aborts } }

    public func control(_ request: ControlRequest, from connection: RelayServerConnection) -> [UInt8]? {
        controlRequest(request)
    }

    /// Class requests (CCID §5.3); nil stalls.
    public func controlRequest(_ request: ControlRequest) -> [UInt8]? {
        switch (request.requestType, ClassRequest(rawValue: request.request)) {
        case (0x21, .abort?):
            let slot = Int(request.value & 0xFF)
            lock.withLock {
                aborts &+= 1
                if slots.indices.contains(slot) { discardTransfer(slot) }
            }
            return []
        case (0xA1, .getClockFrequencies?):
            guard descriptor.numClockSupported > 0 else { return nil }
            var out: [UInt8] = []
            out.appendLE(descriptor.defaultClock)
            if descriptor.numClockSupported > 1 { out.appendLE(descriptor.maximumClock) }
            return out
        case (0xA1, .getDataRates?):
            guard descriptor.numDataRatesSupported > 0 else { return nil }
            var out: [UInt8] = []
            for rate in dataRates { out.appendLE(rate) }
            return out
        default: return nil
        }
    }

    /// The rates GET_DATA_RATES lists: those of Fi 372 with each Di at the
    /// default clock, up to dwMaxDataRate, as many as bNumDataRatesSupported says.
    var dataRates: [UInt32] {
        let clock = UInt64(descriptor.defaultClock) * 1000
        let all = [1, 2, 4, 8, 12, 16, 20, 32].map { UInt32(clamping: clock * UInt64($0) / 372) }
            .filter { $0 <= descriptor.maxDataRate }
        return Array(all.prefix(Int(descriptor.numDataRatesSupported)))
    }

    // MARK: The CCID device model

    /// The replies to one bulk-out message; malformed input gets what a
    /// reader gives (a failed SlotStatus) or nothing.
    public func respond(to message: [UInt8]) -> [TimedReply] {
        if message.count > Int(descriptor.maxCCIDMessageLength), message.count >= ccidHeaderLength {
            return [TimedReply(delay: .zero, reply: failure(slot: message[5], seq: message[6], error: 1, type: .slotStatus))]
        }
        let command: Command
        do throws(CCIDDecodingError) { command = try Command(decoding: message) } catch {
            guard message.count >= ccidHeaderLength else { return [] }
            // Unknown message type or bad length: CCID §6.2.6, "command not supported".
            return [TimedReply(delay: .zero, reply: failure(slot: message[5], seq: message[6], error: 0, type: .slotStatus))]
        }
        let slot = Int(command.slot)
        let expected = Reply.expectedType(for: command.messageType)
        guard slot < slots.count else {
            return [TimedReply(delay: .zero, reply: failure(slot: command.slot, seq: command.sequence, error: 5, type: expected))]
        }
        let (steps, interrupts, targets) = lock.withLock { () -> ([TimedReply], [[UInt8]], (RelayServerConnection?, [@Sendable ([UInt8]) -> Void])) in
            let steps = handle(command, slot: slot, expected: expected)
            var interrupts: [[UInt8]] = []
            let faults = slots[slot].faults
            if faults.interruptFlood > 0 {
                let changes = slots.enumerated().map { i, s in InterruptMessage.SlotChange(present: s.card != nil, changed: i == slot) }
                interrupts += Array(repeating: InterruptMessage.notifySlotChange(changes).encoded(), count: faults.interruptFlood)
            }
            if slots[slot].hardwareErrorCounter.fires(every: faults.hardwareErrorEvery) {
                interrupts.append(InterruptMessage.hardwareError(slot: command.slot, sequence: command.sequence, code: 0x01).encoded())
            }
            return (steps, interrupts, interrupts.isEmpty ? (nil, []) : (connection, interruptObservers))
        }
        for message in interrupts {
            targets.0?.send(.interruptIn(message))
            for observer in targets.1 { observer(message) }
        }
        return steps
    }

    func failure(slot: UInt8, seq: UInt8, error: UInt8, type: Reply.MessageType, icc: ICCStatus = .absent) -> Reply {
        let status = SlotStatus(icc: icc, command: .failed)
        let body: Reply.Body = switch type {
        case .dataBlock: .dataBlock(chainParameter: 0, data: [])
        case .slotStatus: .slotStatus(clockStatus: 0)
        case .parameters: .parameters(protocolNumber: 0, data: [])
        case .escape: .escape(data: [])
        case .dataRateAndClockFrequency: .dataRateAndClockFrequency(clockFrequency: 0, dataRate: 0)
        }
        return Reply(slot: slot, sequence: seq, status: status, error: error, body: body)
    }

    private func iccStatus(_ s: SlotModel) -> ICCStatus {
        s.card == nil ? .absent : (s.powered ? .presentActive : .presentInactive)
    }

    /// Called with `lock` held.
    private func handle(_ command: Command, slot: Int, expected: Reply.MessageType) -> [TimedReply] {
        let s = UInt8(slot), seq = command.sequence
        func now(_ r: Reply) -> [TimedReply] { [TimedReply(delay: .zero, reply: r)] }
        func fail(_ e: SlotError) -> [TimedReply] { now(failure(slot: s, seq: seq, error: e.rawValue, type: expected, icc: iccStatus(slots[slot]))) }
        func ok(_ body: Reply.Body) -> [TimedReply] { now(Reply(slot: s, sequence: seq, status: SlotStatus(icc: iccStatus(slots[slot])), body: body)) }

        switch command.body {
        case .abort:
            // CCID §5.3.1: the aborted transfer's bytes are gone, both ways.
            discardTransfer(slot)
            return ok(.slotStatus(clockStatus: 0))
        case .getSlotStatus, .iccClock, .t0APDU:
            return ok(.slotStatus(clockStatus: 0))
        case .iccPowerOff:
            slots[slot].powered = false
            slots[slot].commandChain = nil
            return ok(.slotStatus(clockStatus: 0))
        case .iccPowerOn:
            guard let card = slots[slot].card else { return fail(.iccMute) }
            card.reset()
            let atr = card.atr
            slots[slot].powered = true
            slots[slot].ppsAllowed = true
            slots[slot].fiDi = 0x11
            slots[slot].characterOut = []
            slots[slot].characterBusy = .zero
            slots[slot].t0Character.reset()
            slots[slot].t1CharacterIn = []
            slots[slot].ppsIn = []
            let parsed = try? ATR(atr)
            slots[slot].protocolType = parsed?.defaultProtocol ?? 0
            slots[slot].t1 = slots[slot].protocolType == 1 ? T1Card(ifsc: parsed?.t1IFSC ?? 32, edc: parsed?.t1EDC ?? .lrc) : nil
            slots[slot].parameters = []
            slots[slot].commandChain = nil
            slots[slot].pendingResponse = []
            return ok(.dataBlock(chainParameter: 0, data: atr))
        case .setParameters(let p, let data):
            guard let card = slots[slot].card, slots[slot].powered else { return fail(.iccMute) }
            let offered = (try? ATR(card.atr))?.offeredProtocols ?? [0]
            guard p <= 1, offered.contains(p), (p == 0 ? data.count == 5 : data.count == 7) else {
                return now(failure(slot: s, seq: seq, error: 7, type: .parameters, icc: iccStatus(slots[slot])))
            }
            slots[slot].protocolType = p
            slots[slot].parameters = data
            slots[slot].readerFiDi = data[0]
            if p == 1 {
                let parsed = try? ATR(card.atr)
                // bmTCCKST1 bit 0: CRC.
                slots[slot].t1 = T1Card(ifsc: parsed?.t1IFSC ?? 32, edc: data[1] & 1 == 1 ? .crc : .lrc)
            } else {
                slots[slot].t1 = nil
            }
            return ok(.parameters(protocolNumber: p, data: data))
        case .getParameters, .resetParameters:
            guard slots[slot].card != nil else { return fail(.iccMute) }
            if case .resetParameters = command.body { slots[slot].parameters = [] }
            let p = slots[slot].protocolType
            let data = slots[slot].parameters.isEmpty ? (p == 1 ? [0x11, 0x10, 0, 0x4D, 0, 0x20, 0] : [0x11, 0, 0, 10, 0]) : slots[slot].parameters
            return ok(.parameters(protocolNumber: p, data: data))
        case .xfrBlock(_, let level, let data):
            guard let card = slots[slot].card, slots[slot].powered else { return fail(.iccMute) }
            return withReplyFaults(xfrBlock(card: card, slot: slot, seq: seq, level: level, data: data), slot: slot)
        case .secure(_, _, let data):
            guard let card = slots[slot].card, slots[slot].powered else { return fail(.iccMute) }
            return secure(card: card, slot: slot, seq: seq, data: data)
        case .escape, .mechanical:
            return fail(.commandNotSupported)
        case .setDataRateAndClockFrequency:
            return ok(.dataRateAndClockFrequency(clockFrequency: descriptor.defaultClock, dataRate: descriptor.dataRate))
        }
    }

    /// Called with `lock` held.
    private func discardTransfer(_ slot: Int) {
        slots[slot].characterOut = []
        slots[slot].characterBusy = .zero
        slots[slot].t0Character.reset()
        slots[slot].t1CharacterIn = []
        slots[slot].commandChain = nil
        slots[slot].pendingResponse = []
    }

    private func dataBlock(_ slot: Int, _ seq: UInt8, chain: UInt8, _ data: [UInt8]) -> Reply {
        Reply(slot: UInt8(slot), sequence: seq, status: SlotStatus(icc: iccStatus(slots[slot])),
              body: .dataBlock(chainParameter: chain, data: data))
    }

    private func xfrBlock(card: SimulatedCard, slot: Int, seq: UInt8, level: UInt16, data: [UInt8]) -> [TimedReply] {
        let badLevel = failure(slot: UInt8(slot), seq: seq, error: 8, type: .dataBlock, icc: iccStatus(slots[slot]))
        let piece = descriptor.maxMessageDataLength
        switch descriptor.exchangeLevel {
        case .shortAPDU where slots[slot].faults.mute, .extendedAPDU where slots[slot].faults.mute:
            return muteReply(slot, seq)
        case .shortAPDU:
            guard level == 0, let apdu = try? CommandAPDU(data), !apdu.isExtended else {
                return [TimedReply(delay: .zero, reply: badLevel)]
            }
            return run(card: card, slot: slot, seq: seq, apdu: data)
        case .extendedAPDU:
            switch LevelParameter(rawValue: level) {
            case .beginsAndEnds?:
                slots[slot].commandChain = nil
                return run(card: card, slot: slot, seq: seq, apdu: data)
            case .begins?:
                slots[slot].commandChain = data
                return [TimedReply(delay: .zero, reply: dataBlock(slot, seq, chain: 0x10, []))]
            case .continues?, .ends?:
                guard var chain = slots[slot].commandChain, chain.count + data.count <= 65544 else {
                    slots[slot].commandChain = nil
                    return [TimedReply(delay: .zero, reply: badLevel)]
                }
                chain += data
                if level == LevelParameter.continues.rawValue {
                    slots[slot].commandChain = chain
                    return [TimedReply(delay: .zero, reply: dataBlock(slot, seq, chain: 0x10, []))]
                }
                slots[slot].commandChain = nil
                return run(card: card, slot: slot, seq: seq, apdu: chain)
            case .emptyContinuation?:
                guard !slots[slot].pendingResponse.isEmpty else { return [TimedReply(delay: .zero, reply: badLevel)] }
                let next = Array(slots[slot].pendingResponse.prefix(piece))
                slots[slot].pendingResponse.removeFirst(next.count)
                let chain: UInt8 = slots[slot].pendingResponse.isEmpty ? 0x02 : 0x03
                return [TimedReply(delay: .zero, reply: dataBlock(slot, seq, chain: chain, next))]
            case nil:
                return [TimedReply(delay: .zero, reply: badLevel)]
            }
        case .character:
            return characterTransfer(card: card, slot: slot, seq: seq, expected: Int(level), data: data)
        case .tpdu where data.first == PPS.ppss:
            return pps(card: card, slot: slot, seq: seq, request: data)
        case .tpdu where !slots[slot].parameters.isEmpty && slots[slot].readerFiDi != slots[slot].fiDi:
            // Reader and card at different bit rates: nothing intelligible comes back.
            return muteReply(slot, seq)
        case .tpdu:
            slots[slot].ppsAllowed = false
            let steps: [TimedReply]
            if slots[slot].protocolType == 1 {
                steps = t1Block(card: card, slot: slot, seq: seq, block: data)
            } else {
                // T=0: the reader runs the procedure bytes; a busy card earns CCID time extensions.
                steps = slots[slot].faults.mute ? muteReply(slot, seq) : run(card: card, slot: slot, seq: seq, apdu: data)
            }
            return steps
        default:
            return [TimedReply(delay: .zero, reply: failure(slot: UInt8(slot), seq: seq, error: 0, type: .dataBlock,
                                                            icc: iccStatus(slots[slot])))]
        }
    }

    /// A PPS request (ISO/IEC 7816-3 §9), allowed once, right after the ATR.
    private func pps(card: SimulatedCard, slot: Int, seq: UInt8, request: [UInt8]) -> [TimedReply] {
        guard slots[slot].ppsAllowed, let asked = try? PPS(decoding: request),
              (try? ATR(card.atr))?.offeredProtocols.contains(asked.protocolType) == true,
              slots[slot].faults.ppsAnswer != 2 else {
            slots[slot].ppsAllowed = false
            return muteReply(slot, seq)
        }
        slots[slot].ppsAllowed = false
        let answer = slots[slot].faults.ppsAnswer == 1 ? PPS(protocolType: asked.protocolType, pps2: asked.pps2) : asked
        slots[slot].protocolType = asked.protocolType
        slots[slot].fiDi = answer.effectiveFiDi
        return [TimedReply(delay: .zero, reply: dataBlock(slot, seq, chain: 0, answer.encoded()))]
    }

    private func muteReply(_ slot: Int, _ seq: UInt8) -> [TimedReply] {
        [TimedReply(delay: Self.muteDelay, reply: failure(slot: UInt8(slot), seq: seq, error: SlotError.iccMute.rawValue,
                                                            type: .dataBlock, icc: .presentActive))]
    }

    /// T=1 at TPDU level: one block from the host in, the card's next block out.
    private func t1Block(card: SimulatedCard, slot: Int, seq: UInt8, block: [UInt8]) -> [TimedReply] {
        switch t1Respond(card: card, slot: slot, block: block) {
        case .mute: return muteReply(slot, seq)
        case .parityError(let delay):
            return [TimedReply(delay: delay, reply: failure(slot: UInt8(slot), seq: seq, error: SlotError.transferParityError.rawValue,
                                                            type: .dataBlock, icc: iccStatus(slots[slot])))]
        case .block(let out, let delay):
            return [TimedReply(delay: delay, reply: dataBlock(slot, seq, chain: 0, out))]
        }
    }

    enum T1Outcome { case block([UInt8], delay: Duration), parityError(delay: Duration), mute }

    /// The card's T=1 engine with the slot's faults applied: its next block for this one.
    private func t1Respond(card: SimulatedCard, slot: Int, block: [UInt8]) -> T1Outcome {
        guard var engine = slots[slot].t1 else { return .mute }
        defer { slots[slot].t1 = engine }
        let faults = slots[slot].faults
        if faults.mute { return .mute }
        var delay: Duration = .zero
        var out: [UInt8]
        switch engine.received(block) {
        case .send(let b):
            out = b
        case .process(let apdu):
            let answer = card.process(apdu, protocolType: 1)
            slots[slot].t1Response = answer.response
            slots[slot].t1Busy = answer.busy
            slots[slot].t1WTXLeft = faults.wtxPerResponse
            if let ifs = faults.cardIFSRequest {
                out = engine.requestIFS(ifs)
            } else {
                (out, delay) = nextT1Output(&engine, slot: slot)
            }
        case .timeGranted, .ifsAccepted:
            (out, delay) = nextT1Output(&engine, slot: slot)
        }
        if slots[slot].repeatCounter.fires(every: faults.repeatBlockEvery), !engine.previousBlock.isEmpty, out != engine.previousBlock {
            // The card repeats itself; the host's R-block brings the right block after this.
            out = engine.previousBlock
        }
        if slots[slot].lostCounter.fires(every: faults.lostBlockEvery) { return .mute }
        if slots[slot].parityCounter.fires(every: faults.parityErrorEvery) { return .parityError(delay: delay) }
        if slots[slot].edcCounter.fires(every: faults.edcErrorEvery), let last = out.indices.last {
            out[last] ^= 0x5A
        }
        return .block(out, delay: delay)
    }

    /// Character level: the reader sends `data` to the card, then returns the
    /// next `expected` bytes the card sends (NULL bytes while it is busy), or
    /// ICC_MUTE if the card says nothing.
    private func characterTransfer(card: SimulatedCard, slot: Int, seq: UInt8, expected: Int, data: [UInt8]) -> [TimedReply] {
        if slots[slot].faults.mute { return muteReply(slot, seq) }
        var delay: Duration = .zero
        if slots[slot].ppsAllowed, data.first == PPS.ppss || !slots[slot].ppsIn.isEmpty {
            slots[slot].ppsIn += data
            let bytes = slots[slot].ppsIn
            if bytes.count >= 2, bytes.count >= 3 + (bytes[1] & 0x70).nonzeroBitCount {
                slots[slot].ppsIn = []
                if case .dataBlock(_, let answer) = pps(card: card, slot: slot, seq: seq, request: bytes).first?.reply.body {
                    slots[slot].characterOut += answer
                }
            }
        } else if !data.isEmpty {
            slots[slot].ppsAllowed = false
            if slots[slot].protocolType == 1 {
                slots[slot].t1CharacterIn += data
                let pending = slots[slot].t1CharacterIn
                let edcLength = slots[slot].t1.map { $0.edc.length } ?? 1
                if pending.count >= 3, pending.count >= 3 + Int(pending[2]) + edcLength {
                    slots[slot].t1CharacterIn = []
                    switch t1Respond(card: card, slot: slot, block: pending) {
                    case .block(let out, let d): slots[slot].characterOut += out; delay = d
                    case .parityError(let d):
                        return [TimedReply(delay: d, reply: failure(slot: UInt8(slot), seq: seq, error: SlotError.transferParityError.rawValue,
                                                                    type: .dataBlock, icc: iccStatus(slots[slot])))]
                    case .mute: break
                    }
                }
            } else {
                let (out, busy) = slots[slot].t0Character.feed(data, card: card)
                slots[slot].characterOut += out
                slots[slot].characterBusy += busy
            }
        }
        guard expected > 0 else { return [TimedReply(delay: delay, reply: dataBlock(slot, seq, chain: 0, []))] }
        if slots[slot].characterBusy > .zero {
            // T=0: the busy card sends NULL procedure bytes, each restarting the waiting time.
            let slice = min(slots[slot].characterBusy, Self.timeExtensionInterval)
            slots[slot].characterBusy -= slice
            return [TimedReply(delay: slice, reply: dataBlock(slot, seq, chain: 0, [0x60]))]
        }
        guard slots[slot].characterOut.count >= expected else { return muteReply(slot, seq) }
        let out = Array(slots[slot].characterOut.prefix(expected))
        slots[slot].characterOut.removeFirst(expected)
        return [TimedReply(delay: delay, reply: dataBlock(slot, seq, chain: 0, out))]
    }

    /// While the card is busy it asks for time (S(WTX)) every interval; then it answers.
    private func nextT1Output(_ engine: inout T1Card, slot: Int) -> ([UInt8], Duration) {
        if slots[slot].t1WTXLeft > 0 {
            slots[slot].t1WTXLeft -= 1
            return (engine.requestTime(multiplier: 1), .zero)
        }
        let busy = slots[slot].t1Busy
        if busy > .zero {
            let slice = min(busy, Self.timeExtensionInterval)
            slots[slot].t1Busy = busy - slice
            return (engine.requestTime(multiplier: 1), slice)
        }
        return (engine.respond(slots[slot].t1Response), .zero)
    }

    /// Reply-level faults: a time-extension storm, a stale bSeq first, a reader that says nothing.
    private func withReplyFaults(_ steps: [TimedReply], slot: Int) -> [TimedReply] {
        let faults = slots[slot].faults
        if faults.stuck { return [] }
        guard var final = steps.last else { return steps }
        if faults.hangUpAt > 0 {
            slots[slot].faults.hangUpAt -= 1
            if slots[slot].faults.hangUpAt == 0 {
                final.hangUp = true
                return [final]
            }
        }
        var out: [TimedReply] = []
        if faults.timeExtensionsPerReply > 0 {
            let te = Reply(slot: final.reply.slot, sequence: final.reply.sequence,
                           status: SlotStatus(icc: final.reply.status.icc, command: .timeExtension), error: 1,
                           body: .dataBlock(chainParameter: 0, data: []))
            out += Array(repeating: TimedReply(delay: .milliseconds(5), reply: te), count: faults.timeExtensionsPerReply)
        }
        if slots[slot].sequenceCounter.fires(every: faults.wrongSequenceEvery) {
            var stale = final.reply
            stale.sequence &+= 0x80
            out.append(TimedReply(delay: .zero, reply: stale))
        }
        // Misbehaviour of the reader itself (`Faults.ReaderLie`): a message before the
        // right one, or the right one spoilt.
        if let lie = faults.readerLie, slots[slot].lieCounter.fires(every: faults.readerLieEvery) {
            var bytes = final.bytes
            switch lie {
            case .wrongSlot:
                var other = final.reply
                other.slot &+= 1
                out.append(TimedReply(delay: .zero, reply: other))
            case .garbage:
                var rng = SystemRandomNumberGenerator()
                let junk = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                out.append(TimedReply(delay: .zero, reply: final.reply, raw: junk))
            case .truncated:
                bytes.removeLast(max(1, (bytes.count - ccidHeaderLength) / 2 + 1))
                final.raw = bytes
            case .oversized:
                if bytes.count >= 5 { bytes.replaceSubrange(1..<5, with: [0xF0, 0xFF, 0xFF, 0xFF]) }
                final.raw = bytes
            case .wrongType:
                if !bytes.isEmpty { bytes[0] = bytes[0] == 0x80 ? 0x81 : 0x80 }
                final.raw = bytes
            case .late:
                // Answers after the host gave up (and sent Abort): the reply, much later.
                final.delay += .milliseconds(Int64(faults.lateMilliseconds))
                final.survivesAbort = true
            }
        }
        return out + Array(steps.dropLast()) + [final]
    }

    /// Gives the APDU to the card; a busy card earns time extensions first, a
    /// long answer goes out in chained pieces.
    private func run(card: SimulatedCard, slot: Int, seq: UInt8, apdu: [UInt8]) -> [TimedReply] {
        let answer = card.process(apdu, protocolType: slots[slot].protocolType)
        var steps: [TimedReply] = []
        var remaining = answer.busy
        let timeExtension = Reply(slot: UInt8(slot), sequence: seq, status: SlotStatus(icc: .presentActive, command: .timeExtension),
                              error: 1, body: .dataBlock(chainParameter: 0, data: []))
        while remaining > Self.timeExtensionInterval {
            steps.append(TimedReply(delay: Self.timeExtensionInterval, reply: timeExtension))
            remaining -= Self.timeExtensionInterval
        }
        let piece = max(1, descriptor.maxMessageDataLength)
        var response = answer.response
        var chain: UInt8 = 0
        if response.count > piece, descriptor.exchangeLevel == .extendedAPDU {
            slots[slot].pendingResponse = Array(response[piece...])
            response = Array(response[..<piece])
            chain = 0x01
        }
        steps.append(TimedReply(delay: remaining, reply: dataBlock(slot, seq, chain: chain, response)))
        return steps
    }

    private func secure(card: SimulatedCard, slot: Int, seq: UInt8, data: [UInt8]) -> [TimedReply] {
        let fail = { (e: SlotError) in
            [TimedReply(delay: .zero, reply: self.failure(slot: UInt8(slot), seq: seq, error: e.rawValue, type: .dataBlock,
                                                          icc: self.iccStatus(self.slots[slot])))]
        }
        guard let operation = data.first else { return fail(SlotError(rawValue: 10)) }
        let support = descriptor.pinSupport
        guard operation == 0 && support.contains(.verification) || operation == 1 && support.contains(.modification) else {
            return fail(.commandNotSupported)
        }
        switch pinPad {
        case .cancel: return fail(.pinCancelled)
        case .timeout: return fail(.pinTimeout)
        case .enter(let digits):
            guard let apdu = PINBlock.fill(secureData: data, digits: digits) else { return fail(SlotError(rawValue: 10)) }
            return run(card: card, slot: slot, seq: seq, apdu: apdu)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
