import Testing
@testable import PCSCSupport
import TestSupport
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore
import ThreadSupport
import Foundation

/// Time extensions, deadlines and abort, hostile replies, card events.
struct RobustnessTests {
    @Test func timeExtensionsMoveTheDeadline() throws {
        let h = try Harness(timeouts: ExchangeTimeouts(transportMargin: .milliseconds(100)))
        try h.connect(protocolType: 0)
        // 30 × 50 ms = 1.5 s busy: longer than the first deadline (WWT ≈ 0.9 s + 0.1 s margin).
        let start = Deadline.now()
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x38, 0x00, 30]) == [0x90, 0x00])
        #expect(Deadline.now().nanoseconds - start.nanoseconds >= 1_450_000_000)
    }

    @Test func timeExtensionsStopAtTheCap() throws {
        let h = try Harness(timeouts: ExchangeTimeouts(maximum: .milliseconds(1500)))
        try h.connect(protocolType: 0)
        let start = Deadline.now()
        #expect(throws: DriverError.timeout) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x38, 0x00, 200]) }
        let elapsed = Deadline.now().nanoseconds - start.nanoseconds
        #expect(elapsed < 3_000_000_000, "one capped deadline plus the abort, not 10 s")
        #expect(h.log.all.contains { $0.contains("aborting") })
    }

    @Test func staleAndForeignRepliesAreDropped() throws {
        let h = try Harness()
        try h.connect()
        // Before every reply: a copy with another sequence number and one for another slot.
        h.transport.tamper = { reply in
            var stale = reply, foreign = reply
            stale[6] &+= 100
            foreign[5] = 7
            return [stale, foreign, reply]
        }
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2]) == [0, 1, 0x90, 0x00])
        #expect(h.log.all.contains { $0.contains("stale reply") })
    }

    @Test func lostReplyCostsOneDeadlineAndTheReaderRecovers() throws {
        let h = try Harness(timeouts: ExchangeTimeouts(maximum: .seconds(1), transportMargin: .milliseconds(200)))
        try h.connect()
        h.transport.tamper = { _ in [] }
        #expect(throws: DriverError.timeout) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2]) }
        h.transport.tamper = nil
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2]) == [0, 1, 0x90, 0x00])
    }

    /// Replies garbled at random (seeded): each APDU gets its exact response
    /// or a clean error of the kinds a lying reader earns, and the reader
    /// works once the replies are right again.
    @Test func garbageRepliesGetExactAnswersOrCleanErrors() throws {
        // Each garbled reply costs one (short) deadline: the cap is what is under test.
        let h = try Harness(timeouts: ExchangeTimeouts(maximum: .milliseconds(100), transportMargin: .milliseconds(30)))
        let atr = try h.connect()
        var rng = TestRandom(seed: 0x6A12)
        var failures = 0
        for _ in 0..<60 {
            let kind = Int.random(in: 0..<5, using: &rng)
            let garbage = (0..<Int.random(in: 0..<20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let cut = Int.random(in: 0..<1_000, using: &rng)
            h.transport.tamper = { reply in
                var r = reply
                switch kind {
                case 0: r = garbage
                case 1: r[1] = 0xFF                           // length lie
                case 2: r[0] = 0x81                           // wrong message type
                case 3: r = Array(r.prefix(cut % max(r.count, 1)))
                default: r[7] = 0x40                          // command failed
                }
                return [r]
            }
            do throws(DriverError) {
                let response = try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2])
                #expect(response == [0, 1, 0x90, 0x00])
            } catch {
                failures += 1
                switch error {
                case .timeout, .protocolViolation, .commandFailed: break
                default: Issue.record("not an error a lying reader earns: \(error)")
                }
            }
        }
        #expect(failures > 30, "only \(failures) of 60 garbled replies failed")
        h.transport.tamper = nil
        // A reset (the applet selected again) and the reader answers right.
        #expect(try h.connect() == atr)
        #expect(try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2]) == [0, 1, 0x90, 0x00])
    }

    @Test func chainingLiesAreProtocolErrors() throws {
        let h = try Harness(profile: "omnikey-3121-extended")
        try h.connect(protocolType: 1)
        // The reader claims more response pieces follow, forever.
        h.transport.tamper = { reply in
            var r = reply
            if r[0] == 0x80 { r[9] = 0x01 }
            return [r]
        }
        #expect(throws: DriverError.self) { try h.reader.transmit(slot: 0, apdu: [0x80, 0x34, 0, 2, 2]) }
    }

    @Test func cardEventsReachTheSlotsWaiter() throws {
        let h = try Harness(profile: "acr1281u-3slot-extended", cards: [nil, nil, nil])
        let results = Lines()
        let reader = h.reader
        _ = startThread {
            results.append("\(reader.waitForCardEvent(slot: 2, timeout: .seconds(5)))")
        }
        usleep(100_000)
        try h.sim.insert(ComplianceTestCard(), slot: 0)    // another slot: does not wake slot 2
        usleep(100_000)
        #expect(results.all.isEmpty)
        try h.sim.insert(ComplianceTestCard(), slot: 2)
        let limit = Deadline.after(.seconds(5))
        while results.all.isEmpty && !limit.hasPassed { usleep(10_000) }
        #expect(results.all == ["changed"])
        #expect(h.reader.waitForCardEvent(slot: 0, timeout: .milliseconds(50)) == .changed)
        #expect(h.reader.waitForCardEvent(slot: 0, timeout: .milliseconds(50)) == .timeout)
        // pcscd may stop polling before the thread waits: the next wait returns at once.
        h.reader.stopWaitingForCardEvent(slot: 1)
        #expect(h.reader.waitForCardEvent(slot: 1, timeout: .seconds(5)) == .stopped)
        h.reader.close()
        #expect(h.reader.waitForCardEvent(slot: 1, timeout: .seconds(5)) != .timeout)
    }

    /// A vanished device holds pcscd's polling call until pcscd stops it (its
    /// hotplug removes the reader), and reports itself gone when the call's
    /// time or a short grace runs out.
    @Test func aGoneDeviceWaitsForTheStopThenSaysGone() throws {
        let h = try Harness(profile: "omnikey-3121-extended")
        h.transport.close()
        let reader = h.reader
        let results = Lines()
        _ = startThread { results.append("\(reader.waitForCardEvent(slot: 0, timeout: .seconds(30)))") }
        usleep(100_000)
        #expect(results.all.isEmpty)
        reader.stopWaitingForCardEvent(slot: 0)
        let limit = Deadline.after(.seconds(10))
        while results.all.isEmpty && !limit.hasPassed { usleep(10_000) }
        #expect(results.all == ["stopped"])
        #expect(reader.waitForCardEvent(slot: 0, timeout: .milliseconds(200)) == .deviceGone)
        #expect(reader.waitForCardEvent(slot: 0, timeout: .seconds(30)) == .deviceGone)
    }
}

struct PINPadTests {
    /// PC/SC PIN_VERIFY_STRUCTURE: ASCII PIN, byte units, 8-byte block, no length field.
    static func verifyStructure() -> [UInt8] {
        let apdu: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x08] + [UInt8](repeating: 0xFF, count: 8)
        var s: [UInt8] = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00]
        s += [UInt8(apdu.count), 0, 0, 0]
        return s + apdu
    }

    @Test func verifyPINDirect() throws {
        let h = try Harness(profile: "ezio-pinpad-extended")
        try h.connect(protocolType: 1)
        let secure = try #require(PINEntry(part10Verify: Self.verifyStructure()))
        #expect(secure.ccidEncoded().first == 0x00 && secure.ccidEncoded().count == 15 + 13)
        #expect(try h.reader.secure(slot: 0, entry: secure) == [0x90, 0x00])
        // The card saw the PIN the pad inserted: 31 32 33 34 then padding.
        let last = try h.reader.transmit(slot: 0, apdu: [0x80, 0x40, 0x00, 0x00, 0x00])
        #expect(Array(last.prefix(9)) == [0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33, 0x34])
        h.sim.setPINPad(.enter("1299"))
        #expect(try h.reader.secure(slot: 0, entry: secure) == [0x6A, 0x02])
        h.sim.setPINPad(.cancel)
        #expect(try h.reader.secure(slot: 0, entry: secure) == [0x64, 0x01])
        h.sim.setPINPad(.timeout)
        #expect(try h.reader.secure(slot: 0, entry: secure) == [0x64, 0x00])
    }

    @Test func modifyPINDirect() throws {
        let h = try Harness(profile: "ezio-pinpad-extended")
        try h.connect(protocolType: 1)
        let apdu: [UInt8] = [0x00, 0x24, 0x00, 0x01, 0x10] + [UInt8](repeating: 0xFF, count: 16)
        var s: [UInt8] = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, 0x03, 0x09, 0x04, 0x00, 0x01, 0x02, 0, 0, 0]
        s += [UInt8(apdu.count), 0, 0, 0]
        let secure = try #require(PINEntry(part10Modify: s + apdu))
        #expect(secure.ccidEncoded().first == 0x01)
        #expect(try h.reader.secure(slot: 0, entry: secure) == [0x90, 0x00])
        let last = try h.reader.transmit(slot: 0, apdu: [0x80, 0x40, 0x00, 0x00, 0x00])
        #expect(Array(last.prefix(9)) == [0x00, 0x24, 0x00, 0x01, 0x10, 0x31, 0x32, 0x33, 0x34])
        #expect(last.count == 23 && Array(last[13..<17]) == [0x31, 0x32, 0x33, 0x34])
    }

    @Test func readerWithoutPINPadRefusesSecure() throws {
        let h = try Harness(profile: "omnikey-3121-extended")
        try h.connect()
        let secure = try #require(PINEntry(part10Verify: Self.verifyStructure()))
        #expect(throws: DriverError.commandFailed(.commandNotSupported)) { try h.reader.secure(slot: 0, entry: secure) }
    }

    @Test func featureListAndProperties() throws {
        let pinpad = try Harness(profile: "ezio-pinpad-extended").reader.identity
        let list = PCSCFeature.featureList(for: pinpad)
        #expect(list.count == 4 * 6)
        #expect(Array(list[0..<6]) == [0x06, 4, 0x42, 0x33, 0x00, 0x06])
        let plain = try Harness(profile: "cherry-st-short").reader.identity
        #expect(PCSCFeature.featureList(for: plain) == [0x12, 4, 0x42, 0x33, 0x00, 0x12])
        let tlv = PCSCFeature.tlvProperties(for: plain, firmware: "x")
        // dwMaxAPDUDataSize: 0 for a short-APDU reader.
        #expect(tlv.windowContains([0x0A, 4, 0, 0, 0, 0]))
        let ext = PCSCFeature.tlvProperties(for: try Harness().reader.identity, firmware: "x")
        #expect(ext.windowContains([0x0A, 4, 0xFF, 0xFF, 0, 0]))
        #expect(PINEntry(part10Verify: [1, 2, 3]) == nil)
        #expect(PINEntry(part10Verify: Array(Self.verifyStructure().dropLast())) == nil)
    }
}

extension Array where Element == UInt8 {
    func windowContains(_ w: [UInt8]) -> Bool {
        guard w.count <= count else { return false }
        return (0...(count - w.count)).contains { Array(self[$0..<$0 + w.count]) == w }
    }
}
