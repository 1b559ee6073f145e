#if canImport(Glibc)
import Glibc
#endif
import CCID
import SimulatorCore

/// One USB gadget in configfs (/sys/kernel/config/usb_gadget): a device with
/// one configuration holding one FunctionFS function (the CCID interface) and,
/// for a composite token, configfs hid functions before and after it (their
/// order of linking is their interface numbers), and the FunctionFS instance
/// mounted where its ep0 can be opened. `remove` undoes it all in the order
/// the kernel wants.
struct ConfigFSGadget: Sendable {
    static let gadgets = "/sys/kernel/config/usb_gadget"
    let name: String
    let mountPoint: String
    let hidBefore: Int
    let hidAfter: Int
    var path: String { "\(Self.gadgets)/\(name)" }
    var instance: String { name }
    var functionPath: String { "\(path)/functions/ffs.\(instance)" }
    var linkPath: String { "\(path)/configs/c.1/ffs.\(instance)" }
    func hidFunction(_ i: Int) -> String { "\(path)/functions/hid.\(instance)h\(i)" }
    func hidLink(_ i: Int) -> String { "\(path)/configs/c.1/hid.\(instance)h\(i)" }

    /// Creates the tree and mounts FunctionFS; a failure removes what was made.
    static func create(name: String, mountDirectory: String, profile: ReaderProfile,
                       serialNumber: String) throws(SimulatorError) -> ConfigFSGadget {
        guard access(gadgets, F_OK) == 0 else {
            throw .config("\(gadgets) is missing: load libcomposite and usb_f_fs (and dummy_hcd for a UDC), and mount configfs")
        }
        let g = ConfigFSGadget(name: name, mountPoint: "\(mountDirectory)/\(name)",
                               hidBefore: Int(profile.usbLayout.hidInterfacesBefore), hidAfter: Int(profile.usbLayout.hidInterfacesAfter))
        do throws(SimulatorError) {
            try SysFS.makeDirectory(g.path)
            try SysFS.write("\(g.path)/idVendor", hex(profile.vendorID))
            try SysFS.write("\(g.path)/idProduct", hex(profile.productID))
            try SysFS.write("\(g.path)/bcdDevice", hex(profile.bcdDevice))
            try SysFS.write("\(g.path)/bcdUSB", "0x0200")
            try SysFS.makeDirectory("\(g.path)/strings/0x409")
            try SysFS.write("\(g.path)/strings/0x409/manufacturer", profile.manufacturer)
            try SysFS.write("\(g.path)/strings/0x409/product", profile.product)
            try SysFS.write("\(g.path)/strings/0x409/serialnumber", serialNumber)
            try SysFS.makeDirectory("\(g.path)/configs/c.1")
            try SysFS.write("\(g.path)/configs/c.1/MaxPower", "100")
            try SysFS.makeDirectory("\(g.path)/configs/c.1/strings/0x409")
            try SysFS.write("\(g.path)/configs/c.1/strings/0x409/configuration", "CCID")
            try SysFS.makeDirectory(g.functionPath)
            for i in 0..<(g.hidBefore + g.hidAfter) { try g.makeHIDFunction(i) }
            for i in 0..<g.hidBefore { try link(g.hidFunction(i), g.hidLink(i)) }
            try link(g.functionPath, g.linkPath)
            for i in g.hidBefore..<(g.hidBefore + g.hidAfter) { try link(g.hidFunction(i), g.hidLink(i)) }
            try SysFS.makeDirectories(g.mountPoint)
            guard mount(g.instance, g.mountPoint, "functionfs", 0, nil) == 0 else { throw SysFS.error("mount functionfs at \(g.mountPoint)") }
        } catch {
            g.remove()
            throw error
        }
        return g
    }

    private static func link(_ target: String, _ path: String) throws(SimulatorError) {
        guard symlink(target, path) == 0 else { throw SysFS.error("symlink \(path)") }
    }

    /// A FIDO-style HID function (usb_f_hid), 64-byte reports.
    private func makeHIDFunction(_ i: Int) throws(SimulatorError) {
        let f = hidFunction(i)
        try SysFS.makeDirectory(f)
        try SysFS.write("\(f)/protocol", "0")
        try SysFS.write("\(f)/subclass", "0")
        try SysFS.write("\(f)/report_length", "64")
        try SysFS.write("\(f)/report_desc", USBDescriptorSet.fidoReportDescriptor)
    }

    private static func hex(_ v: UInt16) -> String {
        let digits = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// Binds to `udc` (plugs the device in); EBUSY means another gadget has it.
    func bind(_ udc: String) throws(SimulatorError) { try SysFS.write("\(path)/UDC", udc) }

    /// Unbinds (pulls the plug); harmless when not bound.
    func unbind() { try? SysFS.write("\(path)/UDC", "\n") }

    /// After unbind and once every FunctionFS file is closed.
    func remove() {
        unbind()
        umount2(mountPoint, 0)
        rmdir(mountPoint)
        unlink(linkPath)
        for i in 0..<(hidBefore + hidAfter) { unlink(hidLink(i)) }
        let hidFunctions = (0..<(hidBefore + hidAfter)).map { hidFunction($0) }
        for dir in ["\(path)/configs/c.1/strings/0x409", "\(path)/configs/c.1", functionPath] + hidFunctions + ["\(path)/strings/0x409", path] {
            rmdir(dir)
        }
    }

    /// UDCs no gadget is bound to, in name order.
    static func freeUDCs() -> [String] {
        let taken = Set(SysFS.list(gadgets).compactMap { SysFS.read("\(gadgets)/\($0)/UDC") }.filter { !$0.isEmpty })
        return SysFS.list("/sys/class/udc").sorted().filter { !taken.contains($0) }
    }

    /// Where dummy_hcd's host side enumerated the device bound to `udc`
    /// (dummy_udc.N pairs with dummy_hcd.N): /dev/bus/usb/BBB/DDD, once it has.
    static func hostNode(udc: String) -> String? {
        guard udc.hasPrefix("dummy_udc.") else { return nil }
        let host = "/sys/devices/platform/dummy_hcd.\(udc.dropFirst("dummy_udc.".count))"
        for bus in SysFS.list(host) where bus.hasPrefix("usb") {
            let busDir = "\(host)/\(bus)"
            for child in SysFS.list(busDir) where child.hasSuffix("-1") && !child.contains(":") {
                guard let b = SysFS.read("\(busDir)/\(child)/busnum").flatMap({ Int($0) }),
                      let d = SysFS.read("\(busDir)/\(child)/devnum").flatMap({ Int($0) }) else { continue }
                return "/dev/bus/usb/\(threeDigits(b))/\(threeDigits(d))"
            }
        }
        return nil
    }

    private static func threeDigits(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }
}

/// Small text files and directories of sysfs and configfs.
enum SysFS {
    static func error(_ what: String) -> SimulatorError { .config("\(what): \(String(cString: strerror(errno)))") }

    static func write(_ path: String, _ text: String) throws(SimulatorError) {
        try write(path, Array(text.utf8))
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws(SimulatorError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw error("open \(path)") }
        defer { close(fd) }
        let n = bytes.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw error("write \(path)") }
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBufferPointer { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        var text = String(decoding: buffer[0..<n], as: UTF8.self)
        while let last = text.last, last == "\n" || last == " " { text.removeLast() }
        return text
    }

    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func makeDirectory(_ path: String) throws(SimulatorError) {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw error("mkdir \(path)") }
    }

    static func makeDirectories(_ path: String) throws(SimulatorError) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/\(part)"
            try makeDirectory(prefix)
        }
    }
}
