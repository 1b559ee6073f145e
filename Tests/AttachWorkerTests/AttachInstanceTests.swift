import Testing
@testable import AttachWorker

struct AttachInstanceTests {
    @Test func unitInstance() throws {
        let i = try AttachInstance.parse(["001-002"])
        #expect(i == AttachInstance(bus: 1, address: 2))
        #expect(i.unitInstance == "001-002" && i.devicePath == "/dev/bus/usb/001/002")
    }

    @Test func openctForm() throws {
        let one = try AttachInstance.parse(["usb:08e6/3437/0100 usb /dev/bus/usb/003/017"])
        #expect(one == AttachInstance(bus: 3, address: 17, vendorID: 0x08E6, productID: 0x3437))
        #expect(try AttachInstance.parse(["usb:08e6/3437/0100", "usb", "/dev/bus/usb/003/017"]) == one)
    }

    /// What a hostile device or a careless rule could put in the instance.
    @Test(arguments: ["", "1-2", "001-002 ", " 001-002", "001-002;reboot", "001-$(id)", "001-`id`", "../001-002",
                      "001/002", "001-002\n", "'001-002'", "\"001-002\"", "000-002", "001-000", "256-002", "001-128",
                      "001-0002", "usb:08e6/3437/0100 usb /dev/bus/usb/../017", "usb:zzzz/3437/0100 usb /dev/bus/usb/001/002",
                      "usb:08e6/3437/0100 usb /dev/bus/usb/001/002 extra", "usb:08e6/3437/0100  usb /dev/bus/usb/001/002",
                      String(repeating: "0", count: 65), "001-00\u{e9}", "001-002\u{0}"])
    func refusesHostileInstances(_ text: String) {
        #expect(throws: AttachInstance.ParseError.self) { try AttachInstance.parse([text]) }
    }

    @Test func refusesNonUTF8() {
        let bytes: [UInt8] = [0x30, 0x30, 0x31, 0x2D, 0xFF, 0x30, 0x32]
        #expect(throws: AttachInstance.ParseError.self) { try AttachInstance.parse([String(decoding: bytes, as: UTF8.self)]) }
    }

    @Test func configFile() {
        var warnings: [String] = []
        let c = AttachConfig.parse("# comment\nsocket-group = scard\nlog-level=debug\nbogus = 1\nnovalue\n", warn: { warnings.append($0) })
        #expect(c == AttachConfig(socketGroup: "scard", debug: true))
        #expect(warnings.count == 2)
    }
}
