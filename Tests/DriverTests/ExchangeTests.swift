import Testing
@testable import CCID
@testable import CCIDDriver
@testable import ISO7816
@testable import SimulatorCore

struct ExchangeTests {
    static let ok: [UInt8] = [0x90, 0x00]

    @Test(arguments: ["omnikey-3121-extended", "cherry-st-short"])
    func powerOnAndProtocols(profile: String) throws {
        let h = try Harness(profile: profile)
        #expect(try h.reader.powerOn(slot: 0) == ComplianceTestCard.Variant.direct.atr)
        #expect(try h.reader.selectProtocol(slot: 0, requested: .any) == 0)     // the ATR's first offer
        #expect(try h.reader.selectProtocol(slot: 0, requested: .t1) == 1)
        #expect(h.reader.state(of: 0)?.protocolType == 1)
        #expect(try h.reader.iccStatus(slot: 0) == .presentActive)
        try h.reader.powerOff(slot: 0)
        #expect(try h.reader.iccStatus(slot: 0) == .presentInactive)
        #expect(h.reader.state(of: 0)?.powered == false)
    }

    @Test func cryptoCardRefusesT0() throws {
        let h = try Harness(cards: ["compliance-crypto"])
        _ = try h.reader.powerOn(slot: 0)
        #expect(throws: DriverError.self) { try h.reader.selectProtocol(slot: 0, requested: .t0) }
        #expect(try h.reader.selectProtocol(slot: 0, requested: .any) == 1)
    }

    @Test func emptySlotIsNoCard() throws {
        let h = try Harness(cards: [nil])
        #expect(throws: DriverError.noCard) { try h.reader.powerOn(slot: 0) }
        #expect(try h.reader.iccStatus(slot: 0) == .absent)
        #expect(throws: DriverError.noCard) { try h.reader.transmit(slot: 0, apdu: [0, 0xA4, 4, 0]) }
        #expect(throws: DriverError.invalidSlot(3)) { try h.reader.powerOn(slot: 3) }
    }

    /// Cases 1-4 at every short length, T=1 and T=0, at both APDU levels.
    @Test(arguments: [("omnikey-3121-extended", UInt8(1)), ("omnikey-3121-extended", UInt8(0)),
                      ("cherry-st-short", UInt8(1)), ("cherry-st-short", UInt8(0))])
    func shortCasesAtEveryLength(profile: String, protocolType: UInt8) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: protocolType)
        try h.checkCasesAtEveryLength(protocolType: protocolType)
        // A wrong byte in case 3 is reported with its index.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x32, 0, 0, 3, 0, 1, 9]) == [0x6A, 0x02])
    }

    /// Extended APDUs up to 65535 bytes each way, chained in 261-byte pieces.
    @Test(arguments: [1, 262, 4096, 65535])
    func extendedAPDUsAreChained(length: Int) throws {
        let h = try Harness(profile: "omnikey-3121-extended")
        try h.connect(protocolType: 1)
        let hi = UInt8(length >> 8), lo = UInt8(length & 0xFF)
        let out = try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, hi, lo])
        #expect(out == [UInt8](repeating: 0x5A, count: length) + Self.ok)
        let data = Harness.sequence(length)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x12, 0x01, 0x80, 0x00, hi, lo] + data) == Self.ok)
        let wrong = [UInt8](data.prefix(length - 1)) + [data[length - 1] &+ 1]
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x12, 0x01, 0x80, 0x00, hi, lo] + wrong) == [0x6A, UInt8(clamping: length - 1)])
    }

    @Test func maximumExtendedResponseIs65536Bytes() throws {
        let h = try Harness(profile: "springcard-e518-2slot-extended")
        try h.connect(protocolType: 1)
        let out = try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x11, 0x00, 0x00, 0x00])
        #expect(out.count == 65538 && out.suffix(2) == [0x90, 0x00])
    }

    @Test func shortLevelReaderRefusesExtendedAPDUs() throws {
        let h = try Harness(profile: "cherry-st-short")
        try h.connect()
        #expect(throws: DriverError.self) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, 0x01, 0x00]) }
        do {
            _ = try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, 0x01, 0x00])
        } catch {
            #expect("\(error)".contains("short APDUs only"))
        }
        // The reader stays usable.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 4, 4]) == [0, 1, 2, 3, 0x90, 0x00])
    }

    @Test func malformedAPDUIsAnError() throws {
        let h = try Harness()
        try h.connect()
        #expect(throws: DriverError.self) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x32, 0, 0, 9, 1]) }
    }

    @Test func multiSlotReader() throws {
        let h = try Harness(profile: "acr1281u-3slot-extended", cards: ["compliance", nil, "compliance-crypto"])
        #expect(h.reader.slotCount == 3)
        try h.connect(slot: 0, protocolType: 0)
        try h.connect(slot: 2)
        #expect(h.reader.state(of: 2)?.protocolType == 1)
        #expect(throws: DriverError.noCard) { try h.reader.powerOn(slot: 1) }
        #expect(try h.reader.transmit(slot: 2, apdu: [0x80, 0x36, 0, 3, 1, 0, 0]) == [0, 1, 2, 0x90, 0x00])
        // Under T=0 the APDU-level reader fetches the response (61 03, GET RESPONSE) itself.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x36, 0, 3, 1, 0, 0]) == [0, 1, 2, 0x90, 0x00])
    }

    /// Under T=0 an APDU-level reader re-issues a case 2 with the Le the card
    /// names (6Cxx), as real ones do (ISO/IEC 7816-3 §12.2.3).
    @Test(arguments: ["omnikey-3121-extended", "cherry-st-short"])
    func apduLevelReaderCorrectsLeUnderT0(profile: String) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: 0)
        let verify: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34]
        #expect(try h.reader.transmit(slot: 0, apdu: verify) == [0x90, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x40, 0x00, 0x00, 0x02]) == verify + [0x90, 0x00])
    }
}
