import CCID
import ISO7816
import ReaderQuirks
import ThreadSupport

extension Reader {
    /// PIN entry on a TPDU reader with a T=1 card (G20, quirk R1): the driver
    /// runs T=1, so the PIN APDU goes as the I-block the driver's T=1 engine
    /// would send, its prologue in bTeoPrologue (the reader fills in the PIN,
    /// LEN and the EDC). What comes back is the card's block, fed to the
    /// engine: the response I-block ends the exchange; an S(WTX) request (a
    /// card that first asks for time, as the Swiss health card does) or a
    /// chained response are carried on with XfrBlocks. A block the engine would
    /// have to send again holds the PIN, which only the pad has: that ends it.
    func secureT1(slot: UInt8, state: SlotState, frame: PINFrame, waitingTime: Duration, cap: Deadline) throws(DriverError) -> [UInt8] {
        let before = state.t1 ?? t1Engine(atr: state.parsedATR)
        var engine = before
        let bwt = ExchangeTimeouts.cardWaitingTime(atr: state.parsedATR, protocolType: 1, clockKHz: descriptor.defaultClock)
            + quirks.longerT1WaitingTime
        // A pending IFSD negotiation goes first, on its own.
        var action = engine.transmit(frame.entry.apdu)
        var first: [UInt8] = []
        while case .send(let block, let multiplier) = action {
            if block.count > 1, block[1] & 0x80 == 0 {
                first = block
                break
            }
            action = try t1Round(slot: slot, block: block, multiplier: multiplier, engine: &engine, bwt: bwt, cap: cap)
        }
        guard !first.isEmpty else {
            update(Int(slot)) { $0.t1 = engine }
            throw .cardProtocol("T=1 before the PIN entry: \(action)")
        }
        // An I-block with M set: the template is longer than the card's IFSC, and the pad sends one block.
        guard first[1] & 0x20 == 0 else { throw .notSupported("PIN APDU of \(frame.entry.apdu.count) bytes exceeds the card's IFSC") }
        var entry = frame
        entry.entry.teoPrologue = Array(first.prefix(3))
        let reply = try exchange(.secure(bwi: 0, levelParameter: 0, data: entry.ccidEncoded()), slot: slot,
                                 waitingTime: waitingTime, cap: cap)
        if reply.status.command == .failed {
            // The block never reached the card: the engine's sequence numbers stay as they were.
            update(Int(slot)) { $0.t1 = before }
            if let sw = Self.pinEntryStatus[reply.slotError] { return sw }
            try check(reply)
        }
        guard case .dataBlock(_, let answer) = reply.body else {
            update(Int(slot)) { $0.t1 = before }
            throw .protocolViolation("Secure answered with \(reply.messageType)")
        }
        defer { update(Int(slot)) { $0.t1 = engine } }
        return try runT1(engine.received(answer), engine: &engine, slot: slot, bwt: bwt, cap: cap, neverResend: first)
    }
}
