import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ReaderQuirks
import ThreadSupport

/// PIN entry on a TPDU reader with a T=1 card (G20, quirk R1): the driver runs
/// T=1, so the Secure command carries the I-block prologue its T=1 engine
/// would send, the reader frames the filled APDU and hands back the card's
/// block, and the driver carries on from it (an S(WTX) request first, say).
/// The T=1 sequence numbers stay in step for the APDUs after it.
@Suite struct SecureT1Tests {
    /// SCM SPR532: TPDU level, PIN verify and modify, T=0 and T=1.
    static let spr532 = "36210001000103000000a00f0000401f000000012a00002940050000fe0000000000000000000000ba0001000e010000ffff00000301"

    static func harness() throws -> Harness {
        let p = try ReaderProfile.custom(name: "spr532", vendorID: 0x04E6, productID: 0xE003, manufacturer: "SCM",
                                         product: "SPR 532", descriptorHex: spr532)
        let h = try Harness(readerProfile: p)
        try h.connect(protocolType: 1)
        return h
    }

    static let verify = PINEntry(part10Verify: PINPadTests.verifyStructure())
    static let ok: [UInt8] = [0x90, 0x00]

    /// The card's last command (the test card's 80 40), then a case 2 to show the blocks' numbering is still right.
    static func cardSaw(_ h: Harness) throws -> [UInt8] {
        let last = try h.reader.transmit(slot: 0, apdu: [0x80, 0x40, 0x00, 0x00, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0x00, 0x20, 0x20]) == Harness.sequence(32) + ok)
        return Array(last.prefix(13))
    }

    @Test func verifyGoesAsTheEnginesIBlock() throws {
        let h = try Self.harness()
        let entry = try #require(Self.verify)
        for _ in 0..<3 {
            #expect(try h.reader.secure(slot: 0, entry: entry) == Self.ok)
            #expect(try Self.cardSaw(h) == [0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33, 0x34, 0xFF, 0xFF, 0xFF, 0xFF])
        }
    }

    @Test func cardAskingForTimeAfterThePINIsAnswered() throws {
        let h = try Self.harness()
        // Quirk R1's card: S(WTX request) before its answer to VERIFY (and to every command here).
        #expect(try h.sim.setFaults(slot: 0, ["wtx=1"]))
        #expect(try h.reader.secure(slot: 0, entry: try #require(Self.verify)) == Self.ok)
        #expect(try Self.cardSaw(h).prefix(5) == [0x00, 0x20, 0x00, 0x01, 0x08])
    }

    @Test func cancelledOrTimedOutEntryLeavesTheNumberingAlone() throws {
        let h = try Self.harness()
        let entry = try #require(Self.verify)
        h.sim.setPINPad(.cancel)
        #expect(try h.reader.secure(slot: 0, entry: entry) == [0x64, 0x01])
        h.sim.setPINPad(.timeout)
        #expect(try h.reader.secure(slot: 0, entry: entry) == [0x64, 0x00])
        // The block never went to the card: the next APDU's N(S) is the one before the entry.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0x00, 0x04, 0x04]) == Harness.sequence(4) + Self.ok)
        h.sim.setPINPad(.enter("1234"))
        #expect(try h.reader.secure(slot: 0, entry: entry) == Self.ok)
        #expect(try Self.cardSaw(h).prefix(9) == [0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33, 0x34])
    }
}

/// Quirk P14 on the SPR 532 (a TPDU pad, T=1 card): a case-1 verification with no
/// PIN block goes after Escape 80 02 00, in a Secure of its own bSeq; the pad appends the PIN.
@Suite struct UnpaddedPINTests {
    static let case1: [UInt8] = [0x1E, 0x00, 0x82, 0x00, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                                 4, 0, 0, 0, 0x00, 0x20, 0x00, 0x01]

    static func reader(off: Set<String>) throws -> Reader {
        var p = try ReaderProfile.custom(name: "spr532", vendorID: 0x04E6, productID: 0xE003, manufacturer: "SCM",
                                         product: "SPR 532", descriptorHex: SecureT1Tests.spr532)
        p.bcdDevice = 0x0510
        let applied = p.firmwareBugs.apply("pin-case1-escape")
        #expect(applied)
        let h = try Harness(readerProfile: p, quirksOff: off)
        try h.connect(protocolType: 1)
        return h.reader
    }

    @Test func escapeFirstThenThePINAppended() throws {
        let reader = try Self.reader(off: [])
        let entry = try #require(PINEntry(part10Verify: Self.case1))
        #expect(try reader.secure(slot: 0, entry: entry) == [0x90, 0x00])
        let last = try reader.transmit(slot: 0, apdu: [0x80, 0x40, 0x00, 0x00, 0x00])
        #expect(Array(last.prefix(9)) == [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34])
    }

    @Test func withoutTheQuirkThePadRefuses() throws {
        let reader = try Self.reader(off: ["P14"])
        let entry = try #require(PINEntry(part10Verify: Self.case1))
        #expect(throws: DriverError.commandFailed(.badParameter(at: 6))) { try reader.secure(slot: 0, entry: entry) }
        // The T=1 numbering is intact after the refusal.
        #expect(try reader.transmit(slot: 0, apdu: [0x80, 0x34, 0x00, 0x04, 0x04]) == Harness.sequence(4) + [0x90, 0x00])
    }
}
