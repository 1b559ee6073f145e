import CCID
import ISO7816

/// Short and extended APDU level (CCID §6.1.4): the reader takes whole APDUs,
/// in chained pieces at extended level, and answers with the card's response.
/// Also the card's work common to every level: running an APDU with time
/// extensions while it is busy, and PIN entry.
extension ReaderModel {
    /// wLevelParameter is at offset 8 of PC_to_RDR_XfrBlock.
    static let badLevelParameter = SlotError.badParameter(at: 8)
    /// The longest APDU a chain may build: 65,535 bytes of data, header and Le.
    static let longestChainedAPDU = 65_544

    mutating func apduTransfer(card: SimulatedCard, slot: Int, context: ReplyContext, level: UInt16, data: [UInt8]) -> [TimedReply] {
        let refused = [context.failed(Self.badLevelParameter)]
        guard descriptor.exchangeLevel == .extendedAPDU else {
            if level == LevelParameter.emptyContinuation.rawValue, let rest = firmwareContinuation(slot: slot, context: context) {
                return rest
            }
            // Firmware that chains long responses also takes an extended APDU that fits one message.
            guard level == 0, let apdu = try? CommandAPDU(data),
                  !apdu.isExtended || profile.firmwareBugs.chainsResponsesOver != nil else { return refused }
            return run(card: card, slot: slot, context: context, apdu: data, carried: true)
        }
        switch LevelParameter(rawValue: level) {
        case .beginsAndEnds?:
            slots[slot].apdu.commandChain = nil
            return run(card: card, slot: slot, context: context, apdu: data, carried: true)
        case .begins?:
            slots[slot].apdu.commandChain = data
            return [context.dataBlock([], chain: 0x10)]
        case .continues?, .ends?:
            guard var chain = slots[slot].apdu.commandChain, chain.count + data.count <= Self.longestChainedAPDU else {
                slots[slot].apdu.commandChain = nil
                return refused
            }
            chain += data
            if level == LevelParameter.continues.rawValue {
                slots[slot].apdu.commandChain = chain
                return [context.dataBlock([], chain: 0x10)]
            }
            slots[slot].apdu.commandChain = nil
            return run(card: card, slot: slot, context: context, apdu: chain, carried: true)
        case .emptyContinuation?:
            guard !slots[slot].apdu.pendingResponse.isEmpty else { return refused }
            let next = Array(slots[slot].apdu.pendingResponse.prefix(max(1, descriptor.maxMessageDataLength)))
            slots[slot].apdu.pendingResponse.removeFirst(next.count)
            return [context.dataBlock(next, chain: slots[slot].apdu.pendingResponse.isEmpty ? 0x02 : 0x03)]
        case nil:
            return refused
        }
    }

    /// Gives the APDU to the card — `carried`: as a whole APDU the reader
    /// carries in the card's protocol, else as the TPDU it is; a busy card
    /// earns time extensions first, a long answer goes out in chained pieces
    /// (extended APDU level).
    mutating func run(card: SimulatedCard, slot: Int, context: ReplyContext, apdu: [UInt8], carried: Bool = false) -> [TimedReply] {
        if carried, let firmware = pseudoAPDU(apdu, card: card) { return [context.dataBlock(firmware)] }
        let protocolType = slots[slot].protocolType
        let answer = carried ? Self.carry(apdu, to: card, protocolType: protocolType) : card.process(apdu, protocolType: protocolType)
        if answer.silent { return [context.mute()] }
        var steps: [TimedReply] = []
        var remaining = answer.busy
        while remaining > Self.timeExtensionInterval, !profile.firmwareBugs.noTimeExtensions {
            steps.append(context.timeExtension(after: Self.timeExtensionInterval))
            remaining -= Self.timeExtensionInterval
        }
        if carried, let spoilt = firmwareResponse(answer.response, slot: slot, context: context, after: remaining) {
            return steps + [spoilt]
        }
        let piece = max(1, descriptor.maxMessageDataLength)
        var response = answer.response
        var chain: UInt8 = 0
        if response.count > piece, descriptor.exchangeLevel == .extendedAPDU {
            slots[slot].apdu.pendingResponse = Array(response[piece...])
            response = Array(response[..<piece])
            chain = 0x01
        } else if response.count > piece {
            // A card in another process may answer more than the reader's buffer holds (CCID §6.2.6).
            steps.append(context.failed(.transferOverrun, after: remaining))
            return steps
        }
        steps.append(context.dataBlock(response, chain: chain, after: remaining))
        return steps
    }

    /// An APDU-level reader's work under T=0 (ISO/IEC 7816-3 §12.2): a short
    /// APDU as TPDUs with GET RESPONSE and Le correction, an extended one in
    /// ENVELOPE pieces; the host gets the data and the final status. T=1
    /// carries the APDU whole.
    static func carry(_ apdu: [UInt8], to card: SimulatedCard, protocolType: UInt8) -> CardAnswer {
        guard protocolType == 0, let shape = try? CommandAPDU(apdu) else { return card.process(apdu, protocolType: protocolType) }
        var carrier = shape.isExtended ? T0Carrier.extended(T0EnvelopeExchange(apdu: apdu, classByte: shape.header.cla))
                                       : .short(T0ReaderExchange(apdu: shape))
        var action = carrier.start()
        var busy: Duration = .zero
        while case .send(let tpdu) = action {
            let answer = card.process(tpdu, protocolType: 0)
            if answer.silent { return answer }
            busy += answer.busy
            action = carrier.received(answer.response)
        }
        guard case .complete(let response) = action else { return .silent }
        return CardAnswer(response, busy: busy)
    }

    /// PC_to_RDR_Secure: the PIN pad asks the user, fills the PIN into the
    /// APDU and sends it to the card (CCID §6.1.11).
    mutating func secure(card: SimulatedCard, slot: Int, context: ReplyContext, data: [UInt8]) -> [TimedReply] {
        // abData starts at offset 10 of PC_to_RDR_Secure.
        let malformed = [context.failed(.badParameter(at: 10))]
        guard let operation = data.first else { return malformed }
        let support = descriptor.pinSupport
        guard !profile.firmwareBugs.noKeypad,
              operation == 0 && support.contains(.verification) || operation == 1 && support.contains(.modification) else {
            return [context.failed(.commandNotSupported)]
        }
        let pin = profile.firmwareBugs.pinFrame
        let threeIndexes = pin.contains(.modifyThreeIndexes) || pin.contains(.modifyNoMessages)
        guard var entry = PINEntry(ccid: data, modifyIndexCount: threeIndexes ? 3 : nil) else { return malformed }
        if let refused = firmwareRefusesPINFrame(&entry) { return [refused(context)] }
        // The pad takes PINs of min (high byte) to max (low byte) digits; min above max is a frame it cannot act on.
        guard entry.maxExtraDigit >> 8 <= entry.maxExtraDigit & 0xFF else { return [context.failed(.badParameter(at: 15))] }
        switch pinPad {
        case .cancel: return [context.failed(.pinCancelled)]
        case .timeout: return [context.failed(.pinTimeout)]
        case .enter(let digits):
            let apdu: [UInt8]
            if profile.firmwareBugs.unpaddedPINNeedsEscape, entry.operation == .verify, entry.apdu.count == 4, entry.pinBlockString == 0 {
                // The SPR 532 appends the PIN as typed to a bare header, once told so, in a command of its own.
                guard let escape = unpaddedPINEscape, escape != context.sequence else { return [context.failed(.badParameter(at: 6))] }
                let typed = Array(digits.utf8)
                apdu = entry.apdu + [UInt8(truncatingIfNeeded: typed.count)] + typed
            } else {
                guard let filled = PINBlock.fill(entry, digits: digits) else { return malformed }
                apdu = filled
            }
            if descriptor.exchangeLevel == .tpdu, slots[slot].protocolType == 1 {
                return secureT1Block(card: card, slot: slot, context: context, prologue: entry.teoPrologue, apdu: apdu)
            }
            return run(card: card, slot: slot, context: context, apdu: apdu)
        }
    }

    /// A TPDU reader with a T=1 card (CCID §6.1.11): the host runs T=1, so the
    /// reader frames the filled APDU as the I-block the host's bTeoPrologue
    /// begins (NAD, PCB with its N(S)), sets LEN, adds the EDC, and hands back
    /// the card's block as it comes: the response I-block, or an S(WTX) request
    /// the host must answer itself. A wrong N(S) gets the card's R-block.
    private mutating func secureT1Block(card: SimulatedCard, slot: Int, context: ReplyContext, prologue: [UInt8],
                                       apdu: [UInt8]) -> [TimedReply] {
        guard let edc = slots[slot].session.t1?.edc, prologue.count == 3, apdu.count <= T1Block.maximumInformationLength else {
            return [context.failed(.badParameter(at: 10))]
        }
        var block = [prologue[0], prologue[1], UInt8(apdu.count)] + apdu
        block += edc.checksum(block)
        switch t1Respond(card: card, slot: slot, block: block) {
        case .block(let out, let delay): return [context.dataBlock(out, after: delay)]
        case .parityError(let delay): return [context.failed(.transferParityError, after: delay)]
        case .mute: return [context.mute()]
        }
    }
}

/// The two ways T=0 carries an APDU, driven alike.
private enum T0Carrier {
    case short(T0ReaderExchange)
    case extended(T0EnvelopeExchange)

    mutating func start() -> T0EnvelopeExchange.Action {
        switch self {
        case .short(let e): return e.start()
        case .extended(var e):
            defer { self = .extended(e) }
            return e.start()
        }
    }

    mutating func received(_ answer: [UInt8]) -> T0EnvelopeExchange.Action {
        switch self {
        case .short(var e):
            defer { self = .short(e) }
            return e.received(answer)
        case .extended(var e):
            defer { self = .extended(e) }
            return e.received(answer)
        }
    }
}
