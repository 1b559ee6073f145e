import Testing
import Relay
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ThreadSupport

/// A card process on the other end of a vpcd socket, scripted: it answers
/// get ATR with `atr` and APDUs through `answer`, and records every message.
final class FakeVPCDCard: Sendable {
    enum Behaviour: Sendable { case normal, silentOnAPDU, longerThanAnnounced, chattyAfterATR }
    let socket: StreamSocket
    let received = Mutex<[[UInt8]]>([])
    private let finished = Wakeup()

    init(port: UInt16, atr: [UInt8], behaviour: Behaviour = .normal,
         answer: @escaping @Sendable ([UInt8]) -> [UInt8]) throws {
        socket = try StreamSocket.connectTCP(host: "127.0.0.1", port: port)
        let socket = self.socket, received = self.received, finished = self.finished
        #expect(startThread {
            defer { finished.signal() }
            while let header = socket.readExactly(2, until: .after(.seconds(20))),
                  let body = socket.readExactly(Int(header[0]) << 8 | Int(header[1]), until: .after(.seconds(5))) {
                received.withLock { $0.append(body) }
                let reply: [UInt8]
                switch (body, behaviour) {
                case ([4], .chattyAfterATR): reply = [0, UInt8(atr.count)] + atr + [0x00, 0x02, 0x90]
                case ([4], _): reply = [0, UInt8(atr.count)] + atr
                case ([0], _), ([1], _), ([2], _): continue
                case (_, .silentOnAPDU): continue
                case (_, .longerThanAnnounced):
                    let r = answer(body)
                    reply = [0, UInt8(r.count)] + r + [0xEE]
                default:
                    let r = answer(body)
                    reply = [UInt8(r.count >> 8), UInt8(r.count & 0xFF)] + r
                }
                do throws(SocketError) { try socket.writeAll(reply) } catch { return }
            }
        })
    }

    /// Hangs up, as a card process that exits.
    func hangUp() {
        socket.shutdown()
        _ = finished.wait(until: .after(.seconds(5)))
        socket.close()
    }
}

/// ccid-sim's vpcd card socket through the driver: insertion on connect,
/// power and APDUs on the vpcd protocol, removal on hang-up, and a card
/// process that misbehaves costing one deadline and a removal, never the reader.
struct VPCDCardTests {
    static let atr: [UInt8] = [0x3B, 0x95, 0x13, 0x81, 0x01, 0x80, 0x73, 0xFF, 0x01, 0x00, 0x0B]

    /// A reader of `profile`, its slot 0 on a vpcd socket on a port the kernel picks.
    static func setUp(_ profile: String, timeout: Duration = .seconds(5)) throws -> (Harness, VPCDCardSocket) {
        let h = try Harness(profile: profile, cards: [nil])
        let sim = h.sim
        let socket = try VPCDCardSocket(.listen(port: 0), answerTimeout: timeout, log: { h.log.append($0) },
                                        insert: { try? sim.insert($0, slot: 0) },
                                        remove: { sim.remove(slot: 0, ifStill: $0) })
        return (h, socket)
    }

    static func waitFor(_ what: String, _ condition: () -> Bool) {
        let deadline = Deadline.after(.seconds(5))
        while !condition(), !deadline.hasPassed { _ = Wakeup().wait(until: .after(.milliseconds(10))) }
        #expect(condition(), "timed out waiting for \(what)")
    }

    /// The card echoes the APDU's data with 9000 (and 6D00 to an APDU without data).
    static func echo(_ apdu: [UInt8]) -> [UInt8] { apdu.count > 5 ? Array(apdu[5...]) + [0x90, 0x00] : [0x6D, 0x00] }

    @Test(arguments: ["omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "o2micro-oz776-char"])
    func aCardProcessIsInsertedPoweredAndRemoved(profile: String) throws {
        let (h, socket) = try Self.setUp(profile)
        defer { socket.stop() }
        #expect(h.sim.cardName(slot: 0) == nil)
        let card = try FakeVPCDCard(port: socket.port, atr: Self.atr, answer: Self.echo)
        Self.waitFor("insertion") { h.sim.cardName(slot: 0) == "vpcd:\(socket.port)" }
        #expect(try h.reader.powerOn(slot: 0) == Self.atr)
        #expect(try h.reader.selectProtocol(slot: 0, requested: .any) == 1)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x00, 0xD6, 0x00, 0x00, 0x03, 0x0A, 0x0B, 0x0C]) == [0x0A, 0x0B, 0x0C, 0x90, 0x00])
        let long = (0..<250).map { UInt8(truncatingIfNeeded: $0) }
        #expect(try h.reader.transmit(slot: 0, apdu: [0x00, 0xD6, 0x00, 0x00, 250] + long) == long + [0x90, 0x00])
        try h.reader.powerOff(slot: 0)
        // Power off has no answer: the card's thread may still be reading it.
        Self.waitFor("power off to arrive") { card.received.withLock { $0.count } == 6 }
        // get ATR on connecting; power on and get ATR; the APDUs as sent; power off.
        #expect(card.received.withLock { $0 } == [[4], [1], [4], [0x00, 0xD6, 0x00, 0x00, 0x03, 0x0A, 0x0B, 0x0C],
                                                   [0x00, 0xD6, 0x00, 0x00, 250] + long, [0]])
        card.hangUp()
        Self.waitFor("removal") { h.sim.cardName(slot: 0) == nil }
        #expect(throws: DriverError.noCard) { try h.reader.powerOn(slot: 0) }
    }

    @Test func aSilentCardCostsOneDeadlineThenIsRemovedAndTheNextCardWorks() throws {
        let (h, socket) = try Self.setUp("omnikey-3121-extended", timeout: .milliseconds(300))
        defer { socket.stop() }
        let silent = try FakeVPCDCard(port: socket.port, atr: Self.atr, behaviour: .silentOnAPDU, answer: Self.echo)
        Self.waitFor("insertion") { h.sim.cardName(slot: 0) != nil }
        #expect(try h.reader.powerOn(slot: 0) == Self.atr)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        #expect(throws: DriverError.self) { try h.reader.transmit(slot: 0, apdu: [0x00, 0xD6, 0x00, 0x00, 0x01, 0x01]) }
        Self.waitFor("removal") { h.sim.cardName(slot: 0) == nil }
        #expect(h.log.contains("did not answer within"))
        silent.hangUp()
        let good = try FakeVPCDCard(port: socket.port, atr: Self.atr, answer: Self.echo)
        defer { good.hangUp() }
        Self.waitFor("the next card") { h.sim.cardName(slot: 0) != nil }
        #expect(try h.reader.powerOn(slot: 0) == Self.atr)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x00, 0xD6, 0x00, 0x00, 0x01, 0x01]) == [0x01, 0x90, 0x00])
    }

    @Test func aFrameLongerThanAnnouncedRemovesTheCard() throws {
        let (h, socket) = try Self.setUp("omnikey-3121-extended")
        defer { socket.stop() }
        let card = try FakeVPCDCard(port: socket.port, atr: Self.atr, behaviour: .longerThanAnnounced, answer: Self.echo)
        defer { card.hangUp() }
        Self.waitFor("insertion") { h.sim.cardName(slot: 0) != nil }
        #expect(try h.reader.powerOn(slot: 0) == Self.atr)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        // The R-APDU's message carries one byte more than its length says.
        #expect(throws: DriverError.self) { try h.reader.transmit(slot: 0, apdu: [0x00, 0xD6, 0x00, 0x00, 0x01, 0x01]) }
        Self.waitFor("removal") { h.sim.cardName(slot: 0) == nil }
        #expect(h.log.contains("sent more than the"))
    }

    @Test func unsolicitedBytesRemoveTheCard() throws {
        let (h, socket) = try Self.setUp("omnikey-3121-extended")
        defer { socket.stop() }
        let card = try FakeVPCDCard(port: socket.port, atr: Self.atr, behaviour: .chattyAfterATR, answer: Self.echo)
        defer { card.hangUp() }
        // The surplus after the ATR arrives with it or just after: either check catches it.
        let deadline = Deadline.after(.seconds(5))
        while h.sim.cardName(slot: 0) == nil, !h.log.contains("vpcd:"), !deadline.hasPassed {
            _ = Wakeup().wait(until: .after(.milliseconds(10)))
        }
        if h.sim.cardName(slot: 0) != nil { #expect(throws: DriverError.self) { try h.reader.powerOn(slot: 0) } }
        Self.waitFor("removal") { h.sim.cardName(slot: 0) == nil && h.log.contains("link closed") }
    }

    @Test func anATRLongerThan33BytesIsTurnedAway() throws {
        let (h, socket) = try Self.setUp("omnikey-3121-extended")
        defer { socket.stop() }
        let card = try FakeVPCDCard(port: socket.port, atr: [0x3B] + [UInt8](repeating: 0, count: 33), answer: Self.echo)
        defer { card.hangUp() }
        Self.waitFor("refusal") { h.log.contains("is not one") }
        #expect(h.sim.cardName(slot: 0) == nil)
    }

    @Test func aCommandOverTheFrameLimitIsAnswered6700() throws {
        let card = VPCDCard(name: "vpcd:0", socket: StreamSocket(fd: -1), answerTimeout: .seconds(1), log: { _ in })
        let apdu: [UInt8] = [0x00, 0xD6, 0x00, 0x00, 0x00, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 65535)
        #expect(card.process(apdu, protocolType: 1) == CardAnswer([0x67, 0x00]))
    }

    @Test func cardSpecsParseAndPrint() {
        #expect(CardSpec("vpcd:35963") == .vpcd(.listen(port: 35963)))
        #expect(CardSpec("vpcd-connect:localhost:35964") == .vpcd(.connect(host: "localhost", port: 35964)))
        #expect(CardSpec("compliance") == .builtIn(.direct))
        for bad in ["vpcd", "vpcd:", "vpcd:70000", "vpcd-connect::1", "vpcd-connect:h:0", "vpcd:1:2", "nothing"] {
            #expect(CardSpec(bad) == nil, "\(bad)")
        }
        for text in ["vpcd:35963", "vpcd-connect:localhost:35964", "compliance-inverse"] {
            #expect(CardSpec(text)?.description == text)
        }
    }
}

/// A card that answers every command with `length` bytes and 9000.
final class LongAnswerCard: SimulatedCard, Sendable {
    let length: Int
    init(length: Int) { self.length = length }
    var name: String { "long-answer" }
    var atr: [UInt8] { [0x3B, 0x80, 0x80, 0x01, 0x01] }
    func reset() {}
    func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        CardAnswer([UInt8](repeating: 0xAB, count: length) + [0x90, 0x00])
    }
}

struct OversizedAnswerTests {
    /// A short-APDU reader whose card answers more than its buffer holds
    /// reports XFR_OVERRUN; the driver fails that APDU and the reader stays usable.
    @Test func aShortAPDUReaderReportsOverrun() throws {
        let h = try Harness(profile: "cherry-st-short", cards: [nil])
        let long = LongAnswerCard(length: 300)
        try h.sim.insert(long, slot: 0)
        _ = try h.reader.powerOn(slot: 0)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        #expect(throws: DriverError.commandFailed(.transferOverrun)) { try h.reader.transmit(slot: 0, apdu: [0x00, 0xB0, 0x00, 0x00, 0x00]) }
        try h.sim.insert(LongAnswerCard(length: 200), slot: 0)
        _ = try h.reader.powerOn(slot: 0)
        _ = try h.reader.selectProtocol(slot: 0, requested: .any)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x00, 0xB0, 0x00, 0x00, 0xC8]) == [UInt8](repeating: 0xAB, count: 200) + [0x90, 0x00])
    }
}
