/// vsmartcard's vpcd protocol between a reader and a card process, encoded
/// and decoded here only. Every message either way is a 2-byte big-endian
/// length and that many bytes. From the reader, one byte is a control
/// message (power off, power on, reset, get ATR) and anything longer an
/// APDU; from the card, the ATR or the R-APDU.
public enum VPCDMessage: Equatable, Sendable {
    case powerOff, powerOn, reset, getATR
    case apdu([UInt8])

    /// The 16-bit length field bounds every message.
    public static let frameLimit = 0xFFFF
    /// ISO/IEC 7816-3: an ATR has at most 32 bytes after TS.
    public static let atrLimit = 33

    var payload: [UInt8] {
        switch self {
        case .powerOff: [0]
        case .powerOn: [1]
        case .reset: [2]
        case .getATR: [4]
        case .apdu(let bytes): bytes
        }
    }

    /// The message on the wire; nil if it cannot be sent: an APDU over the
    /// frame limit, or one so short it would read as a control message.
    public func framed() -> [UInt8]? {
        let body = payload
        if case .apdu = self, body.count < 2 { return nil }
        guard body.count <= Self.frameLimit else { return nil }
        return [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    /// The length a frame header announces.
    static func length(header: [UInt8]) -> Int? {
        header.count == 2 ? Int(header[0]) << 8 | Int(header[1]) : nil
    }

    /// Whether a card's answer to get ATR is one a reader can return.
    static func acceptableATR(_ atr: [UInt8]) -> Bool {
        (2...atrLimit).contains(atr.count) && (atr[0] == 0x3B || atr[0] == 0x3F)
    }
}
