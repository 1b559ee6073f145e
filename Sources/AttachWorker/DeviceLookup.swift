import CCID
#if canImport(Glibc)
import Glibc
#endif
import CUdev

/// What udev knows of a USB device.
public struct USBDeviceProperties: Equatable, Sendable {
    public var syspath: String
    public var devnode: String
    public var vendorID: UInt16
    public var productID: UInt16
    /// The firmware release (bcdDevice).
    public var bcdDevice: UInt16
    public var product: String
    /// ID_USB_INTERFACES, e.g. ":0b0000:" for a CCID device.
    public var interfaces: String
    public var bus: UInt8
    public var address: UInt8

    /// A CCID interface (class 0x0B), as udev's usb_id summarises interfaces.
    public var hasCCIDInterface: Bool { interfaces.contains(":0b") }
    /// A USB ICCD token (version A or B), from the descriptors the kernel read
    /// (sysfs `descriptors`): interface protocol 1 or 2 and no bulk endpoint.
    public var iccdVersion: ICCDVersion? {
        guard let raw = DeviceLookup.readFile("\(syspath)/descriptors"), raw.count > 18 else { return nil }
        let set = USBDescriptorSet(device: Array(raw[0..<18]), configuration: Array(raw[18...]), strings: [:])
        return try? set.identity().iccd
    }
}

/// Looks USB devices up in udev's database (sysfs plus udev properties).
public enum DeviceLookup {
    public static func find(bus: UInt8, address: UInt8) -> USBDeviceProperties? {
        all().first { $0.bus == bus && $0.address == address }
    }

    public static func all() -> [USBDeviceProperties] {
        guard let udev = udev_new() else { return [] }
        defer { udev_unref(udev) }
        guard let e = udev_enumerate_new(udev) else { return [] }
        defer { udev_enumerate_unref(e) }
        udev_enumerate_add_match_subsystem(e, "usb")
        udev_enumerate_add_match_property(e, "DEVTYPE", "usb_device")
        udev_enumerate_scan_devices(e)
        var found: [USBDeviceProperties] = []
        var entry = udev_enumerate_get_list_entry(e)
        while let current = entry {
            defer { entry = udev_list_entry_get_next(current) }
            guard let path = udev_list_entry_get_name(current), let dev = udev_device_new_from_syspath(udev, path) else { continue }
            defer { udev_device_unref(dev) }
            func attr(_ name: String) -> String? {
                udev_device_get_sysattr_value(dev, name).map { String(cString: $0).trimmingWhitespace }
            }
            func property(_ name: String) -> String? { udev_device_get_property_value(dev, name).map { String(cString: $0) } }
            guard let bus = attr("busnum").flatMap({ UInt8($0) }), let address = attr("devnum").flatMap({ UInt8($0) }),
                  let vid = attr("idVendor").flatMap({ UInt16($0, radix: 16) }),
                  let pid = attr("idProduct").flatMap({ UInt16($0, radix: 16) }) else { continue }
            found.append(USBDeviceProperties(syspath: String(cString: path), devnode: property("DEVNAME") ?? "",
                                             vendorID: vid, productID: pid,
                                             bcdDevice: attr("bcdDevice").flatMap { UInt16($0, radix: 16) } ?? 0,
                                             product: attr("product") ?? "",
                                             interfaces: property("ID_USB_INTERFACES") ?? "", bus: bus, address: address))
        }
        return found
    }
}

extension DeviceLookup {
    /// A small file's bytes (a sysfs attribute), at most 64 KiB; nil if it cannot be read.
    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < 65_536 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out += chunk[0..<n]
        }
        return out
    }
}

extension String {
    /// Without leading and trailing blanks, newlines and NULs (sysfs and pid files end in them).
    public var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" || c == "\0" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" || c == "\0" { s.removeLast() }
        return String(s)
    }
}

/// A small text file (configuration, pid, /proc), at most `limit` bytes; nil if it cannot be opened.
public func readTextFile(_ path: String, limit: Int = 65536) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = fread(&buffer, 1, buffer.count, f)
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes.prefix(limit), as: UTF8.self)
}
