import CCID
import ISO7816

/// The profile's firmware defects (`FirmwareBugs`) where they touch power-up,
/// escapes and responses; the rest sit at the one line of the exchange level they spoil.
extension ReaderModel {
    /// bError of a power-up this firmware refuses, if it does.
    mutating func firmwareRefusesPowerUp(slot: Int) -> SlotError? {
        let bugs = profile.firmwareBugs
        if bugs.startsInEMVMode, !isoMode { return SlotError(rawValue: Self.emvModeError) }
        if bugs.needsPowerOffFirst, slots[slot].card != nil, !slots[slot].poweredOffSincePowerUp {
            // The card is left half-activated: mute, and the next power-up needs a power-off first too.
            return .iccMute
        }
        return nil
    }

    /// bError of a power-up in EMV mode with a card that is not an EMV card.
    static let emvModeError: UInt8 = 0xBB

    /// The Escape commands this firmware knows, and their answer; nil: not supported.
    mutating func firmwareEscape(_ data: [UInt8], sequence: UInt8) -> [UInt8]? {
        if profile.firmwareBugs.startsInEMVMode, data == [0x1F, 0x01] {
            isoMode = true
            return []
        }
        if profile.firmwareBugs.needsDisplayPrompts, data.starts(with: [0xB2, 0xA0, 0x00, 0x4D, 0x4C]) {
            // Ten prompts of 16 characters after the header, or the firmware refuses them.
            guard data.count == 5 + 10 * 16 else { return nil }
            displayPrompts = (0..<10).map { i in
                var text = data[(5 + 16 * i)..<(5 + 16 * (i + 1))]
                while text.last == 0x20 { text.removeLast() }
                return String(decoding: text, as: UTF8.self)
            }
            return []
        }
        if let length = profile.firmwareBugs.firmwareFeaturesLength, data == [0x6A] {
            return FirmwareBugs.firmwareFeatures(length: length)
        }
        if profile.firmwareBugs.unpaddedPINNeedsEscape, data == [0x80, 0x02, 0x00] {
            unpaddedPINEscape = sequence
            return []
        }
        return profile.firmwareBugs.escapeEcho ? data : nil
    }

    /// Whether the card now runs at a rate this reader cannot follow (`max-rate`).
    /// (`secondary-rates`: or one a slot after the first cannot.)
    func firmwareTooFast(slot: Int) -> Bool {
        // The rate the reader was set to (SetParameters); PPS itself runs at the default one, which always works.
        let fiDi = slots[slot].readerFiDi
        guard fiDi != 0x11 else { return false }
        let fi = ClockRateConversion.fi(index: fiDi >> 4) ?? 372
        let di = BitRateAdjustment.di(index: fiDi & 0x0F) ?? 1
        let rate = UInt64(descriptor.defaultClock) * 1000 * UInt64(di) / UInt64(max(fi, 1))
        if profile.firmwareBugs.limitsSecondarySlots, slot > 0,
           !FirmwareBugs.secondaryRates.contains(where: { abs(Double($0) - Double(rate)) <= Double(rate) * 0.02 }) {
            return true
        }
        guard let limit = profile.firmwareBugs.maxWorkingRate else { return false }
        return rate > UInt64(limit)
    }

    /// What a PIN pad's firmware does with a Secure frame it does not take (a
    /// failure naming the field's offset, or the card's 6B 80); nil when it
    /// takes it. Also reads the frame as the firmware does (`pin-extra-digit-swapped`).
    mutating func firmwareRefusesPINFrame(_ entry: inout PINEntry) -> ((ReplyContext) -> TimedReply)? {
        let bugs = profile.firmwareBugs
        let verify = entry.operation == .verify
        func field(_ offset: UInt8) -> (ReplyContext) -> TimedReply { { $0.failed(.badParameter(at: offset)) } }
        if verify, let wait = bugs.keyRelease, let since = sinceLastCommand, since < wait {
            return { $0.failed(.badParameter(at: 10)) }
        }
        if bugs.needsDisplayPrompts, displayPrompts == nil { return field(10) }
        if bugs.firmwareFeaturesLength != nil, entry.entryValidationCondition & ~0x02 != 0 {
            return field(verify ? 17 : 20)   // only the validation key, as its features say
        }
        for bug in bugs.pinFrame.sorted(by: { $0.rawValue < $1.rawValue }) {
            switch bug {
            case .verifyGemPC where verify:
                if entry.entryValidationCondition != 0x02 { return field(17) }
                if entry.numberMessage != 0x01 { return field(18) }
            case .verifyMessage0 where verify:
                if entry.numberMessage != 0x00 { return field(18) }
            case .maxExtraDigitSwapped where verify:
                entry.maxExtraDigit = entry.maxExtraDigit >> 8 | entry.maxExtraDigit << 8
            case .modifyValidation2 where !verify:
                if entry.entryValidationCondition != 0x02 { return field(20) }
            case .modifyNoMessages where !verify:
                if entry.numberMessage != 0x00 { return field(21) }
            case .modifyMessage0Refused where !verify:
                if entry.numberMessage == 0x00 { return field(21) }
            case .modifyThreeMessages where !verify:
                if entry.numberMessage < 3 { return { $0.dataBlock([0x6B, 0x80]) } }
            default:
                break
            }
        }
        return nil
    }

    /// A response as this firmware returns it: chained in pieces, or garbled.
    /// Nil when it goes out as it is.
    mutating func firmwareResponse(_ response: [UInt8], slot: Int, context: ReplyContext, after delay: Duration) -> TimedReply? {
        let bugs = profile.firmwareBugs
        if let limit = bugs.garbleResponsesOver, response.count > limit {
            // What comes back: the data scrambled and cut after half the status word.
            var junk = response.dropLast(2).map { $0 ^ 0xA5 }
            junk.append(response[response.count - 2])
            return context.dataBlock(junk, after: delay)
        }
        if let piece = bugs.chainsResponsesOver, response.count > piece {
            slots[slot].apdu.pendingResponse = Array(response[piece...])
            return context.dataBlock(Array(response[..<piece]), chain: 0x01, after: delay)
        }
        return nil
    }

    /// The rest of a chained response (empty XfrBlock, wLevelParameter 0x10), in the firmware's pieces.
    mutating func firmwareContinuation(slot: Int, context: ReplyContext) -> [TimedReply]? {
        guard let piece = profile.firmwareBugs.chainsResponsesOver, !slots[slot].apdu.pendingResponse.isEmpty else { return nil }
        let next = Array(slots[slot].apdu.pendingResponse.prefix(piece))
        slots[slot].apdu.pendingResponse.removeFirst(next.count)
        return [context.dataBlock(next, chain: slots[slot].apdu.pendingResponse.isEmpty ? 0x02 : 0x03)]
    }
}
