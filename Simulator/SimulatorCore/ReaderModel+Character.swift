import CCID
import ISO7816

/// Character level (CCID §6.1.4): the reader sends the host's bytes to the
/// card and returns as many of the card's bytes as the host asks for.
extension ReaderModel {
    /// Sends `data` to the card, then returns the next `expected` bytes the
    /// card sends (NULL bytes while it is busy), or ICC_MUTE if it says nothing.
    mutating func characterTransfer(card: SimulatedCard, slot: Int, context: ReplyContext, expected: Int, data: [UInt8]) -> [TimedReply] {
        if slots[slot].faults.mute { return [context.mute()] }
        if profile.firmwareBugs.hangsOnWholePackets, (data.count + ccidHeaderLength) % 64 == 0 { return [] }
        var delay: Duration = .zero
        if slots[slot].session.ppsAllowed, data.first == PPS.ppss || !slots[slot].character.ppsInput.isEmpty {
            slots[slot].character.ppsInput += data
            let bytes = slots[slot].character.ppsInput
            // PPSS, PPS0, the optional bytes PPS0 announces, PCK.
            if bytes.count >= 2, bytes.count >= 3 + (bytes[1] & 0x70).nonzeroBitCount {
                slots[slot].character.ppsInput = []
                if case .dataBlock(_, let answer) = pps(card: card, slot: slot, context: context, request: bytes).first?.reply.body {
                    slots[slot].character.output += answer
                }
            }
        } else if !data.isEmpty {
            slots[slot].session.ppsAllowed = false
            if slots[slot].protocolType == 1 {
                slots[slot].character.t1Input += data
                let pending = slots[slot].character.t1Input
                let edcLength = slots[slot].session.t1.map { $0.edc.length } ?? 1
                // Prologue (NAD, PCB, LEN), LEN bytes, the EDC.
                if pending.count >= 3, pending.count >= 3 + Int(pending[2]) + edcLength {
                    slots[slot].character.t1Input = []
                    switch t1Respond(card: card, slot: slot, block: pending) {
                    case .block(let out, let d): slots[slot].character.output += out; delay = d
                    case .parityError(let d): return [context.failed(.transferParityError, after: d)]
                    case .mute: break
                    }
                }
            } else {
                let (out, busy) = slots[slot].character.t0.feed(data, card: card)
                slots[slot].character.output += out
                slots[slot].character.busy += busy
            }
        }
        guard expected > 0 else { return [context.dataBlock([], after: delay)] }
        if slots[slot].character.busy > .zero {
            // T=0: the busy card sends NULL procedure bytes, each restarting the waiting time.
            let slice = min(slots[slot].character.busy, Self.timeExtensionInterval)
            slots[slot].character.busy -= slice
            return [context.dataBlock([0x60], after: slice)]
        }
        guard slots[slot].character.output.count >= expected else { return [context.mute()] }
        let out = Array(slots[slot].character.output.prefix(expected))
        slots[slot].character.output.removeFirst(expected)
        return [context.dataBlock(out, after: delay)]
    }
}
