import Testing
import TestSupport
@testable import ISO7816

struct T1BlockTests {
    @Test func blockVectors() throws {
        // I(0) with 00 A4 04 00, LRC.
        let i = T1Block(kind: .information(sequence: 0, more: false), information: [0x00, 0xA4, 0x04, 0x00])
        #expect(i.encoded(edc: .lrc) == [0x00, 0x00, 0x04, 0x00, 0xA4, 0x04, 0x00, 0xA4])
        // S(IFS request 254): 00 C1 01 FE 3E.
        #expect(T1Block(kind: .supervisory(.ifs, isResponse: false), information: [0xFE]).encoded(edc: .lrc) == [0x00, 0xC1, 0x01, 0xFE, 0x3E])
        // R(1) with EDC error: 00 91 00 91.
        #expect(T1Block(kind: .receiveReady(sequence: 1, error: .parityOrEDC)).encoded(edc: .lrc) == [0x00, 0x91, 0x00, 0x91])
        #expect(try T1Block(decoding: [0x00, 0xE3, 0x01, 0x05, 0xE7], edc: .lrc).kind == .supervisory(.wtx, isResponse: true))
        #expect(try T1Block(decoding: [0x00, 0x60, 0x00, 0x60], edc: .lrc).kind == .information(sequence: 1, more: true))
    }

    @Test func crcMatchesTheReferenceCheckValue() {
        // CRC-16 with reflected 0x8408, preset 0xFFFF, no final XOR: "123456789" → 0x6F91.
        #expect(EDC.crc.checksum(Array("123456789".utf8)) == [0x6F, 0x91])
        let block = T1Block(kind: .information(sequence: 1, more: false), information: [1, 2, 3]).encoded(edc: .crc)
        #expect(block.count == 3 + 3 + 2)
        #expect((try? T1Block(decoding: block, edc: .crc)) != nil)
    }

    @Test func malformedBlocksAreErrors() {
        #expect(throws: T1BlockError.edcMismatch) { try T1Block(decoding: [0x00, 0x00, 0x00, 0x01], edc: .lrc) }
        #expect(throws: T1BlockError.tooShort(2)) { try T1Block(decoding: [0x00, 0x00], edc: .lrc) }
        #expect(throws: T1BlockError.invalidLength(255)) { try T1Block(decoding: [0x00, 0x00, 0xFF, 0xFF], edc: .lrc) }
        #expect(throws: T1BlockError.lengthMismatch(declared: 2, actual: 0)) { try T1Block(decoding: [0x00, 0x00, 0x02, 0x02], edc: .lrc) }
        #expect(throws: T1BlockError.invalidPCB(0x85)) { try T1Block(decoding: [0x00, 0x85, 0x00, 0x85], edc: .lrc) }
        #expect(throws: T1BlockError.invalidPCB(0xC7)) { try T1Block(decoding: [0x00, 0xC7, 0x00, 0xC7], edc: .lrc) }
    }

    /// Property: any bytes either decode to a block that encodes back to
    /// exactly those bytes, or are refused with a typed error; never a trap.
    /// Blocks are made valid (length and EDC right) half of the time, so that
    /// both sides of the property are exercised.
    @Test func randomBlocksRoundTripOrAreRefused() {
        var rng = TestRandom(seed: 0x7101)
        var decoded = 0
        for _ in 0..<20_000 {
            let edc: EDC = Bool.random(using: &rng) ? .lrc : .crc
            var bytes = (0..<Int.random(in: 0..<12, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if bytes.count >= 3 + edc.length, Bool.random(using: &rng) {
                bytes.removeLast(edc.length)
                bytes[2] = UInt8(bytes.count - 3)
                bytes += edc.checksum(bytes)
            }
            do throws(T1BlockError) {
                let block = try T1Block(decoding: bytes, edc: edc)
                #expect(block.encoded(edc: edc) == bytes, "\(bytes)")
                decoded += 1
            } catch {
                #expect(bytes.count < 3 + edc.length || error != .tooShort(bytes.count), "\(bytes): \(error)")
            }
        }
        #expect(decoded > 100, "only \(decoded) valid blocks: the property was barely tested")
    }
}

/// Host and card engines talking through a channel that loses, garbles and
/// delays blocks: every APDU arrives whole and every response comes back
/// whole, or the exchange ends in a clean error.
struct T1EngineTests {
    struct Faults {
        var garble = 0.0, drop = 0.0, parity = 0.0, repeatOld = 0.0
        var wtx = 0.0, ifsRequest = 0.0
        var cardMute = false
    }

    enum Outcome: Equatable, Hashable { case ok, failed(String) }

    /// Runs one APDU exchange; returns the outcome and the number of blocks exchanged.
    static func run(host: inout T1Host, card: inout T1Card, apdu: [UInt8], response: [UInt8],
                    faults: Faults, rng: inout some RandomNumberGenerator) -> (Outcome, Int) {
        var action = host.transmit(apdu)
        var blocks = 0
        var answer: [UInt8]? = nil
        func garble(_ b: [UInt8], _ rng: inout some RandomNumberGenerator) -> [UInt8] {
            var c = b
            let i = Int.random(in: 0..<c.count, using: &rng)
            c[i] ^= UInt8.random(in: 1...255, using: &rng)
            return c
        }
        while blocks < 400_000 {   // 65536 bytes at IFS 1 are 131 072 blocks
            switch action {
            case .complete(let r):
                #expect(r == response)
                return (.ok, blocks)
            case .failed(let e):
                return (.failed("\(e)"), blocks)
            case .send(let bytes, _):
                blocks += 1
                if faults.cardMute || Double.random(in: 0..<1, using: &rng) < faults.drop {
                    action = host.receiveFailed(.timeout)
                    continue
                }
                let delivered = Double.random(in: 0..<1, using: &rng) < faults.garble ? garble(bytes, &rng) : bytes
                var step = card.received(delivered)
                var reply: [UInt8]? = nil
                while reply == nil {
                    switch step {
                    case .send(let b): reply = b
                    case .process(let got):
                        #expect(got == apdu)
                        answer = response
                        if Double.random(in: 0..<1, using: &rng) < faults.wtx {
                            reply = card.requestTime(multiplier: UInt8.random(in: 1...5, using: &rng))
                        } else if Double.random(in: 0..<1, using: &rng) < faults.ifsRequest {
                            reply = card.requestIFS(UInt8.random(in: 1...254, using: &rng))
                        } else {
                            reply = card.respond(response)
                        }
                    case .timeGranted, .ifsAccepted:
                        if Double.random(in: 0..<1, using: &rng) < faults.wtx {
                            reply = card.requestTime(multiplier: 2)
                        } else {
                            reply = card.respond(answer ?? response)
                        }
                    }
                }
                guard var out = reply else { continue }
                let roll = Double.random(in: 0..<1, using: &rng)
                if roll < faults.drop {
                    action = host.receiveFailed(.timeout)
                } else if roll < faults.drop + faults.parity {
                    action = host.receiveFailed(.parityError)
                } else if roll < faults.drop + faults.parity + faults.repeatOld, !card.previousBlock.isEmpty {
                    out = card.previousBlock
                    action = host.received(out)
                } else if roll < faults.drop + faults.parity + faults.repeatOld + faults.garble {
                    action = host.received(garble(out, &rng))
                } else {
                    action = host.received(out)
                }
            }
        }
        Issue.record("exchange did not end")
        return (.failed("endless"), blocks)
    }

    static func lengths(_ rng: inout some RandomNumberGenerator, ifs: Int) -> Int {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return Int.random(in: 0...4, using: &rng)
        case 1: return ifs * Int.random(in: 1...4, using: &rng)          // chains ending exactly at IFS
        case 2: return ifs * Int.random(in: 1...4, using: &rng) + 1
        case 3: return Int.random(in: 0...65535, using: &rng)
        default: return Int.random(in: 0...600, using: &rng)
        }
    }

    @Test func anyAPDUOverACleanChannel() {
        var rng = TestRandom(seed: 0x7102)
        for _ in 0..<300 {
            let ifsc = Int.random(in: 1...254, using: &rng), ifsd = Int.random(in: 1...254, using: &rng)
            let edc: EDC = Bool.random(using: &rng) ? .lrc : .crc
            var host = T1Host(ifsc: ifsc, ifsd: ifsd, edc: edc, negotiateIFSD: Bool.random(using: &rng))
            var card = T1Card(ifsc: ifsc, edc: edc)
            for _ in 0..<3 {
                let apdu = (0..<max(4, Self.lengths(&rng, ifs: ifsc))).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let response = (0..<(Self.lengths(&rng, ifs: ifsd) + 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let (outcome, _) = Self.run(host: &host, card: &card, apdu: apdu, response: response, faults: Faults(), rng: &rng)
                #expect(outcome == .ok)
            }
        }
    }

    @Test func largestAPDUsBothWays() {
        var rng = TestRandom(seed: 0x7103)
        var host = T1Host(ifsc: 254, ifsd: 254, edc: .crc, negotiateIFSD: true)
        var card = T1Card(ifsc: 254, edc: .crc)
        let apdu = [0x80, 0x12, 0x01, 0x80, 0x00, 0xFF, 0xFF] + (0..<65535).map { UInt8(truncatingIfNeeded: $0) }
        let response = [UInt8](repeating: 0x5A, count: 65536) + [0x90, 0x00]
        let (outcome, blocks) = Self.run(host: &host, card: &card, apdu: apdu, response: response, faults: Faults(), rng: &rng)
        #expect(outcome == .ok)
        #expect(blocks > 2 * 250)
    }

    @Test func recoverableFaultsAreRecovered() {
        var rng = TestRandom(seed: 0x7104)
        var outcomes: [Outcome: Int] = [:]
        for _ in 0..<400 {
            let ifsc = Int.random(in: 8...254, using: &rng), ifsd = Int.random(in: 8...254, using: &rng)
            let edc: EDC = Bool.random(using: &rng) ? .lrc : .crc
            var host = T1Host(ifsc: ifsc, ifsd: ifsd, edc: edc, negotiateIFSD: Bool.random(using: &rng))
            var card = T1Card(ifsc: ifsc, edc: edc)
            let faults = Faults(garble: 0.04, drop: 0.04, parity: 0.04, repeatOld: 0.04, wtx: 0.2, ifsRequest: 0.1)
            let apdu = (0..<max(4, Self.lengths(&rng, ifs: ifsc) % 3000)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let response = (0..<(Self.lengths(&rng, ifs: ifsd) % 3000 + 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let (outcome, _) = Self.run(host: &host, card: &card, apdu: apdu, response: response, faults: faults, rng: &rng)
            outcomes[outcome, default: 0] += 1
        }
        // At these rates recovery nearly always succeeds; a failure must be a clean T=1 error, never a wrong answer.
        #expect((outcomes[.ok] ?? 0) >= 390, "\(outcomes)")
    }

    @Test func muteCardEndsInCardDeadAfterBoundedAttempts() {
        var rng = TestRandom(seed: 0x7105)
        var host = T1Host(ifsc: 32, ifsd: 254, edc: .lrc, negotiateIFSD: false)
        var card = T1Card(ifsc: 32, edc: .lrc)
        var faults = Faults()
        faults.cardMute = true
        let (outcome, blocks) = Self.run(host: &host, card: &card, apdu: [0, 0xA4, 4, 0], response: [0x90, 0], faults: faults, rng: &rng)
        #expect(outcome == .failed("\(T1Error.cardDead)"))
        // (3 retries + 1 resynch) × 4 rounds: a bounded number of waiting times.
        #expect(blocks <= (T1Host.maximumRetries + 1) * (T1Host.maximumResynchronisations + 1) + 1)
    }

    @Test func cardAbortEndsTheExchange() throws {
        var host = T1Host(ifsc: 32, ifsd: 32, edc: .lrc, negotiateIFSD: false)
        var card = T1Card(ifsc: 32, edc: .lrc)
        guard case .send(let first, _) = host.transmit([0x80, 0x32, 0, 0, 1, 0]), case .process = card.received(first) else {
            Issue.record("no command"); return
        }
        guard case .send(let abortResponse, _) = host.received(card.abortChain()) else { Issue.record("no S(ABORT response)"); return }
        #expect(try T1Block(decoding: abortResponse, edc: .lrc).kind == .supervisory(.abort, isResponse: true))
        #expect(host.receiveFailed(.timeout) == .failed(.abortedByCard))
    }

    @Test func wtxRequestAsksForThatManyWaitingTimes() {
        var host = T1Host(ifsc: 32, ifsd: 32, edc: .lrc, negotiateIFSD: false)
        var card = T1Card(ifsc: 32, edc: .lrc)
        guard case .send(let first, _) = host.transmit([0x80, 0x38, 0, 9]), case .process = card.received(first) else { return }
        guard case .send(let wtxResponse, let multiplier) = host.received(card.requestTime(multiplier: 7)) else { Issue.record("no WTX response"); return }
        #expect(multiplier == 7)
        #expect(card.received(wtxResponse) == .timeGranted)
        #expect(host.received(card.respond([0x90, 0x00])) == .complete([0x90, 0x00]))
    }
}
