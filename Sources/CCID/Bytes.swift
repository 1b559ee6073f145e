/// Little-endian field access for CCID (all multi-byte CCID fields are LE).
/// Reads are bounds-checked and return nil instead of trapping: every byte
/// here may come from a device.
public struct ByteReader {
    public let bytes: ArraySlice<UInt8>
    public private(set) var offset: Int

    public init(_ bytes: some Collection<UInt8>) {
        self.bytes = ArraySlice(bytes)
        self.offset = self.bytes.startIndex
    }

    public var remainingCount: Int { bytes.endIndex - offset }

    public mutating func u8() -> UInt8? {
        guard offset < bytes.endIndex else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16le() -> UInt16? {
        guard let b = take(2) else { return nil }
        return UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8
    }

    public mutating func u32le() -> UInt32? {
        guard let b = take(4) else { return nil }
        var v: UInt32 = 0
        for (i, byte) in b.enumerated() { v |= UInt32(byte) << (8 * UInt32(i)) }
        return v
    }

    public mutating func u16be() -> UInt16? {
        guard let b = take(2) else { return nil }
        return UInt16(b[b.startIndex]) << 8 | UInt16(b[b.startIndex + 1])
    }

    public mutating func u32be() -> UInt32? {
        guard let b = take(4) else { return nil }
        return b.reduce(0) { $0 << 8 | UInt32($1) }
    }

    public mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, count <= remainingCount else { return nil }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func rest() -> ArraySlice<UInt8> {
        defer { offset = bytes.endIndex }
        return bytes[offset...]
    }
}

extension Array where Element == UInt8 {
    public mutating func appendLE(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    public mutating func appendLE(_ v: UInt32) { for i in 0..<4 { append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
    public mutating func appendBE(_ v: UInt16) { append(UInt8(v >> 8)); append(UInt8(v & 0xFF)) }
    public mutating func appendBE(_ v: UInt32) { for i in (0..<4).reversed() { append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
}

/// Hex for logs and CLI output: "3B 8F 80".
public func hexString(_ bytes: some Sequence<UInt8>, separator: String = " ") -> String {
    let digits: [Character] = Array("0123456789ABCDEF")
    var out = ""
    var first = true
    for b in bytes {
        if !first { out += separator }
        first = false
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return out
}

/// Parses "3B 8F 80", "3b8f80" or "3B:8F:80"; nil on anything else.
public func bytesFromHex(_ text: String) -> [UInt8]? {
    var out: [UInt8] = []
    var high: UInt8? = nil
    for scalar in text.unicodeScalars {
        let nibble: UInt8
        switch scalar {
        case "0"..."9": nibble = UInt8(scalar.value - 48)
        case "a"..."f": nibble = UInt8(scalar.value - 87)
        case "A"..."F": nibble = UInt8(scalar.value - 55)
        case " ", ":", "\n", "\t":
            if high != nil { return nil }
            continue
        default: return nil
        }
        if let h = high { out.append(h << 4 | nibble); high = nil } else { high = nibble }
    }
    return high == nil ? out : nil
}
