/// Generic behaviours of the reader facts (docs/quirks.md, G rows) that need no quirk: each against the simulator.
import Testing
@testable import CCIDDriver
@testable import SimulatorCore

/// G9: SetParameters answered with bError 01–7F (a field the reader kept its own value of) still sets the protocol.
@Suite struct SetParametersFieldKeptTests {
    @Test func protocolHoldsWhenTheReaderKeepsAField() throws {
        var p = try #require(ReaderProfile.named("acr38u-tpdu"))
        let applied = p.firmwareBugs.apply("setparams-keeps=12")
        #expect(applied)
        let h = try Harness(readerProfile: p)
        try h.connect(protocolType: 1)
        #expect(h.log.contains("reader kept its own value of SetParameters' byte 12; the protocol holds"))
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0x00, 0x40, 0x40]) == Harness.sequence(64) + [0x90, 0x00])
    }
}

/// G12: a PIN entry's deadline is the pad's timeout plus 10 s, at least 90 s.
@Suite struct PINEntryDeadlineTests {
    @Test func pinEntryWaitsBeyondThePadsOwnTimeout() {
        #expect(Reader.pinEntryWaitingTime(timeout: 0) == .seconds(90))
        #expect(Reader.pinEntryWaitingTime(timeout: 30) == .seconds(90))
        #expect(Reader.pinEntryWaitingTime(timeout: 80) == .seconds(90))
        #expect(Reader.pinEntryWaitingTime(timeout: 120) == .seconds(130))
        #expect(Reader.pinEntryWaitingTime(timeout: 255) == .seconds(265))
    }
}

/// G14: a powered card found unpowered (swapped between two polls) is reported absent once.
@Suite struct SwappedCardTests {
    @Test func swapBetweenPollsIsOneRemoval() throws {
        let h = try Harness(profile: "cherry-st-short")
        try h.connect()
        #expect(try h.reader.iccStatus(slot: 0) == .presentActive)
        // Out and in again, with nobody polling in between.
        try h.sim.remove(slot: 0)
        try h.sim.insert(try #require(CardSpec("compliance").flatMap(\.builtInCard)), slot: 0)
        #expect(try h.reader.iccStatus(slot: 0) == .absent)
        #expect(h.log.contains("slot 0: the powered card is now unpowered (swapped between polls); reporting a removal"))
        #expect(try h.reader.iccStatus(slot: 0) == .presentInactive)
        try h.connect()
        #expect(try h.reader.iccStatus(slot: 0) == .presentActive)
    }
}

/// G6: without automatic voltage selection or activation, the driver powers up at 5 V,
/// then 3 V, then 1.8 V, as the reader supports them; a class B or C card answers at its own.
@Suite struct VoltageTests {
    @Test(arguments: [(2, ["5 V"]), (3, ["5 V", "3 V"])])
    func cardAnswersAtItsOwnVoltage(only: Int, failed: [String]) throws {
        let h = try Harness(profile: "cherry-st-short")   // bVoltageSupport 07, no automatic selection
        #expect(h.reader.voltageSequence == [.v5, .v3, .v1_8])
        #expect(try h.sim.setFaults(slot: 0, ["voltage=\(only)"]))
        try h.connect()
        #expect(h.log.all.filter { $0.contains("power-up at") }
                == failed.map { "slot 0: power-up at \($0) failed (card does not answer (ICC_MUTE))" })
    }

    @Test func readerThatChoosesIsLeftToIt() throws {
        let extended = try Harness(profile: "omnikey-3121-extended")
        #expect(extended.reader.descriptor.features.contains(.automaticVoltageSelection))
        #expect(extended.reader.voltageSequence == [.automatic])
        // A card of any class answers the reader's own choice.
        #expect(try extended.sim.setFaults(slot: 0, ["voltage=3"]))
        try extended.connect()
    }
}
