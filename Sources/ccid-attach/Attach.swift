#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AttachWorker
import Relay
import RelayServer
import ThreadSupport
import USBTransport

/// The worker: owns one USB reader and serves it as a relay socket until the
/// device goes, or SIGTERM. systemd runs it from swiftccid-attach@.service.
struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Own one USB reader and serve it on a relay socket (what swiftccid-attach@.service runs).",
        discussion: """
            INSTANCE is the unit instance, BBB-DDD (bus and device numbers as in /dev/bus/usb/BBB/DDD), \
            or the openct form 'usb:VVVV/PPPP/RRRR usb /dev/bus/usb/BBB/DDD'. The socket is DIR/usb-BBB-DDD.sock: \
            the one systemd passes (swiftccid-attach@.socket, sd_listen_fds), else bound here (mode 0660, the \
            configured socket group). Peers: root, this user, or the socket's group. READY=1 goes to systemd once \
            it serves. SIGTERM ends it, SIGHUP re-reads the configuration; it also ends when the device goes.
            """)

    @Argument(parsing: .remaining, help: "The device: BBB-DDD, or the openct form.")
    var instance: [String] = []

    @Option(help: "Socket directory (default: $SWIFTCCID_RELAY_DIR, else /run/swiftccid, as the driver).")
    var dir = defaultSocketDirectory
    @Option(help: "Configuration file.") var config = AttachConfig.defaultPath

    func run() throws {
        let parsed: AttachInstance
        do throws(AttachInstance.ParseError) { parsed = try AttachInstance.parse(instance) } catch {
            FileOutput.error("ccid-attach: refusing instance: \(error)")
            throw ExitCode(2)
        }
        let log = PriorityLog(tag: "ccid-attach[\(parsed.unitInstance)]")
        var settings = AttachConfig.load(path: config, warn: { log(.warning, "\(config): \($0)") })

        guard let props = DeviceLookup.find(bus: parsed.bus, address: parsed.address) else {
            try goneBeforeServing(log, "no USB device at \(parsed.devicePath)")
            return
        }
        if let vid = parsed.vendorID, let pid = parsed.productID, vid != props.vendorID || pid != props.productID {
            log(.error, "\(parsed.devicePath) is \(USBDeviceName.hex(props.vendorID)):\(USBDeviceName.hex(props.productID)), not \(USBDeviceName.hex(vid)):\(USBDeviceName.hex(pid))")
            throw ExitCode(1)
        }
        let name = USBDeviceName(vendorID: props.vendorID, productID: props.productID, bus: parsed.bus,
                                 address: parsed.address, interface: nil)
        let transport: USBTransport
        do throws(USBOpenError) { transport = try USBTransport(name: name, log: { log(.warning, $0) }) } catch {
            // Whatever libusb said, a node that is no longer there means the device went.
            if case .notFound = error {
                try goneBeforeServing(log, "\(error)")
                return
            } else if Self.vanishes(parsed.devicePath, within: .milliseconds(500)) {
                // Opening a device mid-unplug fails with LIBUSB_ERROR_IO just before its node goes.
                try goneBeforeServing(log, "\(name): \(error)")
                return
            }
            log(.error, "\(name): \(error)")
            throw ExitCode(1)
        }

        let events = EventPipe.install()
        let base = WorkerSocket.baseName(bus: parsed.bus, address: parsed.address)
        let files = WorkerFiles(directory: dir, base: base)
        let device = USBRelayDevice(transport: transport, descriptors: transport.descriptors,
                                    log: { log(.warning, $0) }, onGone: { events.post(.deviceGone) },
                                    onClient: { pid in
                                        files.writeClient(pid)
                                        log(.info, pid.map { "client pid \($0) connected" } ?? "client disconnected")
                                    })
        let passed = SystemdListen.socket(at: files.socket)
        if case .unusable(let why) = passed {
            log(.error, why)
            throw ExitCode(1)
        }
        guard mkdirAll(dir) else {
            log(.error, "cannot create \(dir): \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        // Socket-activated, systemd made the socket and gave it its group (the
        // socket unit's SocketGroup=); bound here, it gets the configured one.
        var group = passed == .none ? resolveGroup(settings.socketGroup, log: log) : socketGroup(files.socket)
        let allowed = GroupBox(group)
        let allowPeer: @Sendable (StreamSocket.PeerCredentials) -> Bool = { peer in
            peer.uid == 0 || peer.uid == geteuid() || peer.gid == allowed.value
        }
        let listener: RelayListener
        do throws(SocketError) {
            if case .socket(let fd) = passed {
                listener = try RelayListener(listening: StreamSocket(fd: fd), path: files.socket, device: device,
                                             allowPeer: allowPeer, log: { log(.warning, $0) })
            } else {
                listener = try RelayListener(path: files.socket, device: device, mode: 0o660, allowPeer: allowPeer,
                                             log: { log(.warning, $0) })
                chown(files.socket, geteuid(), group)
            }
        } catch {
            log(.error, "\(error)")
            throw ExitCode(1)
        }
        files.writePID()
        guard device.start() else {
            log(.error, "cannot start threads")
            throw ExitCode(1)
        }
        let status = "serving \(USBDeviceName.hex(props.vendorID)):\(USBDeviceName.hex(props.productID)) \(props.product) at \(parsed.devicePath) on \(files.socket)"
        SystemdNotify.send("READY=1", "STATUS=\(status)")
        log(.notice, status)

        var reloads = 0
        files.writeReloads(reloads)
        loop: while true {
            switch events.wait() {
            case .reload:
                // MONOTONIC_USEC lets systemd (Type=notify-reload) match this to its SIGHUP.
                SystemdNotify.send("RELOADING=1", "MONOTONIC_USEC=\(SystemdNotify.monotonicMicroseconds)")
                settings = AttachConfig.load(path: config, warn: { log(.warning, "\(config): \($0)") })
                if passed == .none {
                    group = resolveGroup(settings.socketGroup, log: log)
                    chown(files.socket, geteuid(), group)
                } else {
                    group = socketGroup(files.socket)
                }
                allowed.value = group
                log(.info, "configuration reloaded")
                reloads += 1
                files.writeReloads(reloads)
                SystemdNotify.send("READY=1", "STATUS=\(status)")
            case .stop:
                log(.notice, "stopping")
                break loop
            case .deviceGone:
                log(.notice, "device gone")
                break loop
            }
        }
        SystemdNotify.send("STOPPING=1", "STATUS=stopping")
        listener.stop()
        device.stop()
        // A socket systemd made is systemd's to remove (RemoveOnStop=): it stays for the next activation.
        files.removeAll(socket: passed == .none)
    }

    /// Under systemd, a device unplugged while the worker starts is the same end
    /// as one unplugged while it serves: the unit ends inactive, not failed
    /// (Type=notify wants READY=1 first). Run by hand, it is an error.
    func goneBeforeServing(_ log: PriorityLog, _ why: String) throws {
        guard SystemdNotify.underSystemd else {
            log(.error, why)
            throw ExitCode(1)
        }
        log(.notice, "\(why): device gone before it could be served")
        SystemdNotify.send("READY=1", "STATUS=device gone")
        SystemdNotify.send("STOPPING=1")
    }

    /// Whether the device node disappears within `limit` (checked every 20 ms).
    static func vanishes(_ node: String, within limit: Duration) -> Bool {
        let deadline = Deadline.after(limit)
        while access(node, F_OK) == 0 {
            if deadline.hasPassed { return false }
            usleep(20_000)
        }
        return true
    }

    /// The group systemd gave the socket it made.
    func socketGroup(_ path: String) -> gid_t {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_gid : getegid()
    }

    func resolveGroup(_ name: String?, log: PriorityLog) -> gid_t {
        guard let name else { return getegid() }
        guard let g = getgrnam(name) else {
            log(.warning, "no group '\(name)'; socket stays in group \(getegid())")
            return getegid()
        }
        return g.pointee.gr_gid
    }
}

/// The peer check reads the group the latest configuration names.
final class GroupBox: Sendable {
    private let stored: Mutex<gid_t>
    init(_ value: gid_t) { stored = Mutex(value) }
    var value: gid_t {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}

/// The driver finds workers in $SWIFTCCID_RELAY_DIR too.
var defaultSocketDirectory: String {
    getenv("SWIFTCCID_RELAY_DIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? WorkerSocket.defaultDirectory
}

func mkdirAll(_ path: String) -> Bool {
    var prefix = ""
    for part in path.split(separator: "/") {
        prefix += "/" + part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
    }
    return true
}
