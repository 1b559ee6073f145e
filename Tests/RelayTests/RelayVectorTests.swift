import Foundation
import Testing
@testable import CCID
@testable import Relay
@testable import SimulatorCore
import TestSupport

/// docs/relay-vectors.txt, checked on the encoding and the decoding side.
struct RelayVectorTests {
    static func vectors() throws -> [String: [UInt8]] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/relay-vectors.txt")
        var out: [String: [UInt8]] = [:]
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "\t")
            guard parts.count == 2, let bytes = bytesFromHex(String(parts[1])) else { continue }
            out[String(parts[0])] = bytes
        }
        return out
    }

    static var cherryHello: RelayHello {
        let profile = ReaderProfile.named("cherry-st-short")!
        let reader = SimulatedReader(name: "sim1", profile: profile, serialNumber: "SIM1000")
        return RelayHello(descriptors: reader.descriptors)
    }

    static let atr: [UInt8] = [0x3B, 0xD6, 0x18, 0x00, 0x80, 0xB1, 0x80, 0x6D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x9E]

    static var expected: [String: RelayFrame] {
        [
            "hello_cherry": .hello(cherryHello),
            "bulk_out_power_on": .bulkOut(Command(slot: 0, sequence: 1, body: .iccPowerOn(voltage: .automatic)).encoded()),
            "bulk_in_atr": .bulkIn(Reply(slot: 0, sequence: 1, status: SlotStatus(icc: .presentActive),
                                         body: .dataBlock(chainParameter: 0, data: atr)).encoded()),
            "interrupt_slot0_inserted": .interruptIn(InterruptMessage.notifySlotChange([.init(present: true, changed: true)]).encoded()),
            "control_abort_slot0_seq7": .control(tag: 1, .abort(slot: 0, sequence: 7, interface: 0)),
            "control_get_clocks": .control(tag: 2, .getClockFrequencies(interface: 0, count: 2)),
            "control_reply_done": .controlReply(tag: 1, stalled: false, data: []),
            "control_reply_data": .controlReply(tag: 2, stalled: false, data: [0xA0, 0x0F, 0, 0]),
            "control_reply_stall": .controlReply(tag: 3, stalled: true, data: []),
        ]
    }

    @Test func everyVectorEncodesAndDecodes() throws {
        let vectors = try Self.vectors()
        let expected = Self.expected
        #expect(vectors.count == expected.count)
        for (name, bytes) in vectors {
            let frame = try #require(expected[name], "vector \(name) has no expected frame")
            #expect(frame.encoded() == bytes, "encode \(name)")
            var decoder = RelayFrameDecoder()
            // Byte by byte, as a stream socket may deliver it.
            var decoded: RelayFrame? = nil
            for b in bytes {
                #expect(decoded == nil, "\(name) completed early")
                decoder.append([b])
                decoded = try decoder.next()
            }
            #expect(decoded == frame, "decode \(name)")
        }
    }

    @Test func helloCarriesTheDeviceIdentity() throws {
        let id = try Self.cherryHello.descriptors.identity()
        #expect(id.vendorID == 0x046A && id.productID == 0x0090)
        #expect(id.manufacturer == "Cherry" && id.product == "Smart Card Reader USB" && id.serialNumber == "SIM1000")
        #expect(id.classDescriptor.exchangeLevel == .shortAPDU && id.hasInterruptEndpoint)
    }

    @Test func extendedAPDUFitsInOneFrame() throws {
        let message = Command(slot: 0, sequence: 3, body: .xfrBlock(bwi: 0, levelParameter: 0, data: [UInt8](repeating: 0x5A, count: 65544))).encoded()
        let bytes = RelayFrame.bulkOut(message).encoded()
        #expect(Array(bytes[1..<5]) == [0x00, 0x01, 0x00, 0x12])   // 65554 bytes
        var d = RelayFrameDecoder()
        d.append(bytes)
        #expect(try d.next() == .bulkOut(message))
    }

    @Test func hostileFramesAreErrors() throws {
        var d = RelayFrameDecoder()
        d.append([0x11, 0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: RelayError.oversized(0x7FFF_FFFF)) { try d.next() }
        var u = RelayFrameDecoder()
        u.append([0x99, 0, 0, 0, 0])
        #expect(throws: RelayError.unknownFrameType(0x99)) { try u.next() }
        #expect(throws: RelayError.badMagic) { try RelayHello(decoding: Array("XXXX".utf8) + [1, 0]) }
        #expect(throws: RelayError.unsupportedVersion(major: 2, minor: 0)) { try RelayHello(decoding: RelayHello.magic + [2, 0]) }
        #expect(throws: RelayError.malformed("hello descriptors")) { try RelayHello(decoding: RelayHello.magic + [1, 0, 0, 40, 1]) }
        var c = RelayFrameDecoder()
        c.append([0x21, 0, 0, 0, 2, 0, 1])
        #expect(throws: RelayError.malformed("control reply of 2 bytes")) { try c.next() }
    }

    /// Property: random streams never trap the decoder, and each frame or
    /// hello it accepts is a fixed point (encoded and decoded again, the same).
    @Test func randomStreamsDecodeToFixedPointsOrAreRefused() throws {
        var rng = TestRandom(seed: 0x2E1A)
        var frames = 0
        for _ in 0..<5_000 {
            var d = RelayFrameDecoder()
            var bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Often a plausible header (a known type, a length that fits), so that both sides run.
            if bytes.count > 5, Bool.random(using: &rng) {
                let kinds: [UInt8] = [0x01, 0x10, 0x11, 0x12, 0x20, 0x21]
                bytes[0] = kinds[Int.random(in: 0..<kinds.count, using: &rng)]
                bytes[1] = 0; bytes[2] = 0; bytes[3] = 0; bytes[4] = UInt8(bytes.count - 5)
            }
            d.append(bytes)
            while let frame = try? d.next() {
                var again = RelayFrameDecoder()
                again.append(frame.encoded())
                #expect(try again.next() == frame, "\(bytes)")
                frames += 1
            }
            if let hello = try? RelayHello(decoding: RelayHello.magic + [1, 0] + bytes) {
                #expect(try RelayHello(decoding: hello.encoded()) == hello, "\(bytes)")
            }
        }
        #expect(frames > 500, "only \(frames) frames decoded: the property was barely tested")
    }
}
