import Testing
import TestSupport
@testable import ISO7816

struct APDUTests {
    @Test func shortCases() throws {
        let c1 = try CommandAPDU([0x80, 0x30, 0, 0])
        #expect(c1.apduCase == .one && !c1.isExtended)
        let c2 = try CommandAPDU([0x80, 0x34, 0, 0x10, 0x10])
        #expect(c2.apduCase == .two && c2.expectedLength == 16)
        let c2max = try CommandAPDU([0x80, 0x34, 1, 0, 0x00])
        #expect(c2max.expectedLength == 256)
        let c3 = try CommandAPDU([0x80, 0x32, 0, 0, 3, 0, 1, 2])
        #expect(c3.apduCase == .three && c3.dataLength == 3 && Array(c3.data) == [0, 1, 2])
        let c4 = try CommandAPDU([0x80, 0x36, 0, 5, 2, 0, 1, 0])
        #expect(c4.apduCase == .four && c4.expectedLength == 256 && c4.dataLength == 2)
    }

    @Test func extendedCases() throws {
        let c2 = try CommandAPDU([0x80, 0x00, 0x04, 0x55, 0x00, 0x00, 0x00])
        #expect(c2.apduCase == .two && c2.isExtended && c2.expectedLength == 65536)
        let data = [UInt8](repeating: 7, count: 300)
        let c3 = try CommandAPDU([0x80, 0x12, 0x01, 0x80, 0x00, 0x01, 0x2C] + data)
        #expect(c3.apduCase == .three && c3.isExtended && c3.dataLength == 300)
        let c4 = try CommandAPDU([0x80, 0x36, 0x01, 0x00, 0x00, 0x01, 0x2C] + data + [0x01, 0x00])
        #expect(c4.apduCase == .four && c4.isExtended && c4.expectedLength == 256)
    }

    @Test func inconsistentLengthsAreErrors() {
        #expect(throws: APDUError.tooShort(3)) { try CommandAPDU([0, 1, 2]) }
        #expect(throws: APDUError.inconsistentLength(8)) { try CommandAPDU([0x80, 0x32, 0, 0, 5, 0, 1, 2]) }
        #expect(throws: APDUError.inconsistentLength(6)) { try CommandAPDU([0x80, 0x32, 0, 0, 0, 1]) }
    }

    /// Property: random bytes never trap, and an APDU that parses accounts
    /// for every byte: header, Lc field, data and Le field, nothing else.
    @Test func randomAPDUsAccountForEveryByteOrAreRefused() {
        var rng = TestRandom(seed: 0xA9D0)
        var parsed = 0
        for _ in 0..<20_000 {
            var bytes = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Often a consistent short case 3 or 4, so that both sides run.
            if bytes.count > 5, Bool.random(using: &rng) { bytes[4] = UInt8(min(bytes.count - 5, 255)); bytes = Array(bytes.prefix(5 + Int(bytes[4]) + Int.random(in: 0...1, using: &rng))) }
            guard let a = try? CommandAPDU(bytes) else { continue }
            parsed += 1
            #expect(a.bytes == bytes && a.data.count == a.dataLength)
            #expect((0...65536).contains(a.expectedLength) && a.dataLength <= 65535)
            let lc = a.dataLength == 0 ? 0 : (a.isExtended ? 3 : 1)
            let le = a.expectedLength == 0 ? 0 : (a.isExtended ? (a.dataLength == 0 ? 3 : 2) : 1)
            #expect(4 + lc + a.dataLength + le == bytes.count, "\(bytes.prefix(8)): \(a)")
        }
        #expect(parsed > 1_000, "only \(parsed) APDUs parsed: the property was barely tested")
    }
}

struct PPSTests {
    @Test func requestVectors() {
        #expect(PPS(protocolType: 1, fiDi: 0x18).encoded() == [0xFF, 0x11, 0x18, 0xF6])
        #expect(PPS(protocolType: 0).encoded() == [0xFF, 0x00, 0xFF])
        #expect(PPS(protocolType: 1, fiDi: 0x96, pps2: 0x01, pps3: 0x00).encoded() == [0xFF, 0x71, 0x96, 0x01, 0x00, 0x19])
    }

    @Test func everyValidAnswerForm() throws {
        let request = PPS(protocolType: 1, fiDi: 0x18, pps2: 0x00)
        // Echo.
        #expect(try request.negotiated(by: request.encoded()).effectiveFiDi == 0x18)
        // PPS1 absent: defaults kept.
        #expect(try request.negotiated(by: PPS(protocolType: 1, pps2: 0x00).encoded()).effectiveFiDi == 0x11)
        // PPS2 absent.
        #expect(try request.negotiated(by: PPS(protocolType: 1, fiDi: 0x18).encoded()).effectiveFiDi == 0x18)
        // Only the protocol.
        #expect(try request.negotiated(by: PPS(protocolType: 1).encoded()).effectiveFiDi == 0x11)
    }

    @Test func invalidAnswers() {
        let request = PPS(protocolType: 1, fiDi: 0x18)
        #expect(throws: PPSError.self) { try request.negotiated(by: PPS(protocolType: 0, fiDi: 0x18).encoded()) }
        #expect(throws: PPSError.self) { try request.negotiated(by: PPS(protocolType: 1, fiDi: 0x95).encoded()) }
        #expect(throws: PPSError.checksum) { try request.negotiated(by: [0xFF, 0x11, 0x18, 0xF7]) }
        #expect(throws: PPSError.self) { try request.negotiated(by: [0xFF, 0x11, 0x18]) }
        #expect(throws: PPSError.self) { try request.negotiated(by: [0x3B, 0x11, 0x18, 0xF6]) }
        // Random answers (seeded): refused, or a result the request allows.
        var rng = TestRandom(seed: 0x9905)
        for _ in 0..<10_000 {
            let answer = (0..<Int.random(in: 0..<8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if let result = try? request.negotiated(by: answer) {
                #expect(result.effectiveFiDi == 0x18 || result.effectiveFiDi == 0x11, "\(answer)")
            }
        }
    }
}
