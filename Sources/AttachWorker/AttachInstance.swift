import USBTransport

/// The device a worker owns, as its systemd unit names it.
///
/// The unit `swiftccid-attach@BBB-DDD.service` runs `ccid-attach attach BBB-DDD`:
/// bus and device numbers as usbfs writes them (three digits each, as in
/// /dev/bus/usb/BBB/DDD). The openct form `usb:VVVV/PPPP/RRRR usb /dev/bus/usb/BBB/DDD`
/// (one argument or three) is accepted too and also pins VID/PID.
/// Anything else is refused before anything is touched: the text comes from
/// udev properties a device can influence.
public struct AttachInstance: Equatable, Sendable, CustomStringConvertible {
    public var bus: UInt8
    public var address: UInt8
    public var vendorID: UInt16?
    public var productID: UInt16?

    public init(bus: UInt8, address: UInt8, vendorID: UInt16? = nil, productID: UInt16? = nil) {
        self.bus = bus
        self.address = address
        self.vendorID = vendorID
        self.productID = productID
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            switch self { case .invalid(let why): why }
        }
    }

    public static let maximumLength = 64

    public static func parse(_ arguments: [String]) throws(ParseError) -> AttachInstance {
        for a in arguments {
            guard a.utf8.count <= maximumLength else { throw .invalid("instance longer than \(maximumLength) bytes") }
            guard a.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
                throw .invalid("instance holds bytes outside printable ASCII")
            }
        }
        let words = arguments.count == 1 ? arguments[0].split(separator: " ", omittingEmptySubsequences: false).map(String.init) : arguments
        switch words.count {
        case 1: return try short(words[0])
        case 3: return try openct(words)
        default: throw .invalid("expected BBB-DDD or 'usb:VVVV/PPPP/RRRR usb /dev/bus/usb/BBB/DDD'")
        }
    }

    /// BBB-DDD
    private static func short(_ s: String) throws(ParseError) -> AttachInstance {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let bus = number(parts[0], max: 255), let address = number(parts[1], max: 127) else {
            throw .invalid("instance '\(s)' is not BBB-DDD (bus 001-255, device 001-127)")
        }
        return AttachInstance(bus: bus, address: address)
    }

    private static func openct(_ w: [String]) throws(ParseError) -> AttachInstance {
        let ids = w[0].split(separator: ":", omittingEmptySubsequences: false)
        guard ids.count == 2, ids[0] == "usb", w[1] == "usb" else { throw .invalid("openct form is 'usb:VVVV/PPPP/RRRR usb /dev/bus/usb/BBB/DDD'") }
        let hex = ids[1].split(separator: "/", omittingEmptySubsequences: false)
        guard hex.count == 3, hex.allSatisfy({ (1...4).contains($0.count) && $0.utf8.allSatisfy(isHexDigit) }),
              let vid = UInt16(hex[0], radix: 16), let pid = UInt16(hex[1], radix: 16) else {
            throw .invalid("'\(w[0])' is not usb:VVVV/PPPP/RRRR")
        }
        let path = w[2].split(separator: "/", omittingEmptySubsequences: false)
        guard path.count == 6, path[0].isEmpty, path[1] == "dev", path[2] == "bus", path[3] == "usb",
              let bus = number(path[4], max: 255), let address = number(path[5], max: 127) else {
            throw .invalid("'\(w[2])' is not /dev/bus/usb/BBB/DDD")
        }
        return AttachInstance(bus: bus, address: address, vendorID: vid, productID: pid)
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x46).contains(c) || (0x61...0x66).contains(c)
    }

    /// Exactly three decimal digits, 1...max.
    private static func number(_ s: Substring, max: Int) -> UInt8? {
        guard s.utf8.count == 3, s.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let n = Int(s), (1...max).contains(n) else { return nil }
        return UInt8(n)
    }

    /// The unit instance for this device.
    public var unitInstance: String { "\(USBDeviceName.threeDigits(bus))-\(USBDeviceName.threeDigits(address))" }
    public var devicePath: String { USBDeviceName.devicePath(bus: bus, address: address) }
    public var description: String { devicePath }
}
