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
    mutating func firmwareEscape(_ data: [UInt8]) -> [UInt8]? {
        if profile.firmwareBugs.startsInEMVMode, data == [0x1F, 0x01] {
            isoMode = true
            return []
        }
        return nil
    }

    /// Whether the card now runs at a rate this reader cannot follow (`max-rate`).
    func firmwareTooFast(slot: Int) -> Bool {
        guard let limit = profile.firmwareBugs.maxWorkingRate else { return false }
        // The rate the reader was set to (SetParameters); PPS itself runs at the default one, which always works.
        let fiDi = slots[slot].readerFiDi
        guard fiDi != 0x11 else { return false }
        let fi = ClockRateConversion.fi(index: fiDi >> 4) ?? 372
        let di = BitRateAdjustment.di(index: fiDi & 0x0F) ?? 1
        return UInt64(descriptor.defaultClock) * 1000 * UInt64(di) / UInt64(max(fi, 1)) > UInt64(limit)
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
