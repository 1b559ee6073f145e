import Relay
import ThreadSupport
import USBTransport
#if canImport(Glibc)
import Glibc
#endif

/// The driver's side of worker mode: the connection to the attach worker
/// that owns a USB reader (swiftccid-attach@BBB-DDD).
enum WorkerConnection {
    /// Connects to the worker of `usb` and reads its hello.
    ///
    /// systemd binds the worker's socket (swiftccid-attach@.socket) on the same
    /// udev event that brings pcscd here, and may not have finished: the file
    /// may not exist yet, exist before listen() (ECONNREFUSED), or exist before
    /// systemd gives it its group (EACCES for a pcscd running as its own user).
    /// Each of those is retried for a moment. Once connected, the connection
    /// queues there until the worker serves; the handshake's deadline covers
    /// the worker's start.
    static func connect(_ usb: USBDeviceName) throws(Registry.OpenError) -> RelayClientTransport {
        let path = WorkerSocket.path(bus: usb.bus, address: usb.address,
                                     directory: Settings.relayDirectory ?? WorkerSocket.defaultDirectory)
        let unit = "swiftccid-attach@\(WorkerSocket.baseName(bus: usb.bus, address: usb.address).dropFirst(4))"
        let appears = Deadline.after(Settings.socketAppears)
        while true {
            // Unplugged meanwhile: fail now. pcscd's hotplug thread waits for us, and
            // while it does the next device on the same port takes this one's sysfs path.
            if access(usb.devicePath, F_OK) != 0 { throw .gone("\(usb): unplugged before its attach worker served") }
            do throws(RelayConnectError) {
                return try RelayClientTransport(path: path, deadline: .after(Settings.workerStartup),
                                                spinBudget: Settings.relaySpin, log: { Log.error($0) })
            } catch {
                if case .socket(let e) = error, Self.settling.contains(e.errno), !appears.hasPassed {
                    usleep(10_000)
                    continue
                }
                if case .socket(let e) = error, e.errno == ENOENT {
                    throw .connect("\(usb): no attach worker socket at \(path); is worker mode on (/etc/swiftccid/usb-workers) and \(unit).socket active?")
                }
                throw .connect("\(usb): attach worker at \(path): \(error); see \(unit).service")
            }
        }
    }

    /// What connect() answers while systemd is still setting the socket up.
    private static let settling: Set<Int32> = [ENOENT, ECONNREFUSED, EACCES]
}
