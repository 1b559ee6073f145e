import Testing
import TestSupport
@testable import CCID

/// SetParameters' protocol data and the Secure PIN structures: the one
/// encoding both the driver and the simulator use.
@Suite struct WireStructureTests {
    @Test func protocolDataDefaultsAreTheSpecsBytes() {
        #expect(ProtocolData.defaults(protocolNumber: 0).encoded() == [0x11, 0x00, 0x00, 0x0A, 0x00])
        #expect(ProtocolData.defaults(protocolNumber: 1).encoded() == [0x11, 0x10, 0x00, 0x4D, 0x00, 0x20, 0x00])
    }

    @Test func protocolDataFieldsLandAtTheirOffsets() {
        let t1 = ProtocolData.t1(.init(fiDi: 0x96, crc: true, inverseConvention: true, guardTime: 2, waitingIntegers: 0x75,
                                       clockStop: 3, ifsc: 0xFE, nad: 0x21))
        #expect(t1.encoded() == [0x96, 0x13, 0x02, 0x75, 0x03, 0xFE, 0x21])
        let t0 = ProtocolData.t0(.init(fiDi: 0x18, inverseConvention: true, guardTime: 0xFF, waitingInteger: 0x40, clockStop: 1))
        #expect(t0.encoded() == [0x18, 0x02, 0xFF, 0x40, 0x01])
        #expect(t1.protocolNumber == 1 && t0.protocolNumber == 0 && t1.fiDi == 0x96 && t0.guardTime == 0xFF)
    }

    @Test func randomProtocolDataRoundTripsOrIsRefused() {
        var rng = TestRandom(seed: 0x9A7A)
        for _ in 0..<2000 {
            let p = UInt8.random(in: 0...2, using: &rng)
            let bytes = (0..<Int.random(in: 0...9, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            guard let decoded = ProtocolData(protocolNumber: p, bytes: bytes) else {
                #expect(p == 2 || bytes.count != (p == 1 ? 7 : 5), "refused \(p) \(bytes)")
                continue
            }
            #expect(decoded.protocolNumber == p)
            // Re-encoding keeps every field; bmTCCKS bits the structure does not define are not kept.
            let again = decoded.encoded()
            #expect(ProtocolData(protocolNumber: p, bytes: again) == decoded)
            let definedTCCK: UInt8 = p == 1 ? 0x03 : 0x02
            #expect(again[1] & definedTCCK == bytes[1] & definedTCCK)
            #expect(Array(again[2...]) == Array(bytes[2...]) && again[0] == bytes[0])
        }
    }

    static let verifyAPDU: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x08] + [UInt8](repeating: 0xFF, count: 8)

    @Test func part10VerifyBecomesCCIDsLayout() throws {
        let part10: [UInt8] = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                               13, 0, 0, 0] + Self.verifyAPDU
        let entry = try #require(PINEntry(part10Verify: part10))
        // bPINOperation, bTimeOut, then Part 10's fields without bTimerOut2 and ulDataLength.
        let ccid: [UInt8] = [0x00, 0x1E, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00] + Self.verifyAPDU
        #expect(entry.ccidEncoded() == ccid)
        #expect(PINEntry(ccid: ccid) == entry)
        #expect(entry.operation == .verify && entry.timeout == 0x1E && entry.maxExtraDigit == 0x0408 && entry.languageID == 0x0409)
    }

    @Test(arguments: [UInt8(0), 1, 2, 3, 4])
    func part10ModifyKeepsTheMessagesItAsksFor(numberMessage: UInt8) throws {
        let apdu: [UInt8] = [0x00, 0x24, 0x00, 0x01, 0x10] + [UInt8](repeating: 0xFF, count: 16)
        let part10: [UInt8] = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, numberMessage, 0x09, 0x04,
                               0xA0, 0xA1, 0xA2, 0xB0, 0xB1, 0xB2, UInt8(apdu.count), 0, 0, 0] + apdu
        let entry = try #require(PINEntry(part10Modify: part10))
        let messages: [UInt8] = numberMessage >= 3 ? [0xA0, 0xA1, 0xA2] : (numberMessage == 2 ? [0xA0, 0xA1] : [0xA0])
        #expect(entry.messageIndexes == messages)
        #expect(entry.operation == .modify(insertionOffsetOld: 0x00, insertionOffsetNew: 0x08, confirmPIN: 0x03))
        let ccid = entry.ccidEncoded()
        #expect(ccid == [0x01, 0x1E, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, numberMessage, 0x09, 0x04]
                + messages + [0xB0, 0xB1, 0xB2] + apdu)
        #expect(PINEntry(ccid: ccid) == entry)
    }

    @Test func malformedPINStructuresAreRefused() {
        let part10: [UInt8] = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                               13, 0, 0, 0] + Self.verifyAPDU
        for cut in 0..<part10.count { #expect(PINEntry(part10Verify: Array(part10.prefix(cut))) == nil, "\(cut)") }
        var wrongLength = part10
        wrongLength[15] = 12
        #expect(PINEntry(part10Verify: wrongLength) == nil)
        let ccid = PINEntry(part10Verify: part10)!.ccidEncoded()
        for cut in 0..<(ccid.count - Self.verifyAPDU.count + PINEntry.shortestAPDU) {
            #expect(PINEntry(ccid: Array(ccid.prefix(cut))) == nil, "\(cut)")
        }
        #expect(PINEntry(ccid: [0x02] + ccid.dropFirst()) == nil)
    }
}
