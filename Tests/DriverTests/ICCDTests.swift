import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ThreadSupport

/// USB ICCD tokens (version A: T=0 through a status byte; version B: APDUs
/// with poll answers), driven through the driver's ICCD transport against the
/// simulated token, and the transport's state machine against scripted answers.
@Suite struct ICCDTests {
    /// Two tokens of the corpus: SchlumbergerSema e-gate (A, T=0) and Gemalto PDT (B, short APDU, T=1).
    static let eGate = "36211001000101000000fc0d0000fc0d0000008025000080250000000000000000000000000000004008000000010000ffff00000001"
    static let gemaltoPDT = "36211001000102000000fc0d0000fc0d000000802500008025000000fe00000000000000000000004008020005010000ffff00000001"

    static func token(_ version: ICCDVersion) throws -> ReaderProfile {
        var p = try ReaderProfile.custom(name: "iccd", vendorID: version == .a ? 0x0973 : 0x08E6,
                                         productID: version == .a ? 0x0003 : 0x1227, manufacturer: "corpus",
                                         product: "token", descriptorHex: version == .a ? eGate : gemaltoPDT)
        p.usbLayout = USBDescriptorSet.Layout(interruptEndpoint: false, iccd: version)
        return p
    }

    @Test func descriptorsNameTheTokenAndItsMissingPipes() throws {
        let sim = SimulatedReader(name: "t", profile: try Self.token(.b), serialNumber: "1")
        let identity = try sim.descriptors.identity()
        #expect(identity.iccd == .b)
        #expect(identity.endpoints == CCIDEndpoints(bulkOut: 0, bulkIn: 0, interruptIn: nil, bulkInPacketSize: 64))
        // The interface descriptor: no endpoint, class 0x0B, protocol 2.
        let at = try #require(sim.descriptors.configuration.firstIndex(of: 0x04)) - 1
        #expect(Array(sim.descriptors.configuration[at..<at + 9]) == [9, 0x04, 0, 0, 0, 0x0B, 0, 2, 0])
        // Protocol 1 with bulk endpoints is a CCID reader that says so oddly (ActivCard V2): driven over bulk.
        var odd = try Self.token(.a)
        odd.usbLayout.iccd = nil
        var set = SimulatedReader(name: "o", profile: odd, serialNumber: "1").descriptors
        let i = try #require(set.configuration.firstIndex(of: 0x04)) - 1
        set.configuration[i + 7] = 1
        #expect(try set.identity().iccd == nil)
    }

    @Test func driverDrivesVersionAAtTPDULevelAndVersionBAsExtended() throws {
        let a = try Harness(readerProfile: Self.token(.a))
        #expect(a.reader.descriptor.exchangeLevel == .tpdu)
        #expect(a.reader.descriptor.protocols == .t0)
        let b = try Harness(readerProfile: Self.token(.b))
        #expect(b.reader.descriptor.exchangeLevel == .extendedAPDU)
    }

    @Test func versionAAnswersEveryCaseAtEveryLength() throws {
        let h = try Harness(readerProfile: Self.token(.a))
        try h.reader.startUp()
        #expect(h.log.contains("ICCD version A: power off, on, off at open"))
        try h.connect(protocolType: 0)
        try h.checkCasesAtEveryLength(protocolType: 0)
        // An extended APDU goes in ENVELOPE and comes back by GET RESPONSE, under T=0.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, 0x10, 0x00]) == [UInt8](repeating: 0x5A, count: 4096) + [0x90, 0x00])
    }

    @Test func versionBAnswersEveryCaseAndFourKilobytesBothWays() throws {
        let h = try Harness(readerProfile: Self.token(.b))
        try h.reader.startUp()
        try h.connect(protocolType: 1)
        try h.checkCasesAtEveryLength(protocolType: 1)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, 0x10, 0x00]) == [UInt8](repeating: 0x5A, count: 4096) + [0x90, 0x00])
        let data = Harness.sequence(4096)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x3A, 0x00, 0x00, 0x00, 0x10, 0x00] + data) == [0x90, 0x00])
    }

    @Test(arguments: [ICCDVersion.a, .b])
    func busyCardIsPolledUntilItAnswers(version: ICCDVersion) throws {
        let h = try Harness(readerProfile: Self.token(version))
        try h.connect(protocolType: version == .a ? 0 : 1)
        // The test card's time request: busy 8 × 50 ms, then 90 00.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x38, 0x00, 0x08]) == [0x90, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0x00, 0x05, 0x05]) == Harness.sequence(5) + [0x90, 0x00])
    }

    @Test(arguments: [ICCDVersion.a, .b])
    func tokenWithNoChipHasNoCard(version: ICCDVersion) throws {
        let h = try Harness(readerProfile: Self.token(version), cards: [nil])
        #expect(throws: DriverError.noCard) { try h.reader.powerOn(slot: 0) }
    }

    // MARK: The state machine against scripted answers

    static func command(_ body: Command.Body) -> Command { Command(slot: 0, sequence: 7, body: body) }

    /// "icc error" of a failed reply; nil for any other step.
    static func failure(_ step: ICCDExchange.Step) -> String? {
        guard case .done(let reply) = step, reply.status.command == .failed else { return nil }
        return "\(reply.status.icc) \(reply.slotError)"
    }

    @Test func versionARunsAHeaderThenDataThenTheStatusWord() {
        var e = ICCDExchange(command: Self.command(.xfrBlock(bwi: 0, levelParameter: 0, data: [0x80, 0x34, 0, 2, 2])),
                             version: .a, interface: 0, powered: true, protocols: .t0)
        #expect(e.start() == .request(.iccdAXfrBlock([0x80, 0x34, 0, 2, 2], interface: 0)))
        #expect(e.received([]) == .request(.iccdAStatus(interface: 0)))
        #expect(e.received([0x40]) == .wait(.milliseconds(10)))
        #expect(e.resume() == .request(.iccdAStatus(interface: 0)))
        #expect(e.received([0x10]) == .request(.iccdDataBlock(interface: 0, length: 2)))
        #expect(e.received([0x00, 0x01]) == .request(.iccdAStatus(interface: 0)))
        #expect(e.received([0x20]) == .request(.iccdDataBlock(interface: 0, length: 2)))
        #expect(e.received([0x90, 0x00]) == .done(Reply(slot: 0, sequence: 7, status: SlotStatus(icc: .presentActive),
                                                        body: .dataBlock(chainParameter: 0, data: [0x00, 0x01, 0x90, 0x00]))))
    }

    @Test func versionAOutOfStepOrMuteFails() {
        let header: [UInt8] = [0x80, 0x32, 0, 0, 1]
        var lost = ICCDExchange(command: Self.command(.xfrBlock(bwi: 0, levelParameter: 0, data: header + [7])),
                                version: .a, interface: 0, powered: true, protocols: .t0)
        _ = lost.start(); _ = lost.received([])
        #expect(lost.received([0x10]) == .request(.iccdAXfrBlock([7], interface: 0)))
        #expect(lost.received([]) == .request(.iccdAStatus(interface: 0)))
        // Data wanted again after the data: the token lost the command.
        #expect(Self.failure(lost.received([0x10])) == "presentActive \(SlotError.hardwareError)")
        var mute = ICCDExchange(command: Self.command(.xfrBlock(bwi: 0, levelParameter: 0, data: header + [7])),
                                version: .a, interface: 0, powered: true, protocols: .t0)
        _ = mute.start(); _ = mute.received([])
        #expect(Self.failure(mute.received([0x80])) == "absent \(SlotError.iccMute)")
        var power = ICCDExchange(command: Self.command(.iccPowerOn(voltage: .automatic)), version: .a, interface: 0,
                                 powered: false, protocols: .t0)
        #expect(power.start() == .request(.iccdPowerOff(interface: 0)))
        #expect(power.received([]) == .request(.iccdAStatus(interface: 0)))
        #expect(power.received([0x00]) == .request(.iccdAPowerOn(interface: 0)))
        #expect(Self.failure(power.stalled()) == "absent \(SlotError.iccMute)")
    }

    @Test func versionBPollsReportsStatusAndRefusesUnknownAnswers() {
        func xfr() -> ICCDExchange {
            ICCDExchange(command: Self.command(.xfrBlock(bwi: 0, levelParameter: 0x01, data: [1, 2])), version: .b,
                         interface: 1, powered: true, protocols: .t1)
        }
        var e = xfr()
        // The level parameter goes in wValue's high byte.
        #expect(e.start() == .request(ControlRequest(requestType: 0x21, request: 0x65, value: 0x0100, index: 1, length: 2, data: [1, 2])))
        #expect(e.received([]) == .request(.iccdDataBlock(interface: 1, length: 0x1000)))
        #expect(e.received([0x80, 0x05, 0x00]) == .wait(.milliseconds(50)))
        #expect(e.resume() == .request(.iccdDataBlock(interface: 1, length: 0x1000)))
        #expect(e.received([0x80, 0x00, 0x00]) == .wait(.milliseconds(10)))
        #expect(e.received([0x10]) == .done(Reply(slot: 0, sequence: 7, status: SlotStatus(icc: .presentActive),
                                                  body: .dataBlock(chainParameter: 0x10, data: []))))
        var status = xfr()
        _ = status.start(); _ = status.received([])
        #expect(Self.failure(status.received([0x40, 0x41, 0xFE])) == "presentInactive \(SlotError.iccMute)")
        var unknown = xfr()
        _ = unknown.start(); _ = unknown.received([])
        #expect(Self.failure(unknown.received([0x55, 0x00])) == "presentActive \(SlotError.hardwareError)")
        var empty = xfr()
        _ = empty.start(); _ = empty.received([])
        #expect(Self.failure(empty.received([])) == "presentActive \(SlotError.hardwareError)")
        var other = ICCDExchange(command: Self.command(.escape(data: [0x02])), version: .b, interface: 1, powered: true, protocols: .t1)
        #expect(Self.failure(other.start()) == "presentActive \(SlotError.commandNotSupported)")
        var slot1 = ICCDExchange(command: Command(slot: 1, sequence: 1, body: .getSlotStatus), version: .b, interface: 1,
                                 powered: true, protocols: .t1)
        #expect(Self.failure(slot1.start()) == "presentActive \(SlotError.badSlot)")
    }

    @Test func pollAnswersEncodeAndDecode() {
        #expect(ICCDBAnswer(decoding: [0x80, 0x2C, 0x01]) == .poll(tens: 300))
        #expect(ICCDBAnswer.pollDelay(tens: 300) == .seconds(3))
        #expect(ICCDBAnswer(decoding: [0x03, 9]) == .data(chain: 3, [9]))
        #expect(ICCDBAnswer(decoding: [0x40, 0x02]) == nil)
        #expect(ICCDBAnswer(decoding: [0x80]) == nil)
        #expect(ICCDBAnswer(decoding: []) == nil)
        #expect(ICCDBAnswer.status(SlotStatus(icc: .absent, command: .failed), error: 0xFE).encoded() == [0x40, 0x42, 0xFE])
    }
}
