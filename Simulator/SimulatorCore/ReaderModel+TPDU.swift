import CCID
import ISO7816

/// TPDU level (CCID §6.1.4): the host runs the transmission protocol; the
/// reader carries T=1 blocks to the card's engine and T=0 commands through
/// the procedure bytes, and PPS right after the ATR. The card's T=1 side is
/// shared with character level.
extension ReaderModel {
    mutating func tpduTransfer(card: SimulatedCard, slot: Int, context: ReplyContext, data: [UInt8]) -> [TimedReply] {
        if data.first == PPS.ppss {
            return pps(card: card, slot: slot, context: context, request: data)
        }
        if slots[slot].parameters != nil && slots[slot].readerFiDi != slots[slot].session.fiDi {
            // Reader and card at different bit rates: nothing intelligible comes back.
            return [context.mute()]
        }
        slots[slot].session.ppsAllowed = false
        if profile.firmwareBugs.stallsAfterIFSRequest, slots[slot].protocolType == 1, data.count > 1, data[1] == Self.ifsRequestPCB {
            slots[slot].cardLost = true
        }
        if slots[slot].cardLost { return [context.mute()] }
        guard slots[slot].protocolType == 1 else {
            // T=0: the reader runs the procedure bytes; a busy card earns CCID time extensions.
            return slots[slot].faults.mute ? [context.mute()] : run(card: card, slot: slot, context: context, apdu: data)
        }
        switch t1Respond(card: card, slot: slot, block: data) {
        case .mute: return [context.mute()]
        case .parityError(let delay): return [context.failed(.transferParityError, after: delay)]
        case .block(let out, let delay): return [context.dataBlock(out, after: delay)]
        }
    }

    /// A PPS request (ISO/IEC 7816-3 §9), allowed once, right after the ATR.
    mutating func pps(card: SimulatedCard, slot: Int, context: ReplyContext, request: [UInt8]) -> [TimedReply] {
        let allowed = slots[slot].session.ppsAllowed
        slots[slot].session.ppsAllowed = false
        guard allowed, !profile.firmwareBugs.noPPS, let asked = try? PPS(decoding: request),
              slots[slot].atr?.offeredProtocols.contains(asked.protocolType) == true,
              slots[slot].faults.ppsAnswer != 2 else {
            return [context.mute()]
        }
        let answer = slots[slot].faults.ppsAnswer == 1 ? PPS(protocolType: asked.protocolType, pps2: asked.pps2) : asked
        slots[slot].protocolType = asked.protocolType
        slots[slot].session.fiDi = answer.effectiveFiDi
        return [context.dataBlock(answer.encoded())]
    }

    /// S(IFS request), ISO/IEC 7816-3 §11.3.2.2.
    static let ifsRequestPCB: UInt8 = 0xC1

    enum T1Outcome { case block([UInt8], delay: Duration), parityError(delay: Duration), mute }

    /// The card's T=1 engine with the slot's faults applied: its next block for this one.
    mutating func t1Respond(card: SimulatedCard, slot: Int, block: [UInt8]) -> T1Outcome {
        guard var engine = slots[slot].session.t1 else { return .mute }
        defer { slots[slot].session.t1 = engine }
        let faults = slots[slot].faults
        if faults.mute { return .mute }
        var delay: Duration = .zero
        var out: [UInt8]
        switch engine.received(block) {
        case .send(let b):
            out = b
        case .process(let apdu):
            let answer = card.process(apdu, protocolType: 1)
            if answer.silent { return .mute }
            slots[slot].session.t1Response = answer.response
            slots[slot].session.t1Busy = answer.busy
            slots[slot].session.t1AsksForTime = answer.asksForTime
            slots[slot].session.t1WTXLeft = faults.wtxPerResponse
            if let ifs = faults.cardIFSRequest {
                out = engine.requestIFS(ifs)
            } else {
                (out, delay) = nextT1Output(&engine, slot: slot)
            }
        case .timeGranted, .ifsAccepted:
            (out, delay) = nextT1Output(&engine, slot: slot)
        }
        var counters = slots[slot].counters
        defer { slots[slot].counters = counters }
        if counters.repeated.fires(every: faults.repeatBlockEvery), !engine.previousBlock.isEmpty, out != engine.previousBlock {
            // The card repeats itself; the host's R-block brings the right block after this.
            out = engine.previousBlock
        }
        if counters.lost.fires(every: faults.lostBlockEvery) { return .mute }
        if counters.parity.fires(every: faults.parityErrorEvery) { return .parityError(delay: delay) }
        if counters.edc.fires(every: faults.edcErrorEvery), let last = out.indices.last {
            out[last] ^= 0x5A
        }
        return .block(out, delay: delay)
    }

    /// While the card is busy it asks for time (S(WTX)) every interval; then it answers.
    private mutating func nextT1Output(_ engine: inout T1Card, slot: Int) -> ([UInt8], Duration) {
        if slots[slot].session.t1WTXLeft > 0 {
            slots[slot].session.t1WTXLeft -= 1
            return (engine.requestTime(multiplier: 1), .zero)
        }
        let busy = slots[slot].session.t1Busy
        if busy > .zero, !slots[slot].session.t1AsksForTime {
            // A card that asks for no time: its answer just comes late.
            slots[slot].session.t1Busy = .zero
            return (engine.respond(slots[slot].session.t1Response), busy)
        }
        if busy > .zero {
            let slice = min(busy, Self.timeExtensionInterval)
            slots[slot].session.t1Busy = busy - slice
            return (engine.requestTime(multiplier: 1), slice)
        }
        return (engine.respond(slots[slot].session.t1Response), .zero)
    }
}
