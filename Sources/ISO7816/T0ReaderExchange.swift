/// A short APDU over T=0 on the reader's side of an APDU-level reader
/// (ISO/IEC 7816-3 §12.2): the command as one TPDU, then, for the cases that
/// expect data (2 and 4), GET RESPONSE on 61xx and the command again with
/// the Le the card names on 6Cxx. The host receives the data and the final
/// status word, as from a real APDU-level reader. Extended APDUs travel in
/// ENVELOPE pieces instead (`T0EnvelopeExchange`).
public struct T0ReaderExchange: Sendable {
    public typealias Action = T0EnvelopeExchange.Action

    private let command: CommandAPDU
    private var lastSent: [UInt8]
    private var response: [UInt8] = []
    private var rounds = 0
    /// A card that keeps asking for GET RESPONSE or a new Le gets this many
    /// rounds (256 × 256 bytes is the most Le can ask for), then its status word.
    public static let roundLimit = 258

    public init(apdu: CommandAPDU) {
        command = apdu
        lastSent = T0Transport.tpdu(for: apdu)
    }

    public func start() -> Action { .send(lastSent) }

    /// The card's answer (data and status word) to the TPDU sent last.
    public mutating func received(_ answer: [UInt8]) -> Action {
        guard answer.count >= 2 else { return .complete(response + answer) }
        let sw1 = answer[answer.count - 2], sw2 = answer[answer.count - 1]
        response += answer.dropLast(2)
        rounds += 1
        let expectsData = command.apduCase == .two || command.apduCase == .four
        guard expectsData, rounds < Self.roundLimit else { return .complete(response + [sw1, sw2]) }
        let wanted = command.expectedLength - response.count
        switch sw1 {
        case 0x61 where wanted > 0:
            // P3 00 asks for 256.
            let available = sw2 == 0 ? 256 : Int(sw2)
            lastSent = [command.header.cla, T0Transport.getResponseINS, 0x00, 0x00, UInt8(truncatingIfNeeded: min(available, wanted))]
            return .send(lastSent)
        case 0x6C where lastSent.count == 5:
            // Wrong Le: the same TPDU (the command, or the GET RESPONSE) with the Le the card names.
            lastSent[4] = sw2
            return .send(lastSent)
        default:
            return .complete(response + [sw1, sw2])
        }
    }
}
