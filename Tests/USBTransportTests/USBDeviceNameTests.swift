import Testing
@testable import USBTransport

struct USBDeviceNameTests {
    @Test func pcscdLibudevName() throws {
        let n = try #require(USBDeviceName("usb:08e6/3437:libudev:0:/dev/bus/usb/001/002"))
        #expect(n == USBDeviceName(vendorID: 0x08E6, productID: 0x3437, bus: 1, address: 2, interface: 0))
        #expect(n.devicePath == "/dev/bus/usb/001/002")
    }

    @Test func pcscdLibusbName() throws {
        let n = try #require(USBDeviceName("usb:072f/90cc:libusb-1.0:3:17:1"))
        #expect(n == USBDeviceName(vendorID: 0x072F, productID: 0x90CC, bus: 3, address: 17, interface: 1))
    }

    @Test(arguments: ["usb:08e6/3437", "usb:08e6/3437:libudev:0:/dev/bus/usb/001", "usb:8e6/3437:libudev:0:/dev/bus/usb/001/002",
                      "usb:08e6/3437:libudev:x:/dev/bus/usb/001/002", "usb:08e6/3437:libudev:0:/dev/bus/usb/001/1234",
                      "usb:08e6/3437:libudev:0:/dev/bus/usb/../002", "usb:08e6/3437:libudev:0:dev/bus/usb/001/002",
                      "usb:08e6/3437:libudev:0:/dev/bus/usb/256/002", "usb:08e6/3437:libusb-1.0:1:2", "relay:/x",
                      "usb:08e6/3437:libudev:0:/dev/bus/usb/001/002:extra", "usb:08e6/3437:libudev:0:/dev/bus/usb/+01/002"])
    func refusesAnythingElse(_ text: String) {
        #expect(USBDeviceName(text) == nil)
    }
}
