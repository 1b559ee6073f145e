#if canImport(Glibc)
import Glibc
#endif
import CCID
import CLibUSB
import ThreadSupport

public enum USBOpenError: Error, Equatable, Sendable, CustomStringConvertible {
    case noLibUSB
    case notFound(USBDeviceName)
    case open(String)
    case notCCID(String)
    case claim(String)

    public var description: String {
        switch self {
        case .noLibUSB: "libusb cannot be initialised"
        case .notFound(let name): "no device \(name) (unplugged, or renumbered after suspend/resume)"
        case .open(let why): "cannot open the device: \(why)"
        case .notCCID(let why): "not a CCID device: \(why)"
        case .claim(let why): "cannot claim the CCID interface: \(why)"
        }
    }
}

/// `CCIDTransport` over libusb: the device pcscd's hotplug names, its CCID
/// interface claimed. Every transfer runs under the caller's deadline; `close`
/// cancels what is in flight and waits for libusb to give it back.
/// Unchecked: libusb device and context handles (OpaquePointer) are not
/// Sendable in Swift, though libusb is thread-safe; its own state is under locks.
public final class USBTransport: CCIDTransport, @unchecked Sendable {
    public let identity: DeviceIdentity
    /// What the device said at enumeration (a worker passes it on in its relay hello).
    public let descriptors: USBDescriptorSet
    public let name: USBDeviceName
    private let context: OpaquePointer
    private let handle: OpaquePointer
    private let bulkOut: Transfer, bulkIn: Transfer, interrupt: Transfer, controlTransfer: Transfer
    /// One user per transfer object at a time (the driver serialises bulk, but
    /// a control request may come from another thread).
    private let bulkOutLock = Lock(), bulkInLock = Lock(), interruptLock = Lock(), controlLock = Lock()
    private let inBuffer: UnsafeMutableRawBufferPointer
    private let interruptBuffer: UnsafeMutableRawBufferPointer
    private let state = ConditionLock()
    private var users = 0
    private var closed = false
    private var gone = false
    private let log: @Sendable (String) -> Void

    /// The largest bulk-in transfer: an extended APDU response (65,536 + SW)
    /// in a data block, rounded up to whole 512-byte packets.
    static let inCapacity = 66_048
    /// This device's bulk-in transfer: its largest message (dwMaxCCIDMessageLength)
    /// in whole packets, within inCapacity. A longer message (firmware that
    /// exceeds its own limit) still arrives, over several transfers; sizing
    /// the buffer to the device keeps pcscd's memory per reader low.
    private let inTransfer: Int
    static let controlCapacity = 8 + 4096

    public init(name: USBDeviceName, log: @escaping @Sendable (String) -> Void) throws(USBOpenError) {
        guard let context = LibUSB.shared() else { throw .noLibUSB }
        guard let bulkOut = Transfer(), let bulkIn = Transfer(), let interrupt = Transfer(),
              let controlTransfer = Transfer() else { throw .open("libusb_alloc_transfer failed") }
        let (handle, descriptors) = try Self.open(name, context: context)
        let identity: DeviceIdentity
        do throws(USBDescriptorError) { identity = try descriptors.identity(interface: name.interface) } catch {
            libusb_close(handle)
            throw .notCCID("\(error)")
        }
        libusb_set_auto_detach_kernel_driver(handle, 1)
        let rc = libusb_claim_interface(handle, Int32(identity.interfaceNumber))
        if rc != 0 {
            libusb_close(handle)
            // Unplugged between finding and claiming (a quick plug and unplug does it).
            if rc == LIBUSB_ERROR_NO_DEVICE.rawValue || access(name.devicePath, F_OK) != 0 { throw .notFound(name) }
            throw .claim(rc == LIBUSB_ERROR_BUSY.rawValue ? "another process has claimed it" : LibUSB.name(rc))
        }
        self.name = name
        self.context = context
        self.handle = handle
        self.identity = identity
        self.descriptors = descriptors
        self.bulkOut = bulkOut
        self.bulkIn = bulkIn
        self.interrupt = interrupt
        self.controlTransfer = controlTransfer
        self.log = log
        let packet = max(8, identity.endpoints.bulkInPacketSize)
        let wanted = min(Int(identity.classDescriptor.maxCCIDMessageLength), Self.inCapacity)
        let whole = Self.inCapacity - Self.inCapacity % packet   // 0 for a packet size no real endpoint has
        inTransfer = whole > 0 ? min(max(1, (wanted + packet - 1) / packet) * packet, whole) : Self.inCapacity
        inBuffer = .allocate(byteCount: inTransfer, alignment: 16)
        interruptBuffer = .allocate(byteCount: 64, alignment: 16)
    }

    deinit {
        close()
        // An abandoned transfer may still write here: then the buffers stay.
        if ![bulkIn, interrupt].contains(where: \.abandoned) {
            inBuffer.deallocate()
            interruptBuffer.deallocate()
        }
    }

    /// Finds the device at the named bus and address, checks it is still the
    /// device pcscd saw (VID/PID), opens it and reads its descriptors.
    private static func open(_ name: USBDeviceName, context: OpaquePointer) throws(USBOpenError) -> (OpaquePointer, USBDescriptorSet) {
        var list: UnsafeMutablePointer<OpaquePointer?>? = nil
        let count = libusb_get_device_list(context, &list)
        guard count >= 0, let list else { throw .open("libusb_get_device_list: \(LibUSB.name(Int32(clamping: count)))") }
        defer { libusb_free_device_list(list, 1) }
        var found: OpaquePointer? = nil
        for i in 0..<count {
            guard let device = list[i] else { continue }
            if libusb_get_bus_number(device) == name.bus && libusb_get_device_address(device) == name.address {
                found = device
                break
            }
        }
        guard let device = found else { throw .notFound(name) }
        var dd = libusb_device_descriptor()
        guard libusb_get_device_descriptor(device, &dd) == 0, dd.idVendor == name.vendorID, dd.idProduct == name.productID else {
            throw .notFound(name)
        }
        var config: UnsafeMutablePointer<libusb_config_descriptor>? = nil
        var rc = libusb_get_active_config_descriptor(device, &config)
        if rc != 0 { rc = libusb_get_config_descriptor(device, 0, &config) }
        guard rc == 0, let config else { throw .notCCID("no configuration descriptor (\(LibUSB.name(rc)))") }
        defer { libusb_free_config_descriptor(config) }
        var handle: OpaquePointer? = nil
        rc = libusb_open(device, &handle)
        guard rc == 0, let handle else {
            // A node that vanishes while being opened can also give LIBUSB_ERROR_IO.
            if rc == LIBUSB_ERROR_NO_DEVICE.rawValue || access(name.devicePath, F_OK) != 0 { throw .notFound(name) }
            throw rc == LIBUSB_ERROR_ACCESS.rawValue ? .open("permission denied on \(name.devicePath)") : .open(LibUSB.name(rc))
        }
        let raw = RawDescriptors.device(dd)
        let configuration = RawDescriptors.configuration(config.pointee)
        var strings: [UInt8: String] = [:]
        for index in [dd.iManufacturer, dd.iProduct, dd.iSerialNumber] where index != 0 {
            var text = [UInt8](repeating: 0, count: 256)
            let n = libusb_get_string_descriptor_ascii(handle, index, &text, Int32(text.count))
            if n > 0 { strings[index] = String(decoding: text.prefix(Int(n)), as: UTF8.self) }
        }
        return (handle, USBDescriptorSet(device: raw, configuration: configuration, strings: strings))
    }

    // MARK: CCIDTransport

    private func enter() throws(TransportError) {
        let open = state.withLock { () -> Bool in
            if closed || gone { return false }
            users += 1
            return true
        }
        if !open { throw .noDevice }
    }

    private func leave() {
        state.withLock {
            users -= 1
            state.broadcast()
        }
    }

    private func check(_ outcome: TransferOutcome, endpoint: UInt8) throws(TransportError) -> Int {
        switch outcome {
        case .completed(let length): return length
        case .timedOut: throw .timeout
        case .cancelled: throw .cancelled
        case .stalled:
            let rc = libusb_clear_halt(handle, endpoint)
            if rc == LIBUSB_ERROR_NO_DEVICE.rawValue { markGone(); throw .noDevice }
            throw .stalled
        case .noDevice:
            markGone()
            throw .noDevice
        case .failed(let why): throw .protocolViolation(why)
        }
    }

    private func markGone() {
        let first = state.withLock { () -> Bool in
            defer { gone = true }
            return !gone
        }
        if first { log("USB device \(name) is gone") }
    }

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        try enter()
        defer { leave() }
        var copy = message
        let endpoint = identity.endpoints.bulkOut
        let outcome = bulkOutLock.withLock {
            copy.withUnsafeMutableBytes { buffer in
                bulkOut.run(context: context, handle: handle, endpoint: endpoint, type: UInt8(LIBUSB_TRANSFER_TYPE_BULK.rawValue),
                            buffer: buffer, length: buffer.count, deadline: deadline)
            }
        }
        let sent = try check(outcome, endpoint: endpoint)
        guard sent == message.count else { throw .protocolViolation("device took \(sent) of \(message.count) bytes") }
    }

    /// One CCID message: transfers until a short packet ends it or the header's
    /// length is reached. A zero-length packet alone is skipped (it ends a
    /// previous message that filled whole packets).
    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        try enter()
        defer { leave() }
        let endpoint = identity.endpoints.bulkIn
        let packet = max(8, identity.endpoints.bulkInPacketSize)
        return try bulkInLock.withLock { () throws(TransportError) -> [UInt8] in
            var message: [UInt8] = []
            while true {
                let outcome = bulkIn.run(context: context, handle: handle, endpoint: endpoint,
                                         type: UInt8(LIBUSB_TRANSFER_TYPE_BULK.rawValue), buffer: inBuffer,
                                         length: inTransfer, deadline: deadline)
                let n = min(try check(outcome, endpoint: endpoint), inTransfer)
                if n == 0 && message.isEmpty { continue }
                message += UnsafeRawBufferPointer(rebasing: inBuffer[0..<n])
                if n == 0 || n % packet != 0 { break }
                if message.count >= ccidHeaderLength {
                    var r = ByteReader(message[1..<5])
                    if message.count >= ccidHeaderLength + Int(r.u32le() ?? 0) { break }
                }
                guard message.count < Self.inCapacity * 2 else {
                    throw .protocolViolation("bulk-in message longer than \(Self.inCapacity * 2) bytes")
                }
            }
            return message
        }
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        guard let endpoint = identity.endpoints.interruptIn else { throw .noDevice }
        try enter()
        defer { leave() }
        let outcome = interruptLock.withLock {
            interrupt.run(context: context, handle: handle, endpoint: endpoint,
                          type: UInt8(LIBUSB_TRANSFER_TYPE_INTERRUPT.rawValue), buffer: interruptBuffer,
                          length: interruptBuffer.count, deadline: deadline)
        }
        let n = min(try check(outcome, endpoint: endpoint), interruptBuffer.count)
        return Array(UnsafeRawBufferPointer(rebasing: interruptBuffer[0..<n]))
    }

    public func cancelInterruptWait() { interrupt.cancel() }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        let dataLength = request.isDeviceToHost ? Int(request.length) : request.data.count
        guard dataLength <= Self.controlCapacity - 8 else { throw .protocolViolation("control request too long") }
        try enter()
        defer { leave() }
        var buffer = [UInt8](repeating: 0, count: 8 + dataLength)
        buffer[0] = request.requestType
        buffer[1] = request.request
        buffer.replaceSubrange(2..<8, with: [UInt8(request.value & 0xFF), UInt8(request.value >> 8),
                                             UInt8(request.index & 0xFF), UInt8(request.index >> 8),
                                             UInt8(dataLength & 0xFF), UInt8(dataLength >> 8)])
        if !request.isDeviceToHost { buffer.replaceSubrange(8..., with: request.data) }
        let outcome = controlLock.withLock {
            buffer.withUnsafeMutableBytes { b in
                controlTransfer.run(context: context, handle: handle, endpoint: 0,
                                    type: UInt8(LIBUSB_TRANSFER_TYPE_CONTROL.rawValue), buffer: b, length: b.count,
                                    deadline: deadline)
            }
        }
        let n = min(try check(outcome, endpoint: 0), dataLength)
        return request.isDeviceToHost ? Array(buffer[8..<8 + n]) : []
    }

    /// Cancels what is in flight, waits (bounded) for those calls to return,
    /// then releases the interface. Idempotent.
    public func close() {
        let first = state.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        for t in [bulkOut, bulkIn, interrupt, controlTransfer] { t.cancel() }
        let limit = Deadline.after(Transfer.cancelGrace + .seconds(1))
        let idle = state.withLock { () -> Bool in
            while users > 0 {
                if !state.wait(until: limit), limit.hasPassed { return false }
            }
            return true
        }
        guard idle else {
            log("USB device \(name): transfers still in flight at close; handle left open")
            return
        }
        libusb_release_interface(handle, Int32(identity.interfaceNumber))
        libusb_close(handle)
    }
}
