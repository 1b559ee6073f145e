import Foundation
import Testing
@testable import CCIDDriver
@testable import SimulatorCore

/// `--record` and `--card replay:FILE` through the driver: a session recorded
/// at one exchange level answers the same at another, and the first command
/// that differs from the recording is answered 6F 00 with a log line.
struct RecordReplayTests {
    static let script: [[UInt8]] = [
        [0x00, 0xA4, 0x04, 0x00, 0x06] + ComplianceTestCard.appletAID,
        [0x80, 0x34, 0x00, 0x08, 0x08],
        [0x80, 0x32, 0x00, 0x00, 0x03, 0x00, 0x01, 0x02],
        [0x80, 0x00, 0x04, 0x42, 0x00, 0x01, 0x00],
        [0x80, 0x10, 0x00, 0x00],
    ]

    static func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sccid-\(getpid())-\(name).jsonl").path
    }

    @Test func aRecordedSessionReplaysAtAnotherExchangeLevel() throws {
        let file = Self.path("replay")
        defer { try? FileManager.default.removeItem(atPath: file) }
        var recorded: [[UInt8]] = []
        do {
            let recorder = try Recorder(path: file)
            let sim = SimulatedReader(name: "sim0", profile: try #require(ReaderProfile.named("gemalto-ct30-tpdu")),
                                      serialNumber: "T1", timing: .quick, recorder: recorder)
            let h = try Harness(sim: sim, cards: ["compliance-crypto"])
            #expect(try h.reader.powerOn(slot: 0).count == 17)
            _ = try h.reader.selectProtocol(slot: 0, requested: .any)
            for apdu in Self.script { recorded.append(try h.reader.transmit(slot: 0, apdu: apdu)) }
            try h.reader.powerOff(slot: 0)
        }
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        let events = try lines.map { try JSONDecoder().decode(RecordEntry.self, from: Data($0.utf8)).event }
        #expect(events == [.insert, .powerOn] + Array(repeating: .apdu, count: Self.script.count) + [.powerOff])
        #expect(recorded[1] == [0, 1, 2, 3, 4, 5, 6, 7, 0x90, 0x00])

        let log = Lines()
        let replay = try ReplayCard(path: file, log: { log.append($0) })
        let h = try Harness(readerProfile: try #require(ReaderProfile.named("omnikey-3121-extended")), cards: [nil])
        try h.sim.insert(replay, slot: 0)
        #expect(try h.reader.powerOn(slot: 0) == ComplianceTestCard.Variant.crypto.atr)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        for (apdu, answer) in zip(Self.script, recorded) {
            #expect(try h.reader.transmit(slot: 0, apdu: apdu) == answer)
        }
        #expect(log.all.isEmpty)
        // Past the end of the recording.
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x30, 0x00, 0x00]) == [0x6F, 0x00])
        #expect(log.contains("exchange 6 80 30 00 00 is past the recording's 5"))
    }

    @Test func theFirstCommandThatDiffersIsAnsweredWithAnError() throws {
        let file = Self.path("differs")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let lines = [
            #"{"card":"x","event":"insert","reader":"sim3","slot":1,"time":0}"#,
            #"{"atr":"3B00","event":"power-on","reader":"sim3","slot":1,"time":0.1}"#,
            #"{"command":"00A4040000","event":"apdu","reader":"sim3","response":"9000","slot":1,"time":0.2}"#,
            #"{"command":"0084000008","event":"apdu","reader":"sim3","response":"01020304050607089000","slot":1,"time":0.3}"#,
            #"{"command":"0084000008","event":"apdu","reader":"sim0","response":"6D00","slot":0,"time":0.4}"#,
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let log = Lines()
        let card = try ReplayCard(path: file, log: { log.append($0) })
        #expect(card.atr == [0x3B, 0x00])
        #expect(card.process([0x00, 0xA4, 0x04, 0x00, 0x00], protocolType: 1) == CardAnswer([0x90, 0x00]))
        #expect(card.process([0x00, 0x84, 0x00, 0x00, 0x04], protocolType: 1) == CardAnswer([0x6F, 0x00]))
        #expect(log.contains("exchange 2 differs: recorded 00 84 00 00 08, received 00 84 00 00 04"))
        // Once off the recording, it stays off.
        #expect(card.process([0x00, 0x84, 0x00, 0x00, 0x08], protocolType: 1) == CardAnswer([0x6F, 0x00]))
    }

    @Test(arguments: ["{not json", #"{"event":"apdu","reader":"sim0","slot":0,"time":0}"#, ""])
    func unusableRecordingsAreRefused(content: String) throws {
        let file = Self.path("bad")
        defer { try? FileManager.default.removeItem(atPath: file) }
        try content.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(throws: SimulatorError.self) { try ReplayCard(path: file, log: { _ in }) }
    }
}
