import Testing
@testable import CCIDDriver
import ISO7816
@testable import ReaderQuirks
@testable import SimulatorCore

/// Quirk M5: the GemCore POS Pro's slots after the first run four rates only;
/// the driver steps a fast card's TA1 down to one of them there, and leaves slot 0 alone.
@Suite struct SlotRateTests {
    static let gemCorePOSPro = "36210001040703000000a00f0000a00f000000002a000020a1070000fe0000000000000000000000300201000f010000000000000001"

    static func reader(off: Set<String>) throws -> Reader {
        var p = try ReaderProfile.custom(name: "gemcore", vendorID: 0x08E6, productID: 0x3479, manufacturer: "Gemalto",
                                         product: "GemCore POS Pro", descriptorHex: gemCorePOSPro)
        let applied = p.firmwareBugs.apply("secondary-rates")
        #expect(applied)
        return try Harness(readerProfile: p, cards: ["compliance-fast", "compliance-fast"], quirksOff: off).reader
    }

    static func use(_ reader: Reader, slot: Int) throws -> [UInt8] {
        _ = try reader.powerOn(slot: slot)
        _ = try reader.selectProtocol(slot: slot, requested: .t1)
        #expect(try reader.transmit(slot: slot, apdu: [0x00, 0xA4, 0x04, 0x00, 0x06] + ComplianceTestCard.appletAID) == [0x90, 0x00])
        return try reader.transmit(slot: slot, apdu: [0x80, 0x34, 0x00, 0x08, 0x08])
    }

    @Test func secondSlotRunsOneOfItsOwnRates() throws {
        let reader = try Self.reader(off: [])
        #expect(try Self.use(reader, slot: 0) == Harness.sequence(8) + [0x90, 0x00])
        #expect(try reader.currentParameters(slot: 0).fiDi == 0x96)   // 250000 bps: slot 0 takes the card's TA1
        #expect(try Self.use(reader, slot: 1) == Harness.sequence(8) + [0x90, 0x00])
        #expect(try reader.currentParameters(slot: 1).fiDi == 0x95)   // 125000 bps, the fastest slot 1 runs
    }

    @Test func withoutTheQuirkTheSecondSlotsCardIsLost() throws {
        let reader = try Self.reader(off: ["M5"])
        #expect(try Self.use(reader, slot: 0) == Harness.sequence(8) + [0x90, 0x00])
        // Slot 1 set to 250000 bps, which it cannot run: no block comes back, then resynchronisation fails.
        #expect(throws: DriverError.cardProtocol(T1Error.cardDead.description)) { try Self.use(reader, slot: 1) }
    }
}
