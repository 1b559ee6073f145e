import ThreadSupport

/// What the driver knows of a device before talking CCID to it.
public struct DeviceIdentity: Equatable, Sendable {
    public var vendorID: UInt16
    public var productID: UInt16
    public var bcdDevice: UInt16
    public var manufacturer: String
    public var product: String
    public var serialNumber: String
    public var interfaceNumber: UInt8
    public var classDescriptor: ClassDescriptor
    public var endpoints: CCIDEndpoints
    /// An ICCD token (bInterfaceProtocol 1 or 2, no bulk pipes): every exchange is a control request.
    public var iccd: ICCDVersion?
    public var hasInterruptEndpoint: Bool { endpoints.interruptIn != nil }

    public init(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16, manufacturer: String, product: String,
                serialNumber: String, interfaceNumber: UInt8, classDescriptor: ClassDescriptor,
                endpoints: CCIDEndpoints, iccd: ICCDVersion? = nil) {
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.manufacturer = manufacturer
        self.product = product
        self.serialNumber = serialNumber
        self.interfaceNumber = interfaceNumber
        self.classDescriptor = classDescriptor
        self.endpoints = endpoints
        self.iccd = iccd
    }
}

/// The addresses of a CCID interface's pipes (direction bit included); an
/// ICCD token has no bulk pipes, and says 0 for both.
public struct CCIDEndpoints: Equatable, Sendable {
    public var bulkOut: UInt8
    public var bulkIn: UInt8
    public var interruptIn: UInt8?
    /// wMaxPacketSize of bulk-in: a reply of a multiple of it may end with a zero-length packet.
    public var bulkInPacketSize: Int

    public init(bulkOut: UInt8, bulkIn: UInt8, interruptIn: UInt8?, bulkInPacketSize: Int) {
        self.bulkOut = bulkOut
        self.bulkIn = bulkIn
        self.interruptIn = interruptIn
        self.bulkInPacketSize = bulkInPacketSize
    }
}

public enum TransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The device is gone (unplugged, socket closed, handle stale).
    case noDevice
    case timeout
    /// The wait was interrupted on purpose (stop polling).
    case cancelled
    case stalled
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .noDevice: "device gone"
        case .timeout: "timed out"
        case .cancelled: "cancelled"
        case .stalled: "request stalled"
        case .protocolViolation(let why): "protocol violation: \(why)"
        }
    }
}

/// Moves CCID messages to and from one device: USB, or a relay socket.
/// Bulk messages go one at a time; the interrupt pipe is read by another thread.
public protocol CCIDTransport: AnyObject, Sendable {
    var identity: DeviceIdentity { get }
    func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError)
    func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8]
    /// Blocks until an interrupt message arrives, the deadline passes (`.timeout`)
    /// or `cancelInterruptWait()` is called (`.cancelled`).
    func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8]
    func cancelInterruptWait()
    func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8]
    /// Releases the device; later calls fail with `.noDevice`.
    func close()
}
