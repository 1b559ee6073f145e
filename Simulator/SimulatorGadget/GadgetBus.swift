#if canImport(Glibc)
import Glibc
#endif
import CCID
import SimulatorCore
import ThreadSupport

/// Simulated readers as real USB devices: each reader is a configfs gadget
/// with a FunctionFS function, bound to a free UDC (dummy_hcd's in a test VM,
/// which the same kernel then enumerates as a host). Plug binds, unplug
/// unbinds and removes the gadget.
public final class GadgetBus: ReaderBus, Sendable {
    private let mountDirectory: String
    private let plugged = Mutex<[ObjectIdentifier: (gadget: ConfigFSGadget, device: GadgetDevice)]>([:])
    private let log: @Sendable (String) -> Void

    /// `mountDirectory` holds one FunctionFS mount per reader.
    public init(mountDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.mountDirectory = mountDirectory
        self.log = log
    }

    public func plug(_ reader: SimulatedReader) throws(SimulatorError) -> String {
        let function: FunctionFS.Function
        let identity: DeviceIdentity
        do throws(FunctionFS.LayoutError) {
            function = try FunctionFS.function(fromConfiguration: reader.descriptors.configuration)
        } catch {
            throw .config("\(reader.name): \(error)")
        }
        do throws(USBDescriptorError) { identity = try reader.descriptors.identity() } catch {
            throw .config("\(reader.name): \(error)")
        }
        let name = "ccidsim\(getpid())\(reader.name)"
        let gadget = try ConfigFSGadget.create(name: name, mountDirectory: mountDirectory, profile: reader.profile,
                                               serialNumber: reader.serialNumber)
        let device: GadgetDevice
        do throws(SimulatorError) {
            device = try GadgetDevice(bridge: USBDeviceBridge(reader: reader, endpoints: identity.endpoints),
                                      function: function, mountPoint: gadget.mountPoint, log: log)
        } catch {
            gadget.remove()
            throw error
        }
        device.start()
        // Another process may take a UDC between the listing and the bind: try the next.
        var bound: String?
        for udc in ConfigFSGadget.freeUDCs() {
            device.udc = udc
            if (try? gadget.bind(udc)) != nil { bound = udc; break }
        }
        guard let udc = bound else {
            device.stop()
            gadget.remove()
            throw .config("\(reader.name): no free UDC in /sys/class/udc (load dummy_hcd with num=N for more)")
        }
        plugged.withLock { $0[ObjectIdentifier(reader)] = (gadget, device) }
        let limit = Deadline.after(.seconds(5))
        var node = ConfigFSGadget.hostNode(udc: udc)
        while node == nil && !limit.hasPassed && udc.hasPrefix("dummy_udc.") {
            usleep(20_000)
            node = ConfigFSGadget.hostNode(udc: udc)
        }
        let location = node.map { "\($0) (\(udc))" } ?? udc
        log("\(reader.name) plugged in as a gadget on \(location)")
        return location
    }

    public func unplug(_ reader: SimulatedReader) {
        guard let entry = plugged.withLock({ $0.removeValue(forKey: ObjectIdentifier(reader)) }) else { return }
        Self.tearDown(entry.gadget, entry.device)
        log("\(reader.name) unplugged")
    }

    /// On a real bus the kernel removes the device at once (no stale phase
    /// without a uevent): the gadget leaves, and after `stale` comes back.
    public func suspendAndResume(_ reader: SimulatedReader, stale: Duration) throws(SimulatorError) -> String {
        unplug(reader)
        Deadline.after(stale).sleepUntil()
        reader.hostReleased()
        return try plug(reader)
    }

    public func stop() {
        let all = plugged.withLock { p in
            defer { p = [:] }
            return p
        }
        for (_, entry) in all { Self.tearDown(entry.gadget, entry.device) }
    }

    /// Unbinding first ends the device's blocked I/O (ESHUTDOWN), so its threads
    /// can end before its files close and the tree goes.
    private static func tearDown(_ gadget: ConfigFSGadget, _ device: GadgetDevice) {
        gadget.unbind()
        device.stop()
        gadget.remove()
    }
}
