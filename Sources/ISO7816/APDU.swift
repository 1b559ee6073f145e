/// A command APDU's shape (ISO/IEC 7816-4 §5.1): which case, Lc and Le,
/// short or extended. Used to decide whether a reader can carry it.
public struct CommandAPDU: Equatable, Sendable {
    public enum Case: Equatable, Sendable { case one, two, three, four }

    public var header: (cla: UInt8, ins: UInt8, p1: UInt8, p2: UInt8) { (bytes[0], bytes[1], bytes[2], bytes[3]) }
    public let bytes: [UInt8]
    public let apduCase: Case
    public let isExtended: Bool
    /// Nc: bytes in the command data field.
    public let dataLength: Int
    /// Ne: bytes expected (0 for none; 256 or 65536 for "maximum").
    public let expectedLength: Int

    public static func == (a: CommandAPDU, b: CommandAPDU) -> Bool { a.bytes == b.bytes }

    public init(_ bytes: [UInt8]) throws(APDUError) {
        guard bytes.count >= 4 else { throw .tooShort(bytes.count) }
        self.bytes = bytes
        let body = bytes.count - 4
        if body == 0 {
            (apduCase, isExtended, dataLength, expectedLength) = (.one, false, 0, 0)
            return
        }
        let b0 = Int(bytes[4])
        if body == 1 {
            (apduCase, isExtended, dataLength, expectedLength) = (.two, false, 0, b0 == 0 ? 256 : b0)
            return
        }
        if b0 != 0 {
            // Short case 3 or 4.
            if body == 1 + b0 { (apduCase, isExtended, dataLength, expectedLength) = (.three, false, b0, 0); return }
            if body == 2 + b0 {
                let le = Int(bytes[bytes.count - 1])
                (apduCase, isExtended, dataLength, expectedLength) = (.four, false, b0, le == 0 ? 256 : le)
                return
            }
            throw .inconsistentLength(bytes.count)
        }
        // Extended: 00 then two bytes.
        guard body >= 3 else { throw .inconsistentLength(bytes.count) }
        let n = Int(bytes[5]) << 8 | Int(bytes[6])
        if body == 3 {
            (apduCase, isExtended, dataLength, expectedLength) = (.two, true, 0, n == 0 ? 65536 : n)
            return
        }
        guard n != 0 else { throw .inconsistentLength(bytes.count) }
        if body == 3 + n { (apduCase, isExtended, dataLength, expectedLength) = (.three, true, n, 0); return }
        if body == 5 + n {
            let le = Int(bytes[bytes.count - 2]) << 8 | Int(bytes[bytes.count - 1])
            (apduCase, isExtended, dataLength, expectedLength) = (.four, true, n, le == 0 ? 65536 : le)
            return
        }
        throw .inconsistentLength(bytes.count)
    }

    /// The data field.
    public var data: ArraySlice<UInt8> {
        let start = isExtended ? 7 : 5
        return dataLength == 0 ? [] : bytes[start..<start + dataLength]
    }
}

public enum APDUError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooShort(Int)
    case inconsistentLength(Int)

    public var description: String {
        switch self {
        case .tooShort(let n): "APDU of \(n) bytes is shorter than its 4-byte header"
        case .inconsistentLength(let n): "APDU of \(n) bytes has Lc/Le that do not match its length"
        }
    }
}
