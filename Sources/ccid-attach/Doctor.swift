#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AttachWorker
import DriverSettings
import ReaderQuirks
import USBTransport

/// Explains why a reader is not in use, one finding per line.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain why a USB reader is not in use (bundle list, class, firmware, permissions, pcscd, claims, worker), "
            + "and name the quirks the driver applies to it.")
    @Argument(help: "The device: BBB-DDD (default: every USB device with a CCID interface or a listed VID:PID).")
    var device: String?
    @Option(help: "pcscd's bundle directory.") var drivers = "/usr/lib/pcsc/drivers"
    @Option(help: "Worker socket directory.") var dir = defaultSocketDirectory

    func run() throws {
        let plist = "\(drivers)/ifd-swiftccid.bundle/Contents/Info.plist"
        let listed = BundleList.load(plist)
        let quirksOff = DriverSettings(plist: readTextFile(plist, limit: 4 << 20).map(InfoPlist.strings) ?? [:],
                                       environment: { _ in nil }).quirksOff
        var devices = DeviceLookup.all()
        if let device {
            let wanted: AttachInstance
            do throws(AttachInstance.ParseError) { wanted = try AttachInstance.parse([device]) } catch {
                FileOutput.error("ccid-attach: \(error)")
                throw ExitCode(2)
            }
            devices = devices.filter { $0.bus == wanted.bus && $0.address == wanted.address }
            if devices.isEmpty { print("\(wanted.devicePath): no such USB device (unplugged, or renumbered)") }
        } else {
            devices = devices.filter { $0.hasCCIDInterface || listed?.contains(Pair($0.vendorID, $0.productID)) == true }
            if devices.isEmpty { print("no USB device with a CCID interface or a VID:PID the bundle lists") }
        }
        let pcscd = PCSCDState.current()
        for d in devices {
            let id = "\(USBDeviceName.hex(d.vendorID)):\(USBDeviceName.hex(d.productID))"
            print("\(d.devnode.isEmpty ? "bus \(d.bus) device \(d.address)" : d.devnode) \(id) \(d.product)")
            let quirks = AppliedQuirks(vendorID: d.vendorID, productID: d.productID, bcdDevice: d.bcdDevice, off: quirksOff)
            for finding in findings(d, listed: listed, quirks: quirks, pcscd: pcscd) { print("  - \(finding)") }
        }
    }

    func findings(_ d: USBDeviceProperties, listed: Set<Pair>?, quirks: AppliedQuirks, pcscd: PCSCDState) -> [String] {
        var out: [String] = []
        if let refusal = quirks.refusal, case .firmwareRefused(let firstGood) = refusal.behaviour {
            out.append("firmware \(DeviceMatch.release(d.bcdDevice)) is older than \(DeviceMatch.release(firstGood)) "
                       + "(quirk O1: \(refusal.reason)): the driver refuses the device; to use it anyway, add quirks-off=O1 "
                       + "to ifdDriverOptions in the bundle's Info.plist, or set SWIFTCCID_QUIRKS_OFF=O1 in pcscd's environment")
        }
        switch listed {
        case nil: out.append("ifd-swiftccid.bundle is not installed in \(drivers) (make install)")
        case let set?:
            if !set.contains(Pair(d.vendorID, d.productID)) {
                out.append("VID:PID \(USBDeviceName.hex(d.vendorID)):\(USBDeviceName.hex(d.productID)) is not in the bundle's Info.plist: pcscd will not give it to this driver")
            }
        }
        if !d.hasCCIDInterface {
            out.append("no CCID-class (0x0B) interface (udev: \(d.interfaces.isEmpty ? "unknown" : d.interfaces)); only vendor-class readers the list names work")
        }
        var st = stat()
        if !d.devnode.isEmpty {
            if stat(d.devnode, &st) != 0 {
                out.append("\(d.devnode): \(String(cString: strerror(errno)))")
            } else if st.st_mode & 0o060 == 0 && st.st_uid != 0 {
                out.append("\(d.devnode) is mode \(String(st.st_mode & 0o777, radix: 8)) owner \(st.st_uid): the udev rule did not apply")
            }
            let holders = processesHolding(d.devnode)
            if !holders.isEmpty { out.append("opened by: \(holders.joined(separator: ", "))") }
        }
        let socket = WorkerSocket.path(bus: d.bus, address: d.address, directory: dir)
        let workerMode = access(socket, F_OK) == 0
        switch pcscd {
        case .notRunning: out.append("pcscd is not running (it starts on demand: systemctl start pcscd.socket)")
        case .running(let started, let user):
            if let installed = mtime("\(drivers)/ifd-swiftccid.bundle/Contents/Info.plist"), installed > started {
                out.append("pcscd started before the bundle was installed or updated: restart pcscd")
            }
            // What pcscd itself must open: the worker's socket in worker mode, else the node.
            // pcscd's units drop every capability, so root counts as any owner, no more.
            if let user, workerMode, let why = user.cannotUse(socket) {
                out.append("pcscd runs as \(user) and cannot connect to \(socket): \(why); worker sockets get the group "
                           + "pcscd when that group exists at boot or daemon-reload (swiftccid-generator): "
                           + "run `systemctl daemon-reload` and replug the reader")
            } else if let user, !workerMode, !d.devnode.isEmpty, let why = user.cannotUse(d.devnode) {
                out.append("pcscd runs as \(user) and cannot open \(d.devnode): \(why); the udev rule gives the node the "
                           + "group pcscd when that group exists as the device is added: replug the reader "
                           + "(or udevadm trigger --action=add)")
            }
        }
        if workerMode { out.append("an attach worker serves it on \(socket)") }
        if out.isEmpty { out.append("nothing wrong found") }
        if let version = d.iccdVersion {
            out.append("a USB \(version) token: no bulk pipes, every exchange a class request on the control pipe (docs/iccd.md)")
        }
        for q in quirks.quirks where q != quirks.refusal { out.append("quirk \(q.id) \(q.name) applies: \(q.reason)") }
        for id in quirks.switchedOff {
            out.append("quirk \(id) matches this device but the bundle's ifdDriverOptions switch it off (quirks-off)")
        }
        return out
    }

    /// Processes with the node open, "name[pid]", from /proc/*/fd.
    func processesHolding(_ node: String) -> [String] {
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var found: [String] = []
        while let e = readdir(proc) {
            let pid = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard Int32(pid) != nil, let fds = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(fds) }
            var target = [CChar](repeating: 0, count: 256)
            while let f = readdir(fds) {
                let fd = withUnsafeBytes(of: f.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                let n = readlink("/proc/\(pid)/fd/\(fd)", &target, target.count - 1)
                guard n > 0 else { continue }
                target[n] = 0
                if String(cString: target) == node {
                    found.append("\(WorkerFiles.read("/proc/\(pid)/comm") ?? "?")[\(pid)]")
                    break
                }
            }
        }
        return found
    }

    func mtime(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mtim.tv_sec : nil
    }
}

struct Pair: Hashable {
    let vid: UInt16, pid: UInt16
    init(_ vid: UInt16, _ pid: UInt16) { self.vid = vid; self.pid = pid }
}

/// The VID/PID arrays of an installed Info.plist (our own generated file:
/// `<string>0xVVVV</string>` lines under ifdVendorID and ifdProductID).
enum BundleList {
    static func load(_ path: String) -> Set<Pair>? {
        guard let text = readTextFile(path, limit: 4 << 20) else { return nil }
        var arrays: [String: [UInt16]] = [:]
        var key: String? = nil
        for raw in text.split(separator: "\n") {
            let line = String(raw).trimmingWhitespace
            if line.hasPrefix("<key>"), line.hasSuffix("</key>") {
                key = String(line.dropFirst(5).dropLast(6))
            } else if let k = key, k == "ifdVendorID" || k == "ifdProductID", line.hasPrefix("<string>0x"), line.hasSuffix("</string>"),
                      let v = UInt16(line.dropFirst(10).dropLast(9), radix: 16) {
                arrays[k, default: []].append(v)
            }
        }
        let vids = arrays["ifdVendorID"] ?? [], pids = arrays["ifdProductID"] ?? []
        return Set(zip(vids, pids).map { Pair($0, $1) })
    }
}

/// Whether pcscd runs, since when (seconds since the epoch), and as whom.
enum PCSCDState {
    case notRunning
    case running(started: Int, user: ProcessUser?)

    static func current() -> PCSCDState {
        guard let text = WorkerFiles.read("/run/pcscd/pcscd.pid"), let pid = Int32(text), kill(pid, 0) == 0 else { return .notRunning }
        let user = ProcessUser(pid: pid)
        var st = stat()
        guard stat("/proc/\(pid)", &st) == 0 else { return .running(started: 0, user: user) }
        return .running(started: st.st_mtim.tv_sec, user: user)
    }
}

/// A process's user and groups (/proc/PID/status), and what file
/// permissions alone let it read and write.
struct ProcessUser: CustomStringConvertible {
    let uid: uid_t
    let gids: Set<gid_t>

    init?(pid: Int32) {
        guard let status = readTextFile("/proc/\(pid)/status", limit: 1 << 16) else { return nil }
        var uid: uid_t? = nil
        var gids: Set<gid_t> = []
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard let key = fields.first else { continue }
            let numbers = fields.dropFirst().compactMap { UInt32($0) }
            switch key {
            case "Uid:": uid = numbers.dropFirst().first        // effective
            case "Gid:": if let g = numbers.dropFirst().first { gids.insert(g) }
            case "Groups:": gids.formUnion(numbers)
            default: break
            }
        }
        guard let uid else { return nil }
        self.uid = uid
        self.gids = gids
    }

    var description: String {
        let name = getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "?"
        return "uid \(uid) (\(name))"
    }

    /// Why read and write access to `path` is refused, or nil if granted.
    func cannotUse(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return String(cString: strerror(errno)) }
        let mode = st.st_mode & 0o777
        let bits: mode_t = st.st_uid == uid ? 0o600 : gids.contains(st.st_gid) ? 0o060 : 0o006
        guard mode & bits != bits else { return nil }
        let group = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(st.st_gid)"
        let owner = getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(st.st_uid)"
        return "it is \(owner):\(group) mode \(String(mode, radix: 8))"
    }
}
