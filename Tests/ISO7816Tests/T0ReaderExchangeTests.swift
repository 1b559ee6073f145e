import Testing
@testable import ISO7816

/// The APDU-level reader's side of T=0 (ISO/IEC 7816-3 §12.2): what it sends
/// the card for each answer, and what the host finally receives.
struct T0ReaderExchangeTests {
    typealias Action = T0ReaderExchange.Action

    /// Runs an exchange against scripted card answers; returns the TPDUs sent and the outcome.
    func run(_ apdu: [UInt8], answers: [[UInt8]]) throws -> (sent: [[UInt8]], result: [UInt8]) {
        var exchange = T0ReaderExchange(apdu: try CommandAPDU(apdu))
        var action = exchange.start()
        var sent: [[UInt8]] = []
        var script = answers[...]
        while case .send(let tpdu) = action {
            sent.append(tpdu)
            guard let answer = script.popFirst() else {
                Issue.record("the reader sent more than the card answered: \(sent)")
                return (sent, [])
            }
            action = exchange.received(answer)
        }
        guard case .complete(let result) = action else { Issue.record("no result"); return (sent, []) }
        #expect(script.isEmpty, "answers left over")
        return (sent, result)
    }

    @Test func case4FetchesTheResponseOn61() throws {
        let (sent, result) = try run([0x80, 0x36, 0x00, 0x03, 0x01, 0x00, 0x00], answers: [[0x61, 0x03], [0, 1, 2, 0x90, 0x00]])
        #expect(sent == [[0x80, 0x36, 0x00, 0x03, 0x01, 0x00], [0x80, 0xC0, 0x00, 0x00, 0x03]])
        #expect(result == [0, 1, 2, 0x90, 0x00])
    }

    @Test func case2ReissuesWithTheLeTheCardNames() throws {
        let (sent, result) = try run([0x80, 0x40, 0x00, 0x00, 0x02], answers: [[0x6C, 0x09], Array(1...9) + [0x90, 0x00]])
        #expect(sent == [[0x80, 0x40, 0x00, 0x00, 0x02], [0x80, 0x40, 0x00, 0x00, 0x09]])
        #expect(result == Array(1...9) + [0x90, 0x00])
    }

    @Test func repeated61IsFetchedUpToLeAndTheLastStatusKept() throws {
        // Le 00 (256): 200 bytes, then 61 64 more, of which only 56 fit.
        let first = [UInt8](repeating: 0xAA, count: 200), second = [UInt8](repeating: 0xBB, count: 56)
        let (sent, result) = try run([0x00, 0xB0, 0x00, 0x00, 0x00], answers: [[0x61, 0xC8], first + [0x61, 0x64], second + [0x61, 0x08]])
        #expect(sent == [[0x00, 0xB0, 0x00, 0x00, 0x00], [0x00, 0xC0, 0x00, 0x00, 0xC8], [0x00, 0xC0, 0x00, 0x00, 0x38]])
        // The card still has 8 bytes: the host sees 61 08 after the 256 it asked for.
        #expect(result == first + second + [0x61, 0x08])
    }

    @Test func getResponseWithWrongLeIsReissued() throws {
        let (sent, result) = try run([0x80, 0x36, 0x00, 0x04, 0x01, 0x00, 0x00],
                                     answers: [[0x61, 0x00], [0x6C, 0x04], [1, 2, 3, 4, 0x90, 0x00]])
        #expect(sent == [[0x80, 0x36, 0x00, 0x04, 0x01, 0x00], [0x80, 0xC0, 0x00, 0x00, 0x00], [0x80, 0xC0, 0x00, 0x00, 0x04]])
        #expect(result == [1, 2, 3, 4, 0x90, 0x00])
    }

    @Test func casesWithoutExpectedDataPass61Through() throws {
        #expect(try run([0x80, 0x30, 0x00, 0x00], answers: [[0x61, 0x10]]).result == [0x61, 0x10])
        #expect(try run([0x80, 0x32, 0x00, 0x00, 0x01, 0x00], answers: [[0x61, 0x10]]).result == [0x61, 0x10])
        // A 6Cxx to a command that carried data is the card's answer, not a request to resend.
        #expect(try run([0x80, 0x36, 0x00, 0x03, 0x01, 0x00, 0x00], answers: [[0x6C, 0x03]]).result == [0x6C, 0x03])
    }

    @Test func aCardThatKeepsAskingIsCutOff() throws {
        var exchange = T0ReaderExchange(apdu: try CommandAPDU([0x80, 0x40, 0x00, 0x00, 0x02]))
        var action = exchange.start()
        var rounds = 0
        while case .send = action, rounds < 1000 {
            action = exchange.received([0x6C, 0x05])
            rounds += 1
        }
        #expect(rounds == T0ReaderExchange.roundLimit)
        #expect(action == .complete([0x6C, 0x05]))
    }

    @Test func anEnvelopeCardThatKeepsSaying61WithoutDataIsCutOff() throws {
        let apdu: [UInt8] = [0x80, 0x12, 0x01, 0x80, 0x00, 0x00, 0x02, 0x01, 0x02]
        var exchange = T0EnvelopeExchange(apdu: apdu, classByte: 0x80)
        var action = exchange.start()
        var rounds = 0
        while case .send = action, rounds < 10_000 {
            // The first piece is accepted; the last one and every GET RESPONSE get 61 00 and no data.
            action = exchange.received(rounds < 1 ? [0x90, 0x00] : [0x61, 0x00])
            rounds += 1
        }
        #expect(rounds == 2 + T0EnvelopeExchange.fetchLimit)
        #expect(action == .complete([0x61, 0x00]))
    }

    @Test func aTruncatedAnswerEndsTheExchange() throws {
        #expect(try run([0x80, 0x40, 0x00, 0x00, 0x02], answers: [[0x6C]]).result == [0x6C])
    }
}
