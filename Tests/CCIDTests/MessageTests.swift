import Testing
import TestSupport
@testable import CCID

struct MessageTests {
    static let commands: [Command.Body] = [
        .iccPowerOn(voltage: .automatic), .iccPowerOn(voltage: .v1_8), .iccPowerOff, .getSlotStatus,
        .xfrBlock(bwi: 4, levelParameter: 0x0003, data: [0x00, 0xA4, 0x04, 0x00]),
        .getParameters, .resetParameters, .setParameters(protocolNumber: 1, data: [0x11, 0x10, 0, 0x4D, 0, 0xFE, 0]),
        .escape(data: [1, 2, 3]), .iccClock(command: 1), .t0APDU(changes: 3, classGetResponse: 0xFF, classEnvelope: 0x00),
        .secure(bwi: 0, levelParameter: 0, data: [0x00, 0x1E]), .mechanical(function: 4), .abort,
        .setDataRateAndClockFrequency(clockFrequency: 4000, dataRate: 10752),
    ]

    static let replies: [Reply.Body] = [
        .dataBlock(chainParameter: 0x01, data: [0x90, 0x00]), .slotStatus(clockStatus: 2),
        .parameters(protocolNumber: 0, data: [0x11, 0, 0, 10, 0]), .escape(data: []),
        .dataRateAndClockFrequency(clockFrequency: 4800, dataRate: 12903),
    ]

    @Test(arguments: commands) func commandRoundTrip(_ body: Command.Body) throws {
        let c = Command(slot: 2, sequence: 0xFE, body: body)
        let bytes = c.encoded()
        #expect(bytes[0] == c.messageType.rawValue)
        #expect(bytes.count >= ccidHeaderLength)
        #expect(try Command(decoding: bytes) == c)
    }

    @Test(arguments: replies) func replyRoundTrip(_ body: Reply.Body) throws {
        let r = Reply(slot: 1, sequence: 7, status: SlotStatus(icc: .presentInactive, command: .failed), error: 0xFE, body: body)
        #expect(try Reply(decoding: r.encoded()) == r)
    }

    /// CCID 1.1 §6.1.1: PC_to_RDR_IccPowerOn, slot 0, seq 1, 5 V.
    @Test func powerOnVector() {
        let c = Command(slot: 0, sequence: 1, body: .iccPowerOn(voltage: .v5))
        #expect(c.encoded() == [0x62, 0, 0, 0, 0, 0x00, 0x01, 0x01, 0x00, 0x00])
    }

    @Test func xfrBlockVectorIsLittleEndian() {
        let c = Command(slot: 0, sequence: 9, body: .xfrBlock(bwi: 0, levelParameter: 0x0010, data: Array(repeating: 0xAB, count: 0x0102)))
        let b = c.encoded()
        #expect(Array(b[0..<10]) == [0x6F, 0x02, 0x01, 0, 0, 0x00, 0x09, 0x00, 0x10, 0x00])
    }

    @Test func statusByteDecoding() {
        let s = SlotStatus(byte: 0x81)
        #expect(s.icc == .presentInactive && s.command == .timeExtension)
        #expect(SlotStatus(byte: 0x42).icc == .absent && SlotStatus(byte: 0x42).command == .failed)
        #expect(SlotStatus(icc: .absent, command: .failed).byte == 0x42)
        #expect(SlotError.iccMute.description == "ICC_MUTE")
        #expect(SlotError(rawValue: 5).description == "bad parameter at offset 5")
    }

    @Test func notifySlotChangeBitmap() throws {
        // Slots 0..4: slot 1 present+changed, slot 4 changed (removed).
        let m = InterruptMessage.notifySlotChange([
            .init(present: false, changed: false), .init(present: true, changed: true),
            .init(present: true, changed: false), .init(present: false, changed: false), .init(present: false, changed: true),
        ])
        let bytes = m.encoded()
        #expect(bytes == [0x50, 0b0001_1100, 0b0000_0010])
        guard case .notifySlotChange(let slots) = try InterruptMessage(decoding: bytes) else { Issue.record("type"); return }
        #expect(slots[1] == .init(present: true, changed: true) && slots[4] == .init(present: false, changed: true))
        #expect(try InterruptMessage(decoding: [0x51, 0, 3, 1]) == .hardwareError(slot: 0, sequence: 3, code: 1))
    }

    @Test func lengthLiesAreErrorsNotTraps() {
        #expect(throws: CCIDDecodingError.lengthMismatch(declared: 5, actual: 1)) {
            try Reply(decoding: [0x80, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x90])
        }
        #expect(throws: CCIDDecodingError.truncatedHeader(count: 3)) { try Reply(decoding: [0x80, 0, 0]) }
        #expect(throws: CCIDDecodingError.unknownMessageType(0x99)) { try Reply(decoding: [0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0]) }
        #expect(throws: CCIDDecodingError.lengthMismatch(declared: 0xFFFF_FFFF, actual: 0)) {
            try Command(decoding: [0x6F, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0])
        }
    }

    /// Property: arbitrary bytes (hostile device input) never trap a decoder,
    /// and what one accepts is a fixed point: encoded and decoded again, it is
    /// the same value. Headers are often made plausible so that both sides run.
    @Test func randomBytesDecodeToFixedPointsOrAreRefused() throws {
        var rng = TestRandom(seed: 0xCC1D)
        var accepted = 0
        for _ in 0..<20_000 {
            let n = Int.random(in: 0..<40, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let types: [UInt8] = [0x80, 0x81, 0x82, 0x83, 0x84, 0x50, 0x51, 0x62, 0x6F]
            if n > 0, Bool.random(using: &rng) { bytes[0] = types[Int.random(in: 0..<types.count, using: &rng)] }
            if n >= 5, Bool.random(using: &rng) { bytes[1] = UInt8(max(n - 10, 0)); bytes[2] = 0; bytes[3] = 0; bytes[4] = 0 }
            if let reply = try? Reply(decoding: bytes) {
                #expect(try Reply(decoding: reply.encoded()) == reply, "\(bytes)")
                accepted += 1
            }
            if let command = try? Command(decoding: bytes) {
                #expect(try Command(decoding: command.encoded()) == command, "\(bytes)")
                accepted += 1
            }
            if let message = try? InterruptMessage(decoding: bytes) {
                #expect(try InterruptMessage(decoding: message.encoded()) == message, "\(bytes)")
                accepted += 1
            }
            if let descriptor = try? ClassDescriptor(decoding: bytes) {
                #expect(try ClassDescriptor(decoding: descriptor.encoded()) == descriptor, "\(bytes)")
            }
            if let id = try? USBDescriptorSet(device: bytes, configuration: bytes.reversed(), strings: [:]).identity() {
                #expect(try ClassDescriptor(decoding: id.classDescriptor.encoded()) == id.classDescriptor, "\(bytes)")
            }
        }
        #expect(accepted > 1_000, "only \(accepted) messages decoded: the property was barely tested")
    }

    @Test func usbDescriptorsRoundTripThroughIdentity() throws {
        let d = try ClassDescriptor(decoding: bytesFromHex("36210001000703000000a00f0000a00f000000002a000008f8010000fe0000000000000000000000300001000f010000000000000001")!)
        let set = USBDescriptorSet.ccidDevice(vendorID: 0x072F, productID: 0x90CC, bcdDevice: 0x0100,
                                              manufacturer: "ACS", product: "ACR38U", serialNumber: "42", classDescriptor: d)
        let id = try set.identity()
        #expect(id.vendorID == 0x072F && id.productID == 0x90CC && id.product == "ACR38U" && id.serialNumber == "42")
        #expect(id.classDescriptor == d && id.hasInterruptEndpoint && id.interfaceNumber == 0)
    }

    /// A composite device: a HID interface, then a vendor-class (0xFF) CCID
    /// interface whose class descriptor follows its endpoints, as some tokens do.
    @Test func compositeDeviceWithDescriptorAfterEndpoints() throws {
        let d = try ClassDescriptor(decoding: bytesFromHex("36210001000703000000a00f0000a00f000000002a000008f8010000fe0000000000000000000000300001000f010000000000000001")!)
        let plain = USBDescriptorSet.ccidDevice(vendorID: 1, productID: 2, bcdDevice: 3, manufacturer: "m", product: "p",
                                                serialNumber: "s", classDescriptor: d)
        var body: [UInt8] = [9, 0x04, 0, 0, 1, 0x03, 0, 0, 0, 7, 0x05, 0x81, 0x03, 8, 0, 10]
        body += [9, 0x04, 1, 0, 3, 0xFF, 0, 0, 0]
        body += [7, 0x05, 0x02, 0x02, 0x40, 0x00, 0, 7, 0x05, 0x85, 0x02, 0x00, 0x02, 0, 7, 0x05, 0x86, 0x03, 8, 0, 16]
        body += d.encoded()
        var config: [UInt8] = [9, 0x02]
        config.appendLE(UInt16(9 + body.count))
        config += [2, 1, 0, 0x80, 50] + body
        let set = USBDescriptorSet(device: plain.device, configuration: config, strings: plain.strings)
        let id = try set.identity(interface: 1)
        #expect(id.interfaceNumber == 1 && id.classDescriptor == d)
        #expect(id.endpoints == CCIDEndpoints(bulkOut: 0x02, bulkIn: 0x85, interruptIn: 0x86, bulkInPacketSize: 512))
        #expect(try set.identity().interfaceNumber == 1)
        #expect(throws: USBDescriptorError.noCCIDInterface) { try set.identity(interface: 0) }
    }

    @Test func hexHelpers() {
        #expect(bytesFromHex("3B 8f:80") == [0x3B, 0x8F, 0x80])
        #expect(bytesFromHex("3B8") == nil && bytesFromHex("zz") == nil)
        #expect(hexString([0x00, 0xAB]) == "00 AB")
    }
}
