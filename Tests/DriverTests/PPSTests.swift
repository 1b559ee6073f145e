import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ISO7816

/// PPS at TPDU level: the driver negotiates Fi/Di and the protocol when the
/// reader does not; the simulated card only hears a reader set to its rate.
struct DriverPPSTests {
    @Test(arguments: ["gemalto-ct30-tpdu", "acr38u-tpdu"])
    func negotiatesTA1(profile: String) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: 1)      // not the card's first protocol: PPS needed
        let p = try h.reader.currentParameters(slot: 0)
        #expect(p.protocolType == 1 && p.fiDi == 0x18 && p.fi == 372 && p.di == 12)
        #expect(h.log.all.contains { $0.contains("PPS T=1 Fi/Di 0x18") })
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x01, 0x10]) == [UInt8](repeating: 1, count: 16) + [0x90, 0x00])
    }

    @Test func answerWithoutPPS1KeepsTheDefaults() throws {
        let h = try Harness(profile: "gemalto-ct30-tpdu")
        _ = try h.sim.setFaults(slot: 0, ["pps=1"])
        try h.connect(protocolType: 1)
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x11)
    }

    @Test func silentCardIsResetAndKeepsTheDefaults() throws {
        let h = try Harness(profile: "gemalto-ct30-tpdu")
        _ = try h.sim.setFaults(slot: 0, ["pps=2"])
        try h.connect(protocolType: 0)      // the card's own protocol: works at Fi/Di 0x11 after the reset
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x11)
        #expect(h.log.all.contains { $0.contains("resetting the card") })
        _ = try h.reader.powerOn(slot: 0)
        #expect(throws: DriverError.self) { try h.reader.selectProtocol(slot: 0, requested: .t1) }   // T=1 needs a PPS it cannot get
    }

    @Test func slowReaderGetsALowerDi() throws {
        var profile = try #require(ReaderProfile.named("gemalto-ct30-tpdu"))
        profile.descriptor.maxDataRate = 40_000   // at 4.8 MHz and Fi 372: Di 2 (25 806 bps) is the most it takes
        let h = try Harness(readerProfile: profile)
        try h.connect(protocolType: 1)
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x12)
    }

    @Test func listedDataRatesAreRespected() throws {
        var profile = try #require(ReaderProfile.named("gemalto-ct30-tpdu"))
        // Lists Di 1, 2, 4, 8 at 4.8 MHz: 12903 … 103225 bps; Di 12 (154838 bps) is within dwMaxDataRate but not listed.
        profile.descriptor.numDataRatesSupported = 4
        let h = try Harness(readerProfile: profile)
        #expect(h.sim.dataRates.count == 4)
        try h.connect(protocolType: 1)
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x14)
    }

    @Test func readerThatNegotiatesItselfGetsNoPPS() throws {
        let h = try Harness(profile: "omnikey-3121-extended")
        try h.connect(protocolType: 1)
        #expect(!h.log.all.contains { $0.contains("PPS") })
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x18)   // TA1 handed to the reader in SetParameters
    }

    /// TPDU readers that negotiate with the card themselves (dwFeatures 0x80
    /// or 0x40, as the SCM SCR3310 or the eToken 7300 declare): the driver
    /// sends no PPS, the simulated reader runs it, and the card hears T=1 at
    /// TA1's rate. Before the simulator did, every block was lost.
    static func negotiating(_ feature: ClassDescriptor.Features) throws -> ReaderProfile {
        var profile = try #require(ReaderProfile.named("gemalto-ct30-tpdu"))
        profile.descriptor.features.insert(feature)
        return profile
    }

    @Test(arguments: [ClassDescriptor.Features.automaticPPS, .automaticParameterNegotiation])
    func tpduReaderThatNegotiatesRunsThePPSItself(feature: ClassDescriptor.Features) throws {
        let h = try Harness(readerProfile: try Self.negotiating(feature))
        try h.connect(protocolType: 1)
        #expect(!h.log.all.contains { $0.contains("PPS") })
        #expect(try h.reader.currentParameters(slot: 0).fiDi == 0x18)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x02, 0x20]) == [UInt8](repeating: 2, count: 32) + [0x90, 0x00])
        // And back to T=0, the card's first protocol, after a reset.
        _ = try h.reader.powerOn(slot: 0)
        #expect(try h.reader.selectProtocol(slot: 0, requested: .t0) == 0)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x03, 0x08]) == [UInt8](repeating: 3, count: 8) + [0x90, 0x00])
    }

    @Test func cardKeepingItsRateIsFollowedByTheNegotiatingReader() throws {
        let h = try Harness(readerProfile: try Self.negotiating(.automaticPPS))
        _ = try h.sim.setFaults(slot: 0, ["pps=1"])
        try h.connect(protocolType: 1)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x04, 0x04]) == [4, 4, 4, 4, 0x90, 0x00])
    }

    @Test func cardRefusingTheReadersPPSFailsSetParameters() throws {
        let h = try Harness(readerProfile: try Self.negotiating(.automaticPPS))
        _ = try h.sim.setFaults(slot: 0, ["pps=2"])
        _ = try h.reader.powerOn(slot: 0)
        #expect(throws: DriverError.self) { try h.reader.selectProtocol(slot: 0, requested: .t1) }
    }
}
