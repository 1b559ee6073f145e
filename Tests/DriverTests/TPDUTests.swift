import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ISO7816
import ThreadSupport

/// TPDU level: the driver runs T=1 (blocks, chaining, recovery) and T=0
/// (TPDUs, ENVELOPE/GET RESPONSE) against the simulator's card engines.
struct TPDUTests {
    static let ok: [UInt8] = [0x90, 0x00]

    @Test(arguments: [("gemalto-ct30-tpdu", UInt8(1)), ("gemalto-ct30-tpdu", UInt8(0)), ("acr38u-tpdu", UInt8(1)), ("acr38u-tpdu", UInt8(0)),
                      ("o2micro-oz776-char", UInt8(1)), ("o2micro-oz776-char", UInt8(0))])
    func shortCasesAtEveryLength(profile: String, protocolType: UInt8) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: protocolType)
        try h.checkCasesAtEveryLength(protocolType: protocolType)
        // 6Cxx reaches the application at T=0: the card wants another Le.
        _ = try h.reader.transmit(slot: 0, apdu: [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34])
        if protocolType == 0 {
            #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x40, 0, 0, 0x02]) == [0x6C, 0x09])
        }
    }

    @Test(arguments: ["gemalto-ct30-tpdu/1", "gemalto-ct30-tpdu/0", "o2micro-oz776-char/1", "o2micro-oz776-char/0"],
          [1, 255, 256, 257, 4000, 65535])
    func extendedAPDUs(setup: String, length: Int) throws {
        let parts = setup.split(separator: "/")
        let protocolType = UInt8(parts[1])!
        let h = try Harness(profile: String(parts[0]))
        try h.connect(protocolType: protocolType)
        let hi = UInt8(length >> 8), lo = UInt8(length & 0xFF)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x5A, 0x00, hi, lo]) == [UInt8](repeating: 0x5A, count: length) + Self.ok)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x12, 0x01, 0x80, 0x00, hi, lo] + Harness.sequence(length)) == Self.ok)
        // Case 4E: data in, data out.
        let out = try h.reader.transmit(slot: 0, apdu: [0x80, 0x36, hi, lo, 0x00, hi, lo] + Harness.sequence(length) + [0x00, 0x00])
        #expect(out == Harness.sequence(length) + Self.ok)
    }

    @Test(arguments: ["gemalto-ct30-tpdu", "o2micro-oz776-char"], [UInt8(1), UInt8(0)])
    func timeRequestOfTheTestCard(profile: String, protocolType: UInt8) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: protocolType)
        let start = Deadline.now()
        // 12 × 50 ms = 0.6 s busy: three of the card's requests for time (every 200 ms).
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x38, 0x00, 12]) == Self.ok)
        #expect(Deadline.now().nanoseconds - start.nanoseconds >= 550_000_000)
    }

    /// Recoverable faults, one class at a time and all together: every answer still right.
    @Test(arguments: [["parity=2"], ["edc=2"], ["lost=3"], ["repeat=2"], ["ifs=16"], ["wtx=20"], ["te=25"], ["wrongseq=2"],
                      ["parity=5", "edc=7", "lost=11", "repeat=13", "ifs=40", "wtx=3", "te=2", "wrongseq=3"]],
          ["gemalto-ct30-tpdu", "o2micro-oz776-char"])
    func t1RecoversFrom(faults: [String], profile: String) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: 1)
        #expect(try h.sim.setFaults(slot: 0, faults))
        // 252 and 256-…: responses (data + SW) ending exactly at IFSD 254; case 3 commands of exactly IFSC 128 bytes below.
        for n in [1, 31, 32, 33, 128, 252, 254, 255, 256] {
            let le = UInt8(truncatingIfNeeded: n)
            #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, UInt8(n >> 8), UInt8(n & 0xFF), le]) == Harness.sequence(n) + Self.ok, "\(faults) case 2, \(n)")
        }
        for lc in [123, 251] {   // 5 + Lc = 128 and 256 bytes: chains ending exactly at IFSC
            #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x32, 0, 0, UInt8(lc)] + Harness.sequence(lc)) == Self.ok)
        }
        let big = 3000
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x12, 0x01, 0x80, 0x00, UInt8(big >> 8), UInt8(big & 0xFF)] + Harness.sequence(big)) == Self.ok)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x77, 0x00, UInt8(big >> 8), UInt8(big & 0xFF)]) == [UInt8](repeating: 0x77, count: big) + Self.ok)
    }

    @Test func t0SurvivesTimeExtensionStormsAndStaleSequenceNumbers() throws {
        let h = try Harness(profile: "acr38u-tpdu")
        try h.connect(protocolType: 0)
        #expect(try h.sim.setFaults(slot: 0, ["te=40", "wrongseq=2"]))
        for n in [1, 100, 256] {
            #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, UInt8(n >> 8), UInt8(n & 0xFF), UInt8(truncatingIfNeeded: n)]) == Harness.sequence(n) + Self.ok)
        }
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x01, 0x00, 0x04, 0x00]) == [UInt8](repeating: 1, count: 1024) + Self.ok)
    }

    @Test(arguments: ["gemalto-ct30-tpdu", "o2micro-oz776-char"])
    func muteCardEndsInACleanErrorAndTheReaderRecovers(profile: String) throws {
        let h = try Harness(profile: profile)
        try h.connect(protocolType: 1)
        #expect(try h.sim.setFaults(slot: 0, ["mute"]))
        let start = Deadline.now()
        #expect(throws: DriverError.cardProtocol(T1Error.cardDead.description)) {
            try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 4, 4])
        }
        // 16 blocks at the simulator's 100 ms ICC_MUTE: bounded, and well inside the cap.
        #expect(Deadline.now().nanoseconds - start.nanoseconds < 5_000_000_000)
        #expect(try h.sim.setFaults(slot: 0, ["clear"]))
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 4, 4]) == [0, 1, 2, 3] + Self.ok)
    }

    @Test(arguments: [UInt8(1), UInt8(0)])
    func stuckReaderCostsOneCappedDeadline(protocolType: UInt8) throws {
        let h = try Harness(profile: "gemalto-ct30-tpdu", timeouts: ExchangeTimeouts(maximum: .milliseconds(1500), transportMargin: .milliseconds(200)))
        try h.connect(protocolType: protocolType)
        #expect(try h.sim.setFaults(slot: 0, ["stuck"]))
        let start = Deadline.now()
        #expect(throws: DriverError.timeout) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 4, 4]) }
        let elapsed = Deadline.now().nanoseconds - start.nanoseconds
        // One deadline: the card's waiting time (T=0: WWT 0.74 s at 4.8 MHz + 0.2 s margin) or the 1.5 s cap (T=1 BWT is 5.7 s), plus the abort.
        #expect(elapsed >= 900_000_000 && elapsed < 2_000_000_000, "\(elapsed) ns")
        #expect(h.log.all.contains { $0.contains("aborting") })
        #expect(try h.sim.setFaults(slot: 0, ["clear"]))
        _ = try h.reader.powerOn(slot: 0)
        _ = try h.reader.selectProtocol(slot: 0, requested: ProtocolSet(only: protocolType))
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x00, 0x04, 0x42, 0x02]) == [0x42, 0x42] + Self.ok)
    }

    @Test func wtxStormIsBoundedByTheCap() throws {
        let h = try Harness(profile: "gemalto-ct30-tpdu", timeouts: ExchangeTimeouts(maximum: .seconds(2), transportMargin: .milliseconds(200)))
        try h.connect(protocolType: 1)
        #expect(try h.sim.setFaults(slot: 0, ["wtx=1000000"]))
        let start = Deadline.now()
        #expect(throws: DriverError.timeout) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 4, 4]) }
        #expect(Deadline.now().nanoseconds - start.nanoseconds < 3_000_000_000)
    }
}

/// Readers whose messages are smaller than a T=1 block or a T=0 TPDU: the
/// driver splits characters (character level) or keeps blocks small enough
/// (TPDU level). Found on the Winbond reader (138-byte messages) over USB.
struct SmallMessageTests {
    static func profile(level: ExchangeLevel, maxMessage: UInt32) throws -> ReaderProfile {
        var p = try #require(ReaderProfile.named(level == .character ? "o2micro-oz776-char" : "gemalto-ct30-tpdu"))
        p.descriptor.maxCCIDMessageLength = maxMessage
        return p
    }

    @Test(arguments: [(ExchangeLevel.character, UInt8(1)), (.character, UInt8(0)), (.tpdu, UInt8(1))])
    func casesAtEveryLengthWith138ByteMessages(level: ExchangeLevel, protocolType: UInt8) throws {
        let h = try Harness(readerProfile: try Self.profile(level: level, maxMessage: 138))
        try h.connect(protocolType: protocolType)
        try h.checkCasesAtEveryLength(protocolType: protocolType)
    }
}
