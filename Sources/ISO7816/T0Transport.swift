/// Carrying APDUs over T=0 (ISO/IEC 7816-3 §12.2): short APDUs as one TPDU,
/// where 61xx and 6Cxx reach the application as PC/SC expects; extended
/// APDUs, which T=0 cannot carry, inside ENVELOPE commands with the response
/// fetched by GET RESPONSE (ISO/IEC 7816-4 §7.6.4, §7.6.1).
public enum T0Transport {
    public static let envelopeINS: UInt8 = 0xC2
    public static let getResponseINS: UInt8 = 0xC0

    /// The command TPDU of a short APDU: header and P3 (Le, Lc, or 0), then the data.
    public static func tpdu(for apdu: CommandAPDU) -> [UInt8] {
        let header = Array(apdu.bytes.prefix(4))
        switch apdu.apduCase {
        case .one: return header + [0x00]
        case .two: return header + [UInt8(truncatingIfNeeded: apdu.expectedLength)]
        case .three, .four: return header + [UInt8(truncatingIfNeeded: apdu.dataLength)] + apdu.data
        }
    }
}

/// An extended APDU over T=0, host side: ENVELOPE pieces of at most 255
/// bytes, an empty ENVELOPE that ends the command, then GET RESPONSE until
/// the card has nothing more.
public struct T0EnvelopeExchange: Sendable {
    public enum Action: Equatable, Sendable {
        case send([UInt8])
        case complete([UInt8])
    }

    private let cla: UInt8
    private var pieces: [[UInt8]]
    private var response: [UInt8] = []
    private var fetching = false
    private var fetches = 0
    static let responseLimit = 65536 + 2
    /// A card that keeps saying 61xx without sending data gets this many GET
    /// RESPONSEs (65,536 bytes come in 256 of them), then its status word.
    public static let fetchLimit = 258

    public init(apdu: [UInt8], classByte: UInt8) {
        cla = classByte
        var p: [[UInt8]] = []
        var rest = apdu[...]
        while !rest.isEmpty {
            let chunk = rest.prefix(255)
            p.append([classByte, T0Transport.envelopeINS, 0x00, 0x00, UInt8(chunk.count)] + chunk)
            rest = rest.dropFirst(chunk.count)
        }
        p.append([classByte, T0Transport.envelopeINS, 0x00, 0x00, 0x00])
        pieces = p
    }

    public mutating func start() -> Action { .send(pieces.removeFirst()) }

    /// The card's answer (data and status word) to the TPDU sent last.
    public mutating func received(_ answer: [UInt8]) -> Action {
        guard answer.count >= 2 else { return .complete(response + answer) }
        let sw1 = answer[answer.count - 2], sw2 = answer[answer.count - 1]
        if !fetching {
            if !pieces.isEmpty {
                // Each ENVELOPE piece but the last must be accepted plainly; anything else is the card's answer.
                guard sw1 == 0x90, sw2 == 0x00 else { return .complete(answer) }
                return .send(pieces.removeFirst())
            }
            fetching = true
        } else {
            response += answer.dropLast(2)
            if response.count > Self.responseLimit { return .complete([0x6F, 0x00]) }
            fetches += 1
            if fetches >= Self.fetchLimit { return .complete(response + [sw1, sw2]) }
        }
        switch sw1 {
        case 0x61: return .send([cla, T0Transport.getResponseINS, 0x00, 0x00, sw2])
        case 0x6C where fetching: return .send([cla, T0Transport.getResponseINS, 0x00, 0x00, sw2])
        default: return .complete((fetching ? response : Array(answer.dropLast(2))) + [sw1, sw2])
        }
    }
}
