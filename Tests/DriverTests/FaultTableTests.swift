import Testing
@testable import SimulatorCore

/// The fault table is the one list of faults: every row parses, shows in the
/// summary, and a summary read back gives the same faults.
@Suite struct FaultTableTests {
    static let samples: [String: String] = ["ifs": "ifs=16", "pps": "pps=2", "late": "late=700", "mute": "mute", "stuck": "stuck"]

    @Test func everyRowRoundTripsThroughTheSummary() {
        for row in Faults.table where row.name != "clear" {
            let setting = Self.samples[row.name] ?? "\(row.name)=3"
            var faults = Faults()
            let applied = faults.apply(setting)
            #expect(applied, "\(setting)")
            #expect(faults != Faults(), "\(setting) changed nothing")
            #expect(faults.summary == setting)
            var again = Faults()
            for part in faults.summary.split(separator: " ") {
                let applied = again.apply(String(part))
                #expect(applied, "\(part)")
            }
            #expect(again == faults)
            let cleared = faults.apply("clear")
            #expect(cleared && faults == Faults() && faults.summary == "none")
        }
    }

    @Test func badSettingsAreRefusedAndChangeNothing() {
        var faults = Faults()
        for bad in ["nosuch", "parity=x", "parity=-1", "ifs", "ifs=255", "pps=3", "late", "late=0", "clear=1", "mute=yes", ""] {
            let applied = faults.apply(bad)
            #expect(!applied, "\(bad)")
        }
        #expect(faults == Faults())
    }

    @Test func oneReaderLieAtATimeAndZeroTurnsOff() {
        var faults = Faults()
        let first = faults.apply("garbage=2"), second = faults.apply("truncate=5")
        #expect(first && second && faults.summary == "truncate=5")
        let off = faults.apply("truncate=0")
        #expect(off && faults.readerLie == nil && faults.summary == "none")
        let bare = faults.apply("parity")
        #expect(bare && faults.summary == "parity=1")
    }
}
