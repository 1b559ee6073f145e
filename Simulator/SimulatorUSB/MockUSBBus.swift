#if canImport(Glibc)
import Glibc
#endif
import CCID
import CUSBMock
import SimulatorCore
import ThreadSupport

/// A umockdev testbed on which simulated readers appear as USB devices
/// (bus 1, a new address per plug, as a real hub numbers them). Processes
/// started with `environment` see them through libusb and libudev; this
/// process must itself run under umockdev's preload for its uevents to
/// reach them (`MockUSBBus.preloadEnvironment`).
/// Unchecked: umockdev's testbed and device handles (OpaquePointer) are not
/// Sendable in Swift; `lock` guards the table that holds them.
public final class MockUSBBus: ReaderBus, @unchecked Sendable {
    private let bed: OpaquePointer
    public let root: String
    private let lock = Lock()
    private var nextAddress = 2
    private var plugged: [ObjectIdentifier: (device: OpaquePointer, bridge: USBDeviceBridge)] = [:]
    private let log: @Sendable (String) -> Void

    public static let preloadLibrary = "libumockdev-preload.so.0"

    /// Whether this process runs with umockdev's preload library.
    public static var underPreload: Bool {
        guard let p = getenv("LD_PRELOAD") else { return false }
        return String(cString: p).contains("libumockdev-preload")
    }

    public init(log: @escaping @Sendable (String) -> Void) throws(SimulatorError) {
        var error: UnsafeMutablePointer<CChar>? = nil
        guard let bed = usbmock_bed_new(&error) else { throw .config(Self.take(error) ?? "cannot create a umockdev testbed") }
        self.bed = bed
        root = String(cString: usbmock_bed_root(bed))
        self.log = log
    }

    private static func take(_ s: UnsafeMutablePointer<CChar>?) -> String? {
        guard let s else { return nil }
        defer { usbmock_free_string(s) }
        return String(cString: s)
    }

    public func plug(_ reader: SimulatedReader) throws(SimulatorError) -> String {
        let identity: DeviceIdentity
        do throws(USBDescriptorError) { identity = try reader.descriptors.identity() } catch {
            throw .config("\(reader.name): \(error)")
        }
        let address: Int = lock.withLock {
            defer { nextAddress = nextAddress >= 127 ? 2 : nextAddress + 1 }
            return nextAddress
        }
        let bridge = USBDeviceBridge(reader: reader, endpoints: identity.endpoints)
        let context = Unmanaged.passRetained(bridge).toOpaque()
        var callbacks = usbmock_callbacks()
        callbacks.context = context
        callbacks.data_out = { context, endpoint, data, length in
            guard let context else { return }
            let bridge = Unmanaged<USBDeviceBridge>.fromOpaque(context).takeUnretainedValue()
            let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
            bridge.dataOut(endpoint: endpoint, bytes)
        }
        callbacks.control = { context, setup, data, capacity in
            guard let context, let setup else { return -1 }
            let bridge = Unmanaged<USBDeviceBridge>.fromOpaque(context).takeUnretainedValue()
            let header = Array(UnsafeBufferPointer(start: setup, count: 8))
            let out = header[0] & 0x80 == 0 && capacity > 0 ? data.map { Array(UnsafeBufferPointer(start: $0, count: capacity)) } ?? [] : []
            guard let answer = bridge.control(setup: header, outData: out, capacity: capacity) else { return -1 }
            let n = min(answer.count, capacity)
            if n > 0, let data { answer.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: n) } }
            return Int32(n)
        }
        callbacks.released = { context in
            guard let context else { return }
            Unmanaged<USBDeviceBridge>.fromOpaque(context).takeUnretainedValue().reader.hostReleased()
        }
        let all = reader.descriptors.device + reader.descriptors.configuration
        var error: UnsafeMutablePointer<CChar>? = nil
        let device = all.withUnsafeBufferPointer { buffer in
            usbmock_plug(bed, 1, Int32(address), buffer.baseAddress, buffer.count, identity.interfaceNumber,
                         identity.manufacturer, identity.product, identity.serialNumber, callbacks, &error)
        }
        guard let device else {
            Unmanaged<USBDeviceBridge>.fromOpaque(context).release()
            throw .config("\(reader.name): \(Self.take(error) ?? "cannot plug")")
        }
        let endpointDevice = UnsafeSendablePointer(device)
        bridge.attach { endpoint, bytes in
            bytes.withUnsafeBufferPointer { usbmock_deliver(endpointDevice.pointer, endpoint, $0.baseAddress, $0.count) }
        }
        lock.withLock { plugged[ObjectIdentifier(reader)] = (device, bridge) }
        let node = String(cString: usbmock_device_node(device))
        log("\(reader.name) plugged in at \(node)")
        return node
    }

    /// The bridge stays allocated: a host may still hold the node and its
    /// late ioctls must find a live handler (they get ENODEV).
    public func unplug(_ reader: SimulatedReader) {
        guard let entry = lock.withLock({ plugged.removeValue(forKey: ObjectIdentifier(reader)) }) else { return }
        entry.bridge.detach()
        usbmock_unplug(entry.device)
        log("\(reader.name) unplugged")
    }

    /// A system suspend and resume with USB persist off: the device's handles go
    /// stale for `stale`, then the kernel's re-enumeration: the device is
    /// removed and comes back at a new address, its cards unpowered.
    public func suspendAndResume(_ reader: SimulatedReader, stale: Duration) throws(SimulatorError) -> String {
        guard let entry = lock.withLock({ plugged.removeValue(forKey: ObjectIdentifier(reader)) }) else {
            throw .config("\(reader.name) is not plugged in")
        }
        usbmock_go_stale(entry.device)
        log("\(reader.name) suspended: its handles are stale")
        Deadline.after(stale).sleepUntil()
        entry.bridge.detach()
        usbmock_unplug(entry.device)
        reader.hostReleased()
        return try plug(reader)
    }

    public func stop() {
        for (_, entry) in lock.withLock({ plugged }) { usbmock_unplug(entry.device); entry.bridge.detach() }
        lock.withLock { plugged = [:] }
    }
}

/// usbmock's device handle, safe to use from any thread (the C side locks).
private struct UnsafeSendablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
