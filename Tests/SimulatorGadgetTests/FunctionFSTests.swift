import CCID
import SimulatorCore
import Testing
@testable import SimulatorGadget

struct FunctionFSTests {
    func descriptors(_ layout: USBDescriptorSet.Layout = .init()) throws -> [UInt8] {
        var profile = try #require(ReaderProfile.named("omnikey-3121-extended"))
        profile.usbLayout = layout
        return SimulatedReader(name: "sim0", profile: profile, serialNumber: "SIM1000").descriptors.configuration
    }

    @Test func interfaceAndEndpointsAtBothSpeeds() throws {
        let f = try FunctionFS.function(fromConfiguration: try descriptors())
        #expect(f.fullSpeed.map { $0[1] } == [0x04, 0x21, 0x05, 0x05, 0x05])
        #expect(f.fullSpeed[1].count == 54)
        #expect(f.endpointAddresses == [0x01, 0x82, 0x83])
        // Bulk goes to 512-byte packets; the interrupt interval of 16 ms becomes 2^(8-1) microframes.
        #expect(f.highSpeed[2][4] == 0x00 && f.highSpeed[2][5] == 0x02)
        #expect(f.highSpeed[3][4] == 0x00 && f.highSpeed[3][5] == 0x02)
        #expect(f.highSpeed[4][6] == 8)
        #expect(f.fullSpeed[4][6] == 16)
    }

    @Test func descriptorAfterEndpointsAndNoInterruptEndpoint() throws {
        let f = try FunctionFS.function(fromConfiguration: try descriptors(.init(interruptEndpoint: false, descriptorAfterEndpoints: true)))
        #expect(f.fullSpeed.map { $0[1] } == [0x04, 0x05, 0x05, 0x21])
        #expect(f.endpointAddresses == [0x01, 0x82])
    }

    /// A composite token's CCID interface is the function's, numbered 0 (the
    /// kernel numbers it after the configfs hid functions linked before it).
    @Test func aCompositeTokensCCIDInterfaceIsTheFunction() throws {
        let f = try FunctionFS.function(fromConfiguration: try descriptors(.init(hidInterfacesBefore: 2, hidInterfacesAfter: 1)))
        #expect(f.fullSpeed.map { $0[1] } == [0x04, 0x21, 0x05, 0x05, 0x05])
        #expect(f.fullSpeed[0][2] == 0 && f.fullSpeed[0][5] == 0x0B)
        #expect(f.endpointAddresses == [0x01, 0x82, 0x83])
    }

    @Test func vendorClassIsRefused() throws {
        #expect(throws: FunctionFS.LayoutError.vendorClass) {
            try FunctionFS.function(fromConfiguration: try descriptors(.init(interfaceClass: 0xFF)))
        }
    }

    @Test(arguments: [[], [9, 2, 9, 0], [9, 2, 20, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 3, 0x0B, 0, 0], [9, 2, 12, 0, 1, 1, 0, 0x80, 50, 0, 0, 0],
                      [9, 2, 18, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 3, 0, 0, 0]] as [[UInt8]])
    func malformedOrForeignConfigurations(_ bytes: [UInt8]) {
        #expect(throws: FunctionFS.LayoutError.self) { try FunctionFS.function(fromConfiguration: bytes) }
    }

    @Test func descriptorsBlobHeader() throws {
        let f = try FunctionFS.function(fromConfiguration: try descriptors())
        let blob = FunctionFS.descriptors(f)
        #expect(Array(blob[0..<4]) == [3, 0, 0, 0])
        #expect(Int(blob[4]) | Int(blob[5]) << 8 == blob.count)
        #expect(Array(blob[8..<20]) == [3, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0])
        #expect(blob.count == 20 + 2 * (9 + 54 + 3 * 7))
    }

    @Test func highSpeedIntervals() {
        #expect(FunctionFS.highSpeedInterval(milliseconds: 1) == 4)
        #expect(FunctionFS.highSpeedInterval(milliseconds: 0) == 4)
        #expect(FunctionFS.highSpeedInterval(milliseconds: 255) == 11)
    }

    @Test func events() {
        let setup: [UInt8] = [0xA1, 0x03, 0, 0, 0, 0, 0x40, 0]
        let bytes = setup + [4, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [2, 0, 0, 0] + [UInt8](repeating: 0, count: 8) + [99, 0, 0, 0] + [1, 2]
        let events = FunctionFS.events(bytes[...])
        #expect(events == [FunctionFS.Event(type: .setup, setup: setup), FunctionFS.Event(type: .enable, setup: [UInt8](repeating: 0, count: 8))])
    }
}
