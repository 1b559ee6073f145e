/// Protocol and parameters selection (ISO/IEC 7816-3 §9): the request the
/// interface device sends after the ATR, and the check of the card's answer.
public struct PPS: Equatable, Sendable {
    public var protocolType: UInt8
    /// PPS1: Fi (high nibble) and Di (low nibble); nil keeps the default 0x11.
    public var fiDi: UInt8?
    public var pps2: UInt8?
    public var pps3: UInt8?

    public init(protocolType: UInt8, fiDi: UInt8? = nil, pps2: UInt8? = nil, pps3: UInt8? = nil) {
        self.protocolType = protocolType & 0x0F
        self.fiDi = fiDi
        self.pps2 = pps2
        self.pps3 = pps3
    }

    public static let ppss: UInt8 = 0xFF

    public func encoded() -> [UInt8] {
        var pps0 = protocolType
        var out: [UInt8] = []
        if let f = fiDi { pps0 |= 0x10; out.append(f) }
        if let p = pps2 { pps0 |= 0x20; out.append(p) }
        if let p = pps3 { pps0 |= 0x40; out.append(p) }
        let message = [Self.ppss, pps0] + out
        return message + [message.reduce(0, ^)]
    }

    public init(decoding bytes: [UInt8]) throws(PPSError) {
        guard bytes.count >= 3, bytes[0] == Self.ppss else { throw .malformed(bytes) }
        let pps0 = bytes[1]
        var index = 2
        func take() throws(PPSError) -> UInt8 {
            guard index < bytes.count - 1 else { throw .malformed(bytes) }
            defer { index += 1 }
            return bytes[index]
        }
        let fiDi = pps0 & 0x10 != 0 ? try take() : nil
        let p2 = pps0 & 0x20 != 0 ? try take() : nil
        let p3 = pps0 & 0x40 != 0 ? try take() : nil
        guard index == bytes.count - 1 else { throw .malformed(bytes) }
        guard bytes.reduce(0, ^) == 0 else { throw .checksum }
        self.init(protocolType: pps0 & 0x0F, fiDi: fiDi, pps2: p2, pps3: p3)
    }

    /// What the card's answer means (§9.3): the protocol is echoed; PPS1 is
    /// echoed (Fi/Di accepted) or absent (defaults kept); PPS2/PPS3 echoed or absent.
    public func negotiated(by answer: [UInt8]) throws(PPSError) -> PPS {
        let response = try PPS(decoding: answer)
        guard response.protocolType == protocolType else { throw .refused("protocol T=\(response.protocolType) instead of T=\(protocolType)") }
        if let f = response.fiDi, f != fiDi { throw .refused("PPS1 \(f) is not the one requested") }
        if let p = response.pps2, p != pps2 { throw .refused("PPS2 differs") }
        if let p = response.pps3, p != pps3 { throw .refused("PPS3 differs") }
        return response
    }

    /// Fi/Di in force after this exchange.
    public var effectiveFiDi: UInt8 { fiDi ?? 0x11 }
}

public enum PPSError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed([UInt8])
    case checksum
    case refused(String)

    public var description: String {
        switch self {
        case .malformed(let b): "malformed PPS answer (\(b.count) bytes)"
        case .checksum: "PPS answer fails its check byte"
        case .refused(let why): "card refused the PPS: \(why)"
        }
    }
}
