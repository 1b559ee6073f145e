import CCIDDriver
import Relay
import USBTransport
import CCID
import Synchronization
import ThreadSupport
#if canImport(Glibc)
import Glibc
#endif

/// pcscd's LUNs and the readers behind them. A LUN is (reader index << 16 |
/// slot); every slot of a multi-slot reader gets its own LUN and shares one
/// `Reader`, released when its last slot closes.
final class Registry: Sendable {
    struct Entry: Sendable {
        let reader: Reader
        let slot: Int
        let key: DeviceKey
        /// A USB reader: pcscd's udev hotplug sees it go.
        let hotplugged: Bool
        var removed = false
    }

    struct DeviceKey: Hashable, Sendable {
        let readerIndex: UInt
        let name: String
    }

    private struct State: Sendable {
        var luns: [UInt: Entry] = [:]
        var devices: [DeviceKey: (reader: Reader, users: Int)] = [:]
    }
    private let state = Mutex(State())

    static func slot(of lun: UInt) -> Int { Int(lun & 0xFFFF) }
    static func readerIndex(of lun: UInt) -> UInt { lun >> 16 }

    func lookup(_ lun: UInt) -> Entry? { state.withLock { $0.luns[lun] } }

    enum OpenError: Error { case inUse, badSlot(Int), connect(String), gone(String) }

    /// Opens (or shares) the reader behind `name` for `lun`.
    func open(lun: UInt, name: DeviceName, displayName: String, timeouts: ExchangeTimeouts) throws(OpenError) -> Entry {
        let key = DeviceKey(readerIndex: Registry.readerIndex(of: lun), name: displayName)
        let slot = Registry.slot(of: lun)
        let existing: Reader? = state.withLock { s in
            guard s.luns[lun] == nil, let d = s.devices[key] else { return nil }
            s.devices[key] = (d.reader, d.users + 1)
            return d.reader
        }
        if let reader = existing {
            guard slot < reader.slotCount else {
                release(key)
                throw .badSlot(slot)
            }
            let entry = Entry(reader: reader, slot: slot, key: key, hotplugged: name.isUSB)
            state.withLock { $0.luns[lun] = entry }
            return entry
        }
        if state.withLock({ $0.luns[lun] != nil }) { throw .inUse }
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
        state.withLock { s in
            s.devices[key] = (reader, 1)
            s.luns[lun] = entry
        }
        return entry
    }

    /// Forgets `lun`; the device closes with its last LUN.
    func close(lun: UInt) -> Bool {
        guard let entry = state.withLock({ $0.luns.removeValue(forKey: lun) }) else { return false }
        entry.reader.stopWaitingForCardEvent(slot: entry.slot)
        release(entry.key)
        return true
    }

    private func release(_ key: DeviceKey) {
        let last: Reader? = state.withLock { s in
            guard let d = s.devices[key] else { return nil }
            if d.users <= 1 {
                s.devices.removeValue(forKey: key)
                return d.reader
            }
            s.devices[key] = (d.reader, d.users - 1)
            return nil
        }
        last?.close()
    }

    /// TAG_IFD_DEVICE_REMOVED: the device is gone, for every slot it has (pcscd
    /// says so one slot at a time); fail fast until closed.
    func markRemoved(lun: UInt) {
        let reader: Reader? = state.withLock { s in
            guard let reader = s.luns[lun]?.reader else { return nil }
            for (other, entry) in s.luns where entry.reader === reader { s.luns[other]?.removed = true }
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
