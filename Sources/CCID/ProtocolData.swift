/// abProtocolDataStructure of PC_to_RDR_SetParameters and
/// RDR_to_PC_Parameters (CCID 1.1 §6.1.7, tables 6.1-8 and 6.1-9): the
/// transmission parameters of one protocol, as host and reader exchange them.
public enum ProtocolData: Equatable, Sendable {
    case t0(T0)
    case t1(T1)

    public struct T0: Equatable, Sendable {
        /// bmFindexDindex: Fi index (high nibble), Di index (low nibble), as in TA1.
        public var fiDi: UInt8
        /// bmTCCKST0 bit 1: inverse convention.
        public var inverseConvention: Bool
        /// bGuardTimeT0: extra guard time (TC1).
        public var guardTime: UInt8
        /// bWaitingIntegerT0: WI (TC2).
        public var waitingInteger: UInt8
        public var clockStop: UInt8

        public init(fiDi: UInt8 = 0x11, inverseConvention: Bool = false, guardTime: UInt8 = 0, waitingInteger: UInt8 = 10,
                    clockStop: UInt8 = 0) {
            (self.fiDi, self.inverseConvention, self.guardTime, self.waitingInteger, self.clockStop) =
                (fiDi, inverseConvention, guardTime, waitingInteger, clockStop)
        }
    }

    public struct T1: Equatable, Sendable {
        public var fiDi: UInt8
        /// bmTCCKST1 bit 0: CRC instead of LRC.
        public var crc: Bool
        /// bmTCCKST1 bit 1: inverse convention.
        public var inverseConvention: Bool
        /// bGuardTimeT1: extra guard time (TC1).
        public var guardTime: UInt8
        /// bmWaitingIntegersT1: BWI (high nibble), CWI (low nibble).
        public var waitingIntegers: UInt8
        public var clockStop: UInt8
        /// bIFSC: the card's information field size.
        public var ifsc: UInt8
        public var nad: UInt8

        public init(fiDi: UInt8 = 0x11, crc: Bool = false, inverseConvention: Bool = false, guardTime: UInt8 = 0,
                    waitingIntegers: UInt8 = 0x4D, clockStop: UInt8 = 0, ifsc: UInt8 = 0x20, nad: UInt8 = 0) {
            (self.fiDi, self.crc, self.inverseConvention, self.guardTime, self.waitingIntegers) =
                (fiDi, crc, inverseConvention, guardTime, waitingIntegers)
            (self.clockStop, self.ifsc, self.nad) = (clockStop, ifsc, nad)
        }
    }

    /// The structure's length for each protocol.
    public static let t0Length = 5, t1Length = 7

    /// Decodes the structure of `protocolNumber`; nil for another protocol or a wrong length.
    public init?(protocolNumber: UInt8, bytes: [UInt8]) {
        switch (protocolNumber, bytes.count) {
        case (0, Self.t0Length):
            self = .t0(T0(fiDi: bytes[0], inverseConvention: bytes[1] & 0x02 != 0, guardTime: bytes[2],
                          waitingInteger: bytes[3], clockStop: bytes[4]))
        case (1, Self.t1Length):
            self = .t1(T1(fiDi: bytes[0], crc: bytes[1] & 0x01 != 0, inverseConvention: bytes[1] & 0x02 != 0,
                          guardTime: bytes[2], waitingIntegers: bytes[3], clockStop: bytes[4], ifsc: bytes[5], nad: bytes[6]))
        default:
            return nil
        }
    }

    /// The defaults a reader reports before SetParameters (Fi/Di 372/1, WI 10; T=1: BWI 4, CWI 13, IFSC 32).
    public static func defaults(protocolNumber: UInt8) -> ProtocolData {
        protocolNumber == 1 ? .t1(T1()) : .t0(T0())
    }

    public var protocolNumber: UInt8 {
        switch self {
        case .t0: 0
        case .t1: 1
        }
    }

    public var fiDi: UInt8 {
        get {
            switch self {
            case .t0(let p): p.fiDi
            case .t1(let p): p.fiDi
            }
        }
        set {
            switch self {
            case .t0(var p): p.fiDi = newValue; self = .t0(p)
            case .t1(var p): p.fiDi = newValue; self = .t1(p)
            }
        }
    }

    public var guardTime: UInt8 {
        switch self {
        case .t0(let p): p.guardTime
        case .t1(let p): p.guardTime
        }
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .t0(let p):
            return [p.fiDi, p.inverseConvention ? 0x02 : 0x00, p.guardTime, p.waitingInteger, p.clockStop]
        case .t1(let p):
            // bmTCCKST1: bits 4 and 5 are fixed at 1 (0x10).
            let tcck: UInt8 = 0x10 | (p.crc ? 0x01 : 0) | (p.inverseConvention ? 0x02 : 0)
            return [p.fiDi, tcck, p.guardTime, p.waitingIntegers, p.clockStop, p.ifsc, p.nad]
        }
    }
}
