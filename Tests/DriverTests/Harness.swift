import Testing
@testable import CCID
@testable import CCIDDriver
import ReaderQuirks
@testable import SimulatorCore
import ThreadSupport

/// A driver `Reader` wired to a simulated reader with no socket in between.
/// The simulated reader reports lost blocks and spaces fault time extensions
/// without waiting (`ReaderTiming.quick`); cards stay busy as long as they say.
struct Harness {
    let sim: SimulatedReader
    let transport: InProcessTransport
    let reader: Reader
    let log: Lines

    init(profile: String = "omnikey-3121-extended", cards: [String?] = ["compliance"],
         timeouts: ExchangeTimeouts = ExchangeTimeouts()) throws {
        try self.init(readerProfile: try #require(ReaderProfile.named(profile)), cards: cards, timeouts: timeouts)
    }

    /// `quirksOff`: the quirk table applies to the device, but for these ids (nil: no quirks at all).
    init(readerProfile: ReaderProfile, cards: [String?] = ["compliance"], timeouts: ExchangeTimeouts = ExchangeTimeouts(),
         quirksOff: Set<String>? = nil) throws {
        try self.init(sim: SimulatedReader(name: "sim0", profile: readerProfile, serialNumber: "T1", timing: .quick),
                      cards: cards, timeouts: timeouts, quirksOff: quirksOff)
    }

    /// Around a simulated reader made by the test (with a recorder, say).
    init(sim: SimulatedReader, cards: [String?], timeouts: ExchangeTimeouts = ExchangeTimeouts(), quirksOff: Set<String>? = nil) throws {
        self.sim = sim
        for (slot, card) in cards.enumerated() {
            if let card { try sim.insert(try #require(CardSpec(card).flatMap(\.builtInCard)), slot: slot) }
        }
        let transport = try InProcessTransport(reader: sim)
        self.transport = transport
        let log = Lines()
        self.log = log
        let quirks = quirksOff.map { AppliedQuirks(for: transport.identity, off: $0) } ?? .none
        reader = Reader(transport: transport, timeouts: timeouts, quirks: quirks, log: { log.append($0) })
    }

    /// Powers up and selects `protocolType` (or any), then selects the test applet.
    /// Powers the card up, selects a protocol and the test applet; returns the ATR.
    @discardableResult
    func connect(slot: Int = 0, protocolType: UInt8? = nil) throws -> [UInt8] {
        let atr = try reader.powerOn(slot: slot)
        let allowed = protocolType.map { ProtocolSet(only: $0) } ?? .any
        let chosen = try reader.selectProtocol(slot: slot, requested: allowed)
        #expect(allowed.contains(chosen))
        #expect(try reader.transmit(slot: slot, apdu: [0x00, 0xA4, 0x04, 0x00, 0x06] + ComplianceTestCard.appletAID) == [0x90, 0x00])
        return atr
    }

    static func sequence(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0) } }

    /// The test card's cases 1-4 at every short length. Under T=0 a case 4
    /// answers 61xx and the data comes by GET RESPONSE, as PC/SC applications
    /// expect, except through an APDU-level reader, which sends GET RESPONSE
    /// itself (ISO/IEC 7816-3 §12.2) and returns the data.
    func checkCasesAtEveryLength(protocolType: UInt8) throws {
        let ok: [UInt8] = [0x90, 0x00]
        let apduLevel = [.shortAPDU, .extendedAPDU].contains(sim.descriptor.exchangeLevel)
        #expect(try reader.transmit(slot: 0, apdu: [0x80, 0x30, 0, 0]) == ok)
        for n in 1...256 {
            let le = UInt8(truncatingIfNeeded: n)
            #expect(try reader.transmit(slot: 0, apdu: [0x80, 0x34, UInt8(n >> 8), UInt8(n & 0xFF), le]) == Self.sequence(n) + ok, "case 2, \(n)")
            guard n <= 255 else { continue }
            #expect(try reader.transmit(slot: 0, apdu: [0x80, 0x32, 0, 0, le] + Self.sequence(n)) == ok, "case 3, \(n)")
            let answer = try reader.transmit(slot: 0, apdu: [0x80, 0x36, 0, le, le] + Self.sequence(n) + [0x00])
            if protocolType == 1 || apduLevel {
                #expect(answer == Self.sequence(n) + ok, "case 4, \(n)")
            } else {
                #expect(answer == [0x61, le], "case 4 (T=0), \(n)")
                #expect(try reader.transmit(slot: 0, apdu: [0x00, 0xC0, 0, 0, le]) == Self.sequence(n) + ok)
            }
        }
    }
}

final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ s: String) { lines.withLock { $0.append(s) } }
    var all: [String] { lines.withLock { $0 } }
    /// Whether some line contains `text`.
    func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }
}
