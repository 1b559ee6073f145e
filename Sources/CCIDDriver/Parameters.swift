import CCID
import ISO7816

/// The parameters a reader reports with RDR_to_PC_Parameters (CCID 1.1 §6.2.3):
/// what the attributes SCARD_ATTR_CURRENT_* show.
public struct ReaderParameters: Equatable, Sendable {
    public var protocolType: UInt8
    public var fiDi: UInt8
    public var guardTime: UInt8
    /// T=0: WI. T=1: BWI (high nibble) and CWI (low nibble).
    public var waitingIntegers: UInt8
    public var edc: EDC
    public var ifsc: UInt8?

    public var fi: Int { ClockRateConversion.fi(index: fiDi >> 4) ?? 372 }
    public var di: Int { BitRateAdjustment.di(index: fiDi & 0x0F) ?? 1 }

    /// From a Parameters reply's structure; bytes after it are ignored, as real readers add some.
    init?(protocolType: UInt8, data: [UInt8]) {
        let length = protocolType == 1 ? ProtocolData.t1Length : ProtocolData.t0Length
        switch ProtocolData(protocolNumber: protocolType, bytes: Array(data.prefix(length))) {
        case .t0(let p)?:
            (self.protocolType, fiDi, guardTime, waitingIntegers, edc, ifsc) = (0, p.fiDi, p.guardTime, p.waitingInteger, .lrc, nil)
        case .t1(let p)?:
            (self.protocolType, fiDi, guardTime, waitingIntegers) = (1, p.fiDi, p.guardTime, p.waitingIntegers)
            edc = p.crc ? .crc : .lrc
            ifsc = p.ifsc
        case nil:
            return nil
        }
    }

    /// Block (T=1) or work (T=0) waiting time, and T=1 character waiting time, at `clockKHz`.
    public func waitingTimes(clockKHz: UInt32) -> (block: Duration, character: Duration) {
        ExchangeTimeouts.waitingTimes(protocolType: protocolType, fi: fi, di: di, waitingIntegers: waitingIntegers,
                                      clockKHz: clockKHz)
    }
}

extension Reader {
    /// PC_to_RDR_GetParameters: what the reader uses for the card now.
    public func currentParameters(slot: Int) throws(DriverError) -> ReaderParameters {
        let s = try checkSlot(slot)
        let reply = try exchange(.getParameters, slot: s, waitingTime: controlWaitingTime)
        try check(reply)
        guard case .parameters(let p, let data) = reply.body, let parameters = ReaderParameters(protocolType: p, data: data) else {
            throw .protocolViolation("GetParameters answered without a valid protocol data structure")
        }
        return parameters
    }

    /// IFSC in force for T=1 on `slot` (the card may have changed it with S(IFS)).
    public func currentIFSC(slot: Int) -> Int? { state(of: slot)?.t1?.ifsc }
}
