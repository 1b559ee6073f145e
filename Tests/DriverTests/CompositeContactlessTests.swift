import Testing
@testable import CCID
@testable import CCIDDriver
@testable import SimulatorCore

/// A composite token's descriptors (HID interfaces around the CCID one) and
/// a contactless reader's firmware answering PC/SC Part 3's GET DATA.
struct CompositeContactlessTests {
    @Test func aCompositeTokensCCIDInterfaceIsFoundAmongItsHIDOnes() throws {
        let profile = try #require(ReaderProfile.named("yubikey-neo-composite-extended"))
        var layout = profile.usbLayout
        layout.hidInterfacesAfter = 1
        let set = USBDescriptorSet.ccidDevice(vendorID: 0x1050, productID: 0x0116, bcdDevice: 0x0330, manufacturer: "Yubico",
                                              product: "Token", serialNumber: "1", classDescriptor: profile.descriptor, layout: layout)
        #expect(set.configuration[4] == 4)   // bNumInterfaces: HID, HID, CCID, HID
        var interfaces: [(number: UInt8, cls: UInt8)] = []
        var offset = 0
        while offset < set.configuration.count {
            let length = Int(set.configuration[offset])
            if set.configuration[offset + 1] == 0x04 { interfaces.append((set.configuration[offset + 2], set.configuration[offset + 5])) }
            offset += length
        }
        #expect(interfaces.map(\.number) == [0, 1, 2, 3])
        #expect(interfaces.map(\.cls) == [0x03, 0x03, 0x0B, 0x03])
        let identity = try set.identity()
        #expect(identity.interfaceNumber == 2)
        #expect(identity.endpoints == CCIDEndpoints(bulkOut: 0x01, bulkIn: 0x82, interruptIn: 0x83, bulkInPacketSize: 64))
        #expect(try set.identity(interface: 2).interfaceNumber == 2)
        // The HID interfaces are not CCID ones, whichever a host names.
        for hid: UInt8 in [0, 1, 3] {
            #expect(throws: USBDescriptorError.noCCIDInterface) { try set.identity(interface: hid) }
        }
    }

    @Test func theContactlessReadersFirmwareAnswersGetData() throws {
        let h = try Harness(profile: "omnikey-5022-contactless-extended", cards: ["compliance-contactless"])
        let atr = try h.connect()
        #expect(atr == [0x3B, 0x86, 0x80, 0x01, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x97])
        let uid: [UInt8] = [0x04, 0xA2, 0x2B, 0x7A, 0x5C, 0x3E, 0x80]
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x00, 0x00]) == uid + [0x90, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x00, 0x07]) == uid + [0x90, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x00, 0x03]) == [0x6C, 0x07])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x00, 0x09]) == uid + [0x62, 0x82])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x01, 0x00, 0x00]) == [0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x90, 0x00])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x01, 0x00]) == [0x6A, 0x81])
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0x00, 0x00, 0x00, 0x00]) == [0x6A, 0x81])
    }

    @Test func aContactReaderPassesFFToTheCard() throws {
        let h = try Harness(profile: "omnikey-3121-extended", cards: ["compliance-contactless"])
        try h.connect()
        // No firmware in between: the compliance applet does not know INS CA.
        #expect(try h.reader.transmit(slot: 0, apdu: [0xFF, 0xCA, 0x00, 0x00, 0x00]) == [0x6D, 0x00])
    }
}
