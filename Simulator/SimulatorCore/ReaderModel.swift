import CCID
import ISO7816
import ThreadSupport

/// A reply and how long the reader waits before sending it (after the reply before it).
public struct TimedReply: Sendable {
    public var delay: Duration
    public var reply: Reply
    /// Bytes sent instead of `reply` (malformed messages for fault injection).
    public var raw: [UInt8]? = nil
    /// Sent even after the host aborted the command (a reader that answers after Abort).
    public var survivesAbort = false
    /// Instead of this reply the reader goes away (relay: the connection drops; USB: it falls silent).
    public var hangUp = false

    /// What goes on the wire.
    public var bytes: [UInt8] { raw ?? reply.encoded() }
}

/// What the reader does about one bulk-out message: its timed replies on
/// bulk-in, and the interrupt messages it sends at once.
public struct DeviceOutput: Sendable {
    public var replies: [TimedReply] = []
    public var interrupts: [[UInt8]] = []
}

/// What the user does at the PIN pad when asked.
public enum PINPadAction: Sendable, Equatable, Codable { case enter(String), cancel, timeout }

/// The simulated CCID reader as a pure value: a CCID command or a class
/// request in, timed replies and interrupt messages out. No threads, no
/// clock, no I/O: `SimulatedReader` guards it and a `ReplyScheduler` times
/// its replies on whichever bus carries it. The exchange levels live in
/// their own files (ReaderModel+APDU, +TPDU, +Character), the reply faults
/// in ReaderModel+Faults.
public struct ReaderModel: Sendable {
    public let profile: ReaderProfile
    var slots: [SlotModel]
    var pinPad: PINPadAction = .enter("1234")
    /// For the `garbage` fault: seeded, so a run can be repeated.
    var random: SplitMix64
    let timing: ReaderTiming
    /// For the `emv-mode` bug: Escape 1F 01 switched the reader to ISO mode.
    var isoMode = false
    /// For the `pin-key-release` bug: time since the command before this one (the bus sets it).
    public var sinceLastCommand: Duration? = nil
    /// An ICCD token's state between its class requests (ReaderModel+ICCD).
    var iccd = ICCDDeviceState()
    /// For the `pin-case1-escape` bug: the bSeq of the Escape 80 02 00 that armed the next verification.
    var unpaddedPINEscape: UInt8? = nil
    /// For the `needs-prompts` bug: the display prompts the host loaded.
    public internal(set) var displayPrompts: [String]? = nil

    /// Time extensions are sent at this interval while the card is busy.
    static let timeExtensionInterval: Duration = .milliseconds(200)

    public init(profile: ReaderProfile, timing: ReaderTiming = .realistic, seed: UInt64 = 0x5C1D_CC1D) {
        self.profile = profile
        self.timing = timing
        slots = Array(repeating: SlotModel(), count: profile.descriptor.slotCount)
        random = SplitMix64(seed: seed)
    }

    public var descriptor: ClassDescriptor { profile.descriptor }
    public var slotCount: Int { slots.count }

    public func cardName(slot: Int) -> String? { card(slot: slot)?.name }
    public func card(slot: Int) -> SimulatedCard? { slots.indices.contains(slot) ? slots[slot].card : nil }
    public func faults(slot: Int) -> Faults? { slots.indices.contains(slot) ? slots[slot].faults : nil }
    public mutating func setPINPad(_ action: PINPadAction) { pinPad = action }

    /// Applies `name[=value]` settings to a slot's faults, all or none; false on one it does not know.
    public mutating func setFaults(slot: Int, _ settings: [String]) -> Bool {
        guard slots.indices.contains(slot) else { return false }
        var f = slots[slot].faults
        for setting in settings { guard f.apply(setting) else { return false } }
        slots[slot].faults = f
        return true
    }

    // MARK: Card events

    /// Puts a card in (or takes it out of, with nil) a slot; returns the NotifySlotChange
    /// message, nil for no such slot or a reader that cannot sense cards.
    public mutating func setCard(_ card: SimulatedCard?, slot: Int) -> [UInt8]? {
        guard slots.indices.contains(slot) else { return nil }
        // A new card starts with no faults, as it starts unpowered.
        slots[slot] = SlotModel(card: card)
        return profile.firmwareBugs.cannotSenseCards ? nil : slotChange(slot)
    }

    /// bmICCStatus as the reader reports it: one that cannot sense cards says "present" for an empty slot.
    func reportedICC(_ slot: Int) -> ICCStatus {
        let icc = slots[slot].icc
        return icc == .absent && profile.firmwareBugs.cannotSenseCards ? .presentInactive : icc
    }

    func slotChange(_ slot: Int) -> [UInt8] {
        InterruptMessage.notifySlotChange(slots.enumerated().map { i, s in
            InterruptMessage.SlotChange(present: s.card != nil, changed: i == slot)
        }).encoded()
    }

    /// The host let go of the device: as after a USB reset, cards are unpowered.
    public mutating func hostReleased() {
        iccd = ICCDDeviceState()
        for i in slots.indices where slots[i].powered {
            slots[i].card?.powerDown()
            slots[i].poweredOff()
        }
    }

    // MARK: Control requests

    /// Class requests (CCID §5.3, or an ICCD token's); nil stalls. ABORT discards the slot's transfer;
    /// dropping the command's replies still to come is the scheduler's part. `now`: for a token's busy card.
    public mutating func control(_ request: ControlRequest, now: Deadline = .now()) -> [UInt8]? {
        if iccdVersion != nil { return iccdControl(request, now: now) }
        switch (request.requestType, ClassRequest(rawValue: request.request)) {
        case (0x21, .abort?):
            let slot = Int(request.value & 0xFF)
            if slots.indices.contains(slot) { slots[slot].discardTransfer() }
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
    public var dataRates: [UInt32] {
        let clock = UInt64(descriptor.defaultClock) * 1000
        let all = [1, 2, 4, 8, 12, 16, 20, 32].map { UInt32(clamping: clock * UInt64($0) / 372) }
            .filter { $0 <= descriptor.maxDataRate }
        let listed = Array(all.prefix(Int(descriptor.numDataRatesSupported)))
        return profile.firmwareBugs.listsFakeRates ? listed + FirmwareBugs.fakeRates : listed
    }

    // MARK: Bulk-out messages

    /// The reader's answer to one bulk-out message; malformed input gets what
    /// a reader gives (a failed SlotStatus) or nothing.
    public mutating func respond(to message: [UInt8]) -> DeviceOutput {
        let longest = max(Int(descriptor.maxCCIDMessageLength), profile.firmwareBugs.takesMessagesUpTo ?? 0)
        if message.count > longest, message.count >= ccidHeaderLength {
            let context = ReplyContext(slot: message[5], sequence: message[6], icc: .absent)
            return DeviceOutput(replies: [context.failed(.badLength, type: .slotStatus)])
        }
        let command: Command
        do throws(CCIDDecodingError) { command = try Command(decoding: message) } catch {
            guard message.count >= ccidHeaderLength else { return DeviceOutput() }
            // Unknown message type or bad length: CCID §6.2.6, "command not supported".
            let context = ReplyContext(slot: message[5], sequence: message[6], icc: .absent)
            return DeviceOutput(replies: [context.failed(.commandNotSupported, type: .slotStatus)])
        }
        let expected = Reply.expectedType(for: command.messageType)
        let slot = Int(command.slot)
        guard slots.indices.contains(slot) else {
            let context = ReplyContext(slot: command.slot, sequence: command.sequence, icc: .absent)
            return DeviceOutput(replies: [context.failed(.badSlot, type: expected)])
        }
        var output = DeviceOutput(replies: handle(command, slot: slot, expected: expected))
        output.interrupts = interruptFaults(slot: slot, sequence: command.sequence)
        return output
    }

    private mutating func handle(_ command: Command, slot: Int, expected: Reply.MessageType) -> [TimedReply] {
        var context: ReplyContext {
            ReplyContext(slot: command.slot, sequence: command.sequence, icc: reportedICC(slot), timing: timing)
        }
        func fail(_ e: SlotError) -> [TimedReply] { [context.failed(e, type: expected)] }
        func ok(_ body: Reply.Body) -> [TimedReply] { [context.reply(body)] }

        switch command.body {
        case .abort:
            slots[slot].discardTransfer()
            return ok(.slotStatus(clockStatus: 0))
        case .getSlotStatus:
            return [context.reply(.slotStatus(clockStatus: 0), after: profile.firmwareBugs.slowSlotStatus ?? .zero)]
        case .iccClock, .t0APDU:
            return ok(.slotStatus(clockStatus: 0))
        case .iccPowerOff:
            if slots[slot].powered { slots[slot].card?.powerDown() }
            slots[slot].poweredOff()
            return ok(.slotStatus(clockStatus: 0))
        case .iccPowerOn(let voltage):
            if let refusal = firmwareRefusesPowerUp(slot: slot) { return fail(refusal) }
            if let only = slots[slot].faults.onlyVoltage, voltage != .automatic, voltage.rawValue != only {
                return [context.mute()]
            }
            guard let atr = slots[slot].card?.powerUp() else { return fail(.iccMute) }
            slots[slot].poweredOn()
            negotiateAfterATR(slot: slot)
            return ok(.dataBlock(chainParameter: 0, data: atr))
        case .setParameters(let p, let data):
            guard slots[slot].card != nil, slots[slot].powered else { return fail(.iccMute) }
            let offered = slots[slot].atr?.offeredProtocols ?? [0]
            guard offered.contains(p), var parameters = ProtocolData(protocolNumber: p, bytes: data) else {
                // bProtocolNum, offset 7.
                return [context.failed(.badParameter(at: 7), type: .parameters)]
            }
            if profile.firmwareBugs.setParametersOnlyAtTA1, p == 1, let ta1 = slots[slot].atr?.ta1, parameters.fiDi != ta1 {
                slots[slot].cardLost = true   // the card is lost until the next power-up
                return fail(.iccMute)
            }
            if negotiatesWithTheCard {
                guard let agreed = negotiate(slot: slot, parameters, protocolType: p) else { return fail(.iccMute) }
                parameters.fiDi = agreed
            }
            slots[slot].protocolType = p
            slots[slot].parameters = parameters
            slots[slot].readerFiDi = parameters.fiDi
            if case .t1(let t1) = parameters {
                slots[slot].session.t1 = T1Card(ifsc: slots[slot].atr?.t1IFSC ?? 32, edc: t1.crc ? .crc : .lrc)
            } else {
                slots[slot].session.t1 = nil
            }
            if let kept = profile.firmwareBugs.setParametersKeepsField {
                return [context.failed(.badParameter(at: kept), type: .parameters)]
            }
            return ok(.parameters(protocolNumber: p, data: parameters.encoded()))
        case .getParameters, .resetParameters:
            guard slots[slot].card != nil else { return fail(.iccMute) }
            if case .resetParameters = command.body { slots[slot].parameters = nil }
            let p = slots[slot].protocolType
            let parameters = slots[slot].parameters ?? .defaults(protocolNumber: p)
            return ok(.parameters(protocolNumber: p, data: parameters.encoded()))
        case .xfrBlock(_, let level, let data):
            guard let card = slots[slot].card, slots[slot].powered else { return fail(.iccMute) }
            return withReplyFaults(transfer(card: card, slot: slot, context: context, level: level, data: data), slot: slot)
        case .secure(_, _, let data):
            guard let card = slots[slot].card, slots[slot].powered else { return fail(.iccMute) }
            defer { unpaddedPINEscape = nil }
            return secure(card: card, slot: slot, context: context, data: data)
        case .escape(let data):
            return firmwareEscape(data, sequence: command.sequence).map { ok(.escape(data: $0)) } ?? fail(.commandNotSupported)
        case .mechanical:
            return fail(.commandNotSupported)
        case .setDataRateAndClockFrequency:
            return ok(.dataRateAndClockFrequency(clockFrequency: descriptor.defaultClock, dataRate: descriptor.dataRate))
        }
    }

    /// One XfrBlock at the reader's exchange level.
    private mutating func transfer(card: SimulatedCard, slot: Int, context: ReplyContext, level: UInt16, data: [UInt8]) -> [TimedReply] {
        if firmwareTooFast(slot: slot) || slots[slot].cardLost { return [context.mute()] }
        switch descriptor.exchangeLevel {
        case .shortAPDU, .extendedAPDU:
            return slots[slot].faults.mute ? [context.mute()] : apduTransfer(card: card, slot: slot, context: context, level: level, data: data)
        case .character:
            return characterTransfer(card: card, slot: slot, context: context, expected: Int(level), data: data)
        case .tpdu:
            return tpduTransfer(card: card, slot: slot, context: context, data: data)
        default:
            return [context.failed(.commandNotSupported)]
        }
    }
}

/// SplitMix64: small, seeded, and good enough for junk bytes.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
