/// Where pcscd's hotplug says a USB reader is. Its libudev backend names
/// `usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD`, its libusb backend
/// `usb:VVVV/PPPP:libusb-1.0:BUS:ADDR:IF`. Anything else is refused: the text
/// comes from configuration files and must not be guessed at.
public struct USBDeviceName: Equatable, Sendable, CustomStringConvertible {
    public var vendorID: UInt16
    public var productID: UInt16
    public var bus: UInt8
    public var address: UInt8
    /// The interface pcscd means (composite devices), nil if not named.
    public var interface: UInt8?

    public init(vendorID: UInt16, productID: UInt16, bus: UInt8, address: UInt8, interface: UInt8?) {
        self.vendorID = vendorID
        self.productID = productID
        self.bus = bus
        self.address = address
        self.interface = interface
    }

    public init?(_ text: String) {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 2, fields[0] == "usb" else { return nil }
        let ids = fields[1].split(separator: "/", omittingEmptySubsequences: false)
        guard ids.count == 2, ids.allSatisfy({ $0.count == 4 }),
              let vid = UInt16(ids[0], radix: 16), let pid = UInt16(ids[1], radix: 16) else { return nil }
        vendorID = vid
        productID = pid
        switch fields.count {
        case 5 where fields[2] == "libudev":
            // /dev/bus/usb/BBB/DDD
            let parts = fields[4].split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 6, parts[0].isEmpty, parts[1] == "dev", parts[2] == "bus", parts[3] == "usb",
                  let bus = Self.decimal(parts[4]), let address = Self.decimal(parts[5]),
                  let interface = Self.decimal(fields[3]) else { return nil }
            (self.bus, self.address, self.interface) = (bus, address, interface)
        case 6 where fields[2] == "libusb-1.0":
            guard let bus = Self.decimal(fields[3]), let address = Self.decimal(fields[4]),
                  let interface = Self.decimal(fields[5]) else { return nil }
            (self.bus, self.address, self.interface) = (bus, address, interface)
        default:
            return nil
        }
    }

    /// 1–3 ASCII digits in 0...255; leading zeros allowed (usbfs pads to 3).
    private static func decimal(_ s: some StringProtocol) -> UInt8? {
        guard (1...3).contains(s.utf8.count), s.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return UInt8(s)
    }

    public var devicePath: String { Self.devicePath(bus: bus, address: address) }

    /// /dev/bus/usb/BBB/DDD
    public static func devicePath(bus: UInt8, address: UInt8) -> String {
        "/dev/bus/usb/\(threeDigits(bus))/\(threeDigits(address))"
    }

    /// A bus or device number as usbfs and udev write it: 001.
    public static func threeDigits(_ n: UInt8) -> String { String(repeating: "0", count: 3 - String(n).count) + String(n) }

    /// A VID or PID as lsusb and pcscd write it: 08e6.
    public static func hex(_ v: UInt16) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 4 - s.count) + s
    }

    public var description: String {
        "\(Self.hex(vendorID)):\(Self.hex(productID)) at \(devicePath)" + (interface.map { " interface \($0)" } ?? "")
    }
}
