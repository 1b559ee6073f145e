import Testing
@testable import CCIDDriver
@testable import SimulatorCore

/// G24: the last user's close powers the cards off, failures ignored; a plain close sends nothing.
@Suite struct CloseTests {
    @Test func lastCloseSendsOnePowerOffPerPoweredSlot() throws {
        let h = try Harness(profile: "acr1281u-3slot-extended", cards: ["compliance", "compliance", nil])
        _ = try h.reader.powerOn(slot: 0)
        _ = try h.reader.powerOn(slot: 1)
        _ = try h.reader.powerOff(slot: 1)
        let before = h.sim.messageCounts
        h.reader.close(poweringOff: true)
        // Slot 0 only: slot 1 is already off, slot 2 has no card.
        #expect(h.sim.messageCounts.bulkOut == before.bulkOut + 1)
        #expect(h.sim.messageCounts.bulkIn == before.bulkIn + 1)
    }

    @Test func plainCloseSendsNothingAndAGoneDeviceIsLeftAtOnce() throws {
        let h = try Harness()
        try h.connect()
        let before = h.sim.messageCounts
        h.reader.close()
        #expect(h.sim.messageCounts == before)
        let gone = try Harness()
        try gone.connect()
        gone.transport.close()
        gone.reader.close(poweringOff: true)
        // The power-off fails at once, and says why.
        #expect(gone.log.all.filter { $0.contains("at close") } == ["slot 0: power-off at close: device gone"])
    }
}
