import CCIDDriver
import ReaderQuirks
import CCID
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

    /// Opens (or shares) the reader behind `name` for `lun`; `connect` reaches the device if it is not open yet.
    func open(lun: UInt, name: DeviceName, displayName: String, timeouts: ExchangeTimeouts,
              connect: () throws(OpenError) -> any CCIDTransport) throws(OpenError) -> Entry {
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
        let transport = try connect()
        let quirks = AppliedQuirks(for: transport.identity, off: Settings.quirksOff)
        let reader = Reader(transport: transport, timeouts: timeouts, quirks: quirks, log: { Log.error("\(displayName): \($0)") })
        guard slot < reader.slotCount else {
            reader.close()
            throw .badSlot(slot)
        }
        do throws(DriverError) { try reader.startUp() } catch {
            reader.close()
            if error == .noDevice { throw .gone("\(error)") }
            throw .connect("\(displayName): \(error)")
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
        last?.close(poweringOff: true)
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
