/// A T=1 block (ISO/IEC 7816-3 §11.3): prologue NAD, PCB, LEN; information
/// field of at most 254 bytes; epilogue LRC (1 byte) or CRC (2 bytes).
public struct T1Block: Equatable, Sendable, CustomStringConvertible {
    public var nad: UInt8
    public var kind: Kind
    public var information: [UInt8]

    public static let maximumInformationLength = 254

    public enum Kind: Equatable, Sendable {
        /// I-block: N(S) (0 or 1) and the more-data bit M.
        case information(sequence: UInt8, more: Bool)
        /// R-block: N(R), the N(S) of the I-block expected next.
        case receiveReady(sequence: UInt8, error: RBlockError)
        case supervisory(SBlockType, isResponse: Bool)
    }

    public enum RBlockError: UInt8, Sendable {
        case none = 0, parityOrEDC = 1, other = 2
    }

    public enum SBlockType: UInt8, Sendable {
        case resynch = 0, ifs = 1, abort = 2, wtx = 3
    }

    public init(nad: UInt8 = 0, kind: Kind, information: [UInt8] = []) {
        self.nad = nad
        self.kind = kind
        self.information = information
    }

    public var pcb: UInt8 {
        switch kind {
        case .information(let ns, let more): return (ns & 1) << 6 | (more ? 0x20 : 0)
        case .receiveReady(let nr, let error): return 0x80 | (nr & 1) << 4 | error.rawValue
        case .supervisory(let type, let response): return 0xC0 | (response ? 0x20 : 0) | type.rawValue
        }
    }

    public func encoded(edc: EDC) -> [UInt8] {
        var out: [UInt8] = [nad, pcb, UInt8(truncatingIfNeeded: information.count)]
        out += information
        return out + edc.checksum(out)
    }

    /// Parses one whole block; a wrong length, a bad EDC or an undefined PCB
    /// is an error (the receiver answers it with an R-block).
    public init(decoding bytes: [UInt8], edc: EDC) throws(T1BlockError) {
        let epilogue = edc.length
        guard bytes.count >= 3 + epilogue else { throw .tooShort(bytes.count) }
        let length = Int(bytes[2])
        guard length <= Self.maximumInformationLength else { throw .invalidLength(length) }
        guard bytes.count == 3 + length + epilogue else { throw .lengthMismatch(declared: length, actual: bytes.count - 3 - epilogue) }
        let body = Array(bytes[0..<(3 + length)])
        guard edc.checksum(body) == Array(bytes[(3 + length)...]) else { throw .edcMismatch }
        nad = bytes[0]
        information = Array(bytes[3..<(3 + length)])
        let pcb = bytes[1]
        switch pcb {
        case let p where p & 0x80 == 0:
            guard p & 0x1F == 0 else { throw .invalidPCB(p) }
            kind = .information(sequence: (p >> 6) & 1, more: p & 0x20 != 0)
        case let p where p & 0xC0 == 0x80:
            guard p & 0x20 == 0, let error = RBlockError(rawValue: p & 0x0F), length == 0 else { throw .invalidPCB(p) }
            kind = .receiveReady(sequence: (p >> 4) & 1, error: error)
        default:
            guard let type = SBlockType(rawValue: pcb & 0x1F) else { throw .invalidPCB(pcb) }
            kind = .supervisory(type, isResponse: pcb & 0x20 != 0)
        }
    }

    public var description: String {
        let info = information.isEmpty ? "" : " [\(information.count)]"
        switch kind {
        case .information(let ns, let more): return "I(\(ns)\(more ? ",M" : ""))\(info)"
        case .receiveReady(let nr, let e): return "R(\(nr)\(e == .none ? "" : ",err\(e.rawValue)"))"
        case .supervisory(let t, let r): return "S(\(t) \(r ? "response" : "request"))\(info)"
        }
    }
}

public enum T1BlockError: Error, Equatable, Sendable {
    case tooShort(Int)
    case invalidLength(Int)
    case lengthMismatch(declared: Int, actual: Int)
    case edcMismatch
    case invalidPCB(UInt8)
}

/// The error detection code of T=1 blocks, as the ATR's first TC for T=1 says.
public enum EDC: Sendable, Equatable {
    case lrc, crc

    public var length: Int { self == .lrc ? 1 : 2 }

    public func checksum(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .lrc:
            return [bytes.reduce(0, ^)]
        case .crc:
            // ISO/IEC 13239 CRC-16 (reflected polynomial 0x8408), preset 0xFFFF, high byte first,
            // as readers and the incumbent driver compute it.
            var crc: UInt16 = 0xFFFF
            for b in bytes { crc = (crc >> 8) ^ EDC.crcTable[Int((crc ^ UInt16(b)) & 0xFF)] }
            return [UInt8(crc >> 8), UInt8(crc & 0xFF)]
        }
    }

    static let crcTable: [UInt16] = (0..<256).map { n -> UInt16 in
        var c = UInt16(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x8408 : c >> 1 }
        return c
    }
}
