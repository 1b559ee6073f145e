import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ThreadSupport

/// A driver `Reader` wired to a simulated reader with no socket in between.
struct Harness {
    let sim: SimulatedReader
    let transport: InProcessTransport
    let reader: Reader
    let log: Lines

    init(profile: String = "omnikey-3121-extended", cards: [String?] = ["compliance"],
         timeouts: ExchangeTimeouts = ExchangeTimeouts()) throws {
        try self.init(readerProfile: try #require(ReaderProfile.named(profile)), cards: cards, timeouts: timeouts)
    }

    init(readerProfile: ReaderProfile, cards: [String?] = ["compliance"], timeouts: ExchangeTimeouts = ExchangeTimeouts()) throws {
        sim = SimulatedReader(name: "sim0", profile: readerProfile, serialNumber: "T1")
        for (slot, card) in cards.enumerated() {
            if let card { try sim.insert(try #require(CardCatalog.make(card)), slot: slot) }
        }
        transport = try InProcessTransport(reader: sim)
        let log = Lines()
        self.log = log
        reader = Reader(transport: transport, timeouts: timeouts, log: { log.append($0) })
    }

    /// Powers up and selects `protocolType` (or any), then selects the test applet.
    func connect(slot: Int = 0, protocolType: UInt8? = nil) throws {
        _ = try reader.powerOn(slot: slot)
        let mask: UInt32 = protocolType.map { 1 << UInt32($0) } ?? 3
        _ = try reader.selectProtocol(slot: slot, requested: mask)
        #expect(try reader.transmit(slot: slot, apdu: [0x00, 0xA4, 0x04, 0x00, 0x06] + ComplianceTestCard.appletAID) == [0x90, 0x00])
    }

    static func sequence(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0) } }
}

final class Lines: @unchecked Sendable {
    private let lock = Lock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}
