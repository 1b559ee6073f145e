import CCIDDriver
import Relay
import USBTransport
import CCID
import ThreadSupport
#if canImport(Glibc)
import Glibc
#endif

/// pcscd's LUNs and the readers behind them. A LUN is (reader index << 16 |
/// slot); every slot of a multi-slot reader gets its own LUN and shares one
/// `Reader`, released when its last slot closes.
final class Registry: @unchecked Sendable {
    struct Entry {
        let reader: Reader
        let slot: Int
        let key: DeviceKey
        /// A USB reader: pcscd's udev hotplug sees it go.
        let hotplugged: Bool
        var removed = false
    }

    struct DeviceKey: Hashable {
        let readerIndex: UInt
        let name: String
    }

    private let lock = Lock()
    private var luns: [UInt: Entry] = [:]
    private var devices: [DeviceKey: (reader: Reader, users: Int)] = [:]

    static func slot(of lun: UInt) -> Int { Int(lun & 0xFFFF) }
    static func readerIndex(of lun: UInt) -> UInt { lun >> 16 }

    func lookup(_ lun: UInt) -> Entry? { lock.withLock { luns[lun] } }

    enum OpenError: Error { case inUse, badSlot(Int), connect(String), gone(String) }

    /// Opens (or shares) the reader behind `name` for `lun`.
    func open(lun: UInt, name: DeviceName, displayName: String, timeouts: ExchangeTimeouts) throws(OpenError) -> Entry {
        let key = DeviceKey(readerIndex: Registry.readerIndex(of: lun), name: displayName)
        let slot = Registry.slot(of: lun)
        let existing: Reader? = lock.withLock {
            guard luns[lun] == nil, let d = devices[key] else { return nil }
            devices[key] = (d.reader, d.users + 1)
            return d.reader
        }
        if let reader = existing {
            guard slot < reader.slotCount else {
                release(key)
                throw .badSlot(slot)
            }
            let entry = Entry(reader: reader, slot: slot, key: key, hotplugged: name.isUSB)
            lock.withLock { luns[lun] = entry }
            return entry
        }
        if lock.withLock({ luns[lun] != nil }) { throw .inUse }
        let transport: any CCIDTransport
        switch name {
        case .relay(let path):
            do throws(RelayConnectError) {
                transport = try RelayClientTransport(path: path, deadline: .after(.seconds(5)), spinBudget: Settings.relaySpin,
                                                     log: { Log.error($0) })
            } catch {
                throw .connect("\(path): \(error)")
            }
        case .usb(let usb) where Settings.usbWorkers:
            transport = try WorkerConnection.connect(usb)
        case .usb(let usb):
            do throws(USBOpenError) {
                transport = try USBTransport(name: usb, log: { Log.error($0) })
            } catch {
                if case .notFound = error { throw .gone("\(error)") }
                throw .connect("\(usb): \(error)")
            }
        }
        let reader = Reader(transport: transport, timeouts: timeouts, log: { Log.error("\(displayName): \($0)") })
        guard slot < reader.slotCount else {
            reader.close()
            throw .badSlot(slot)
        }
        let entry = Entry(reader: reader, slot: slot, key: key, hotplugged: name.isUSB)
        lock.withLock {
            devices[key] = (reader, 1)
            luns[lun] = entry
        }
        return entry
    }

    /// Forgets `lun`; the device closes with its last LUN.
    func close(lun: UInt) -> Bool {
        guard let entry = lock.withLock({ luns.removeValue(forKey: lun) }) else { return false }
        entry.reader.stopWaitingForCardEvent(slot: entry.slot)
        release(entry.key)
        return true
    }

    private func release(_ key: DeviceKey) {
        let last: Reader? = lock.withLock {
            guard let d = devices[key] else { return nil }
            if d.users <= 1 {
                devices.removeValue(forKey: key)
                return d.reader
            }
            devices[key] = (d.reader, d.users - 1)
            return nil
        }
        last?.close()
    }

    /// TAG_IFD_DEVICE_REMOVED: the device is gone, for every slot it has (pcscd
    /// says so one slot at a time); fail fast until closed.
    func markRemoved(lun: UInt) {
        let reader: Reader? = lock.withLock {
            guard let reader = luns[lun]?.reader else { return nil }
            for (other, entry) in luns where entry.reader === reader { luns[other]?.removed = true }
            return reader
        }
        reader?.close()
    }
}

let registry = Registry()

/// The driver's settings (Configuration: Info.plist, then pcscd's environment)
/// as the registry applies them.
enum Settings {
    /// The cap on any one exchange: ifdDriverOptions max-exchange-ms, SWIFTCCID_MAX_EXCHANGE_MS.
    static var timeouts: ExchangeTimeouts {
        var t = ExchangeTimeouts()
        t.maximum = .milliseconds(Configuration.current.maxExchangeMs)
        return t
    }

    /// SWIFTCCID_RELAY_SPIN_US: how long a relay exchange polls for its reply
    /// before sleeping, while the peer answers that fast (default 50, 0 = never, at most 1000).
    static var relaySpin: Duration {
        guard let raw = getenv("SWIFTCCID_RELAY_SPIN_US"), let us = Int64(String(cString: raw)), us >= 0 else {
            return .microseconds(50)
        }
        return .microseconds(min(us, 1000))
    }

    static var relayDirectory: String? { getenv("SWIFTCCID_RELAY_DIR").map { String(cString: $0) } }

    /// Worker mode: USB readers are reached through their attach worker's
    /// socket (ccid-attach, started by udev and systemd) in
    /// SWIFTCCID_RELAY_DIR (default /run/swiftccid), not opened in pcscd.
    /// ifdDriverOptions usb-workers=auto|yes|no, SWIFTCCID_USB_WORKERS; auto
    /// follows the switch file the worker unit also tests (ConditionPathExists).
    static var usbWorkers: Bool {
        Configuration.current.workersOn { access("/etc/swiftccid/usb-workers", F_OK) == 0 }
    }

    /// How long pcscd's hotplug waits for systemd to bind a worker's socket,
    /// and then for the worker (started with it) to answer on it.
    static let socketAppears: Duration = .seconds(3)
    static let workerStartup: Duration = .seconds(5)
}
