/// An Answer-to-Reset (ISO/IEC 7816-3 §8), parsed into the interface bytes
/// and the parameters the driver needs. Parsing never traps; a malformed ATR
/// yields an `ATRError`.
public struct ATR: Equatable, Sendable {
    public enum Convention: Sendable, Equatable { case direct, inverse }

    /// One group of interface bytes TAi, TBi, TCi, TDi (i from 1).
    public struct InterfaceGroup: Equatable, Sendable {
        public var ta: UInt8?
        public var tb: UInt8?
        public var tc: UInt8?
        public var td: UInt8?
        /// The protocol that TD(i-1) announced for this group (T=0 for group 1).
        public var protocolType: UInt8
    }

    /// The ATR as logical bytes (inverse-convention line bytes already decoded).
    public let bytes: [UInt8]
    public let convention: Convention
    public private(set) var groups: [InterfaceGroup]
    public let historicalBytes: [UInt8]
    public let tck: UInt8?

    public static let maximumLength = 33

    public init(_ input: [UInt8]) throws(ATRError) {
        guard let first = input.first else { throw .empty }
        var raw = input
        switch first {
        case 0x3B: convention = .direct
        case 0x3F: convention = .inverse
        case 0x03:
            // Inverse convention exactly as the line carries it, read as direct:
            // complement and bit-reverse every byte to get the logical values.
            raw = input.map { ~$0.bitReversed }
            convention = .inverse
        default: throw .invalidTS(first)
        }
        guard raw.count <= Self.maximumLength else { throw .tooLong(raw.count) }
        bytes = raw

        var index = 1
        func next(_ what: String) throws(ATRError) -> UInt8 {
            guard index < raw.count else { throw .truncated(expected: what) }
            defer { index += 1 }
            return raw[index]
        }
        let t0 = try next("T0")
        var y = t0 >> 4
        let k = Int(t0 & 0x0F)
        var groups: [InterfaceGroup] = []
        var protocolType: UInt8 = 0
        var sawProtocolOtherThanT0 = false
        while true {
            var g = InterfaceGroup(protocolType: protocolType)
            let i = groups.count + 1
            if y & 0x1 != 0 { g.ta = try next("TA\(i)") }
            if y & 0x2 != 0 { g.tb = try next("TB\(i)") }
            if y & 0x4 != 0 { g.tc = try next("TC\(i)") }
            if y & 0x8 != 0 { g.td = try next("TD\(i)") }
            groups.append(g)
            guard let td = g.td else { break }
            protocolType = td & 0x0F
            if protocolType != 0 { sawProtocolOtherThanT0 = true }
            y = td >> 4
        }
        self.groups = groups
        guard index + k <= raw.count else { throw .truncated(expected: "\(k) historical bytes") }
        historicalBytes = Array(raw[index..<index + k])
        index += k
        // TCK is present unless only T=0 is indicated (§8.2.5).
        if sawProtocolOtherThanT0 {
            let check = try next("TCK")
            let xor = raw[1..<index].reduce(0, ^)
            guard xor == 0 else { throw .checksumMismatch(expected: check ^ xor, found: check) }
            tck = check
        } else {
            tck = nil
        }
        guard index == raw.count else { throw .trailingBytes(raw.count - index) }
    }

    // MARK: Global interface bytes

    /// TA1: Fi (high nibble) and Di (low nibble); default 0x11.
    public var ta1: UInt8 { groups.first?.ta ?? 0x11 }
    public var fi: Int? { ClockRateConversion.fi(index: ta1 >> 4) }
    public var fmaxKHz: Int? { ClockRateConversion.fmaxKHz(index: ta1 >> 4) }
    public var di: Int? { BitRateAdjustment.di(index: ta1 & 0x0F) }

    /// TC1: extra guard time N (255 has a protocol-specific meaning).
    public var extraGuardTime: UInt8 { groups.first?.tc ?? 0 }

    /// TA2 present: the card is in specific mode.
    public var specificMode: SpecificMode? {
        guard groups.count > 1, let ta2 = groups[1].ta else { return nil }
        return SpecificMode(protocolType: ta2 & 0x0F, canChange: ta2 & 0x80 == 0,
                            parametersImplicit: ta2 & 0x10 != 0)
    }

    public struct SpecificMode: Equatable, Sendable {
        public var protocolType: UInt8
        public var canChange: Bool
        /// b5 of TA2: Fi/Di are implicit, not from TA1.
        public var parametersImplicit: Bool
    }

    /// Protocols the card offers, in the order of the TD bytes (T=0 if none).
    public var offeredProtocols: [UInt8] {
        var seen: [UInt8] = []
        for g in groups { if let td = g.td, td & 0x0F != 15, !seen.contains(td & 0x0F) { seen.append(td & 0x0F) } }
        return seen.isEmpty ? [0] : seen
    }

    /// The protocol a card uses without PPS: the specific one, or the first offered.
    public var defaultProtocol: UInt8 { specificMode?.protocolType ?? offeredProtocols.first ?? 0 }

    /// TC2: T=0 waiting-time integer WI; default 10.
    public var t0WaitingTimeInteger: UInt8 {
        // TC2 is specific to T=0 (§10.2); 0 is reserved and read as the default.
        guard groups.count > 1, let tc2 = groups[1].tc, tc2 != 0 else { return 10 }
        return tc2
    }

    /// The first group of T=1 specific bytes (after the first TD announcing T=1, from group 3 on).
    private var firstT1Group: InterfaceGroup? {
        firstT1GroupIndex.map { groups[$0] }
    }

    private var firstT1GroupIndex: Int? {
        groups.indices.first { $0 >= 2 && groups[$0].protocolType == 1 }
    }

    /// This ATR as read by a driver that knows the card waits longer than its
    /// TB says: the first T=1 group's TB (BWI, CWI) replaced; no T=1 group, no change.
    public mutating func correctT1WaitingIntegers(_ tb: UInt8) {
        guard let i = firstT1GroupIndex else { return }
        groups[i].tb = tb
    }

    /// T=1 IFSC: first TA for T=1; default 32.
    public var t1IFSC: Int {
        guard let ta = firstT1Group?.ta, ta != 0, ta != 0xFF else { return 32 }
        return Int(ta)
    }

    /// T=1 BWI (high nibble of first TB for T=1); default 4.
    public var t1BWI: UInt8 { (firstT1Group?.tb).map { $0 >> 4 } ?? 4 }
    /// T=1 CWI (low nibble); default 13.
    public var t1CWI: UInt8 { (firstT1Group?.tb).map { $0 & 0x0F } ?? 13 }

    /// First TC for T=1, bit 1: CRC; default LRC.
    public var t1EDC: EDC { (firstT1Group?.tc).map { $0 & 1 == 1 ? .crc : .lrc } ?? .lrc }
}

public enum ATRError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case invalidTS(UInt8)
    case tooLong(Int)
    case truncated(expected: String)
    case checksumMismatch(expected: UInt8, found: UInt8)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .empty: "empty ATR"
        case .invalidTS(let ts): "TS 0x\(String(ts, radix: 16)) is neither 3B nor 3F"
        case .tooLong(let n): "ATR of \(n) bytes exceeds 33"
        case .truncated(let what): "ATR ends before \(what)"
        case .checksumMismatch(let e, let f): "TCK is 0x\(String(f, radix: 16)), expected 0x\(String(e, radix: 16))"
        case .trailingBytes(let n): "\(n) bytes after the end of the ATR"
        }
    }
}

extension UInt8 {
    var bitReversed: UInt8 {
        var v = self, r: UInt8 = 0
        for _ in 0..<8 { r = r << 1 | (v & 1); v >>= 1 }
        return r
    }
}

/// Fi and f(max) from the high nibble of TA1 (ISO/IEC 7816-3 table 7).
public enum ClockRateConversion {
    static let table: [(fi: Int, fmaxKHz: Int)?] = [
        (372, 4000), (372, 5000), (558, 6000), (744, 8000), (1116, 12000), (1488, 16000), (1860, 20000), nil,
        nil, (512, 5000), (768, 7500), (1024, 10000), (1536, 15000), (2048, 20000), nil, nil,
    ]
    public static func fi(index: UInt8) -> Int? { table.indices.contains(Int(index)) ? table[Int(index)]?.fi : nil }
    public static func fmaxKHz(index: UInt8) -> Int? { table.indices.contains(Int(index)) ? table[Int(index)]?.fmaxKHz : nil }
}

/// Di from the low nibble of TA1 (ISO/IEC 7816-3 table 8).
public enum BitRateAdjustment {
    static let table: [Int?] = [nil, 1, 2, 4, 8, 16, 32, 64, 12, 20, nil, nil, nil, nil, nil, nil]
    public static func di(index: UInt8) -> Int? { table.indices.contains(Int(index)) ? table[Int(index)] : nil }
}
