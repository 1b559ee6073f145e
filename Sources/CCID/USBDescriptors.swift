/// The USB descriptors of a CCID device: what a USB stack reads at
/// enumeration, and what the relay hello carries. Building them is for the
/// device side (simulator); parsing them finds the CCID interface.
public struct USBDescriptorSet: Equatable, Sendable {
    /// The 18-byte device descriptor.
    public var device: [UInt8]
    /// The whole configuration (wTotalLength bytes).
    public var configuration: [UInt8]
    /// String descriptors by index, as text.
    public var strings: [UInt8: String]

    public init(device: [UInt8], configuration: [UInt8], strings: [UInt8: String]) {
        self.device = device
        self.configuration = configuration
        self.strings = strings
    }

    public enum Endpoint {
        public static let bulkOut: UInt8 = 0x01
        public static let bulkIn: UInt8 = 0x82
        public static let interruptIn: UInt8 = 0x83
    }

    static let manufacturerIndex: UInt8 = 1, productIndex: UInt8 = 2, serialIndex: UInt8 = 3

    /// How a device lays out its CCID interface: what real readers vary.
    public struct Layout: Equatable, Sendable {
        /// 0x0B, or 0xFF for the readers that predate the CCID class.
        public var interfaceClass: UInt8
        /// Some readers have none: the host then polls slot status.
        public var interruptEndpoint: Bool
        /// Some readers put the class descriptor after their endpoints.
        public var descriptorAfterEndpoints: Bool
        /// Composite tokens (FIDO, OTP and CCID in one device): HID interfaces
        /// numbered before the CCID one, and after it.
        public var hidInterfacesBefore: UInt8
        public var hidInterfacesAfter: UInt8
        /// An ICCD token: bInterfaceProtocol 1 or 2, and no bulk endpoints.
        public var iccd: ICCDVersion?

        public init(interfaceClass: UInt8 = 0x0B, interruptEndpoint: Bool = true, descriptorAfterEndpoints: Bool = false,
                    hidInterfacesBefore: UInt8 = 0, hidInterfacesAfter: UInt8 = 0, iccd: ICCDVersion? = nil) {
            self.interfaceClass = interfaceClass
            self.interruptEndpoint = interruptEndpoint
            self.descriptorAfterEndpoints = descriptorAfterEndpoints
            self.hidInterfacesBefore = hidInterfacesBefore
            self.hidInterfacesAfter = hidInterfacesAfter
            self.iccd = iccd
        }

        /// The CCID interface's number.
        public var ccidInterface: UInt8 { hidInterfacesBefore }
    }

    /// The report descriptor of a composite token's HID interfaces: a FIDO
    /// U2F/CTAPHID one (usage page 0xF1D0), 64-byte reports each way.
    public static let fidoReportDescriptor: [UInt8] = [
        0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01,
        0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02,
        0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02,
        0xC0,
    ]

    /// A HID interface of a composite token: its interrupt-in endpoint is 0x84 + `ordinal`.
    static func hidInterface(number: UInt8, ordinal: UInt8) -> [UInt8] {
        var out: [UInt8] = [9, 0x04, number, 0, 1, 0x03, 0, 0, 0]
        out += [9, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22]
        out.appendLE(UInt16(fidoReportDescriptor.count))
        return out + endpoint(0x84 + ordinal, attributes: 0x03, maxPacket: 64, interval: 2)
    }

    /// A CCID device with bulk-out, bulk-in and (usually) interrupt-in
    /// endpoints, or an ICCD token with at most the interrupt one; a composite
    /// token's HID interfaces around it, if the layout has them.
    public static func ccidDevice(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16,
                                  manufacturer: String, product: String, serialNumber: String,
                                  classDescriptor: ClassDescriptor, layout: Layout = Layout()) -> USBDescriptorSet {
        var dev: [UInt8] = [18, 0x01]
        dev.appendLE(UInt16(0x0200))
        dev += [0, 0, 0, 64]
        dev.appendLE(vendorID)
        dev.appendLE(productID)
        dev.appendLE(bcdDevice)
        dev += [manufacturerIndex, productIndex, serialIndex, 1]

        var endpoints: [UInt8] = []
        if layout.iccd == nil {
            endpoints += endpoint(Endpoint.bulkOut, attributes: 0x02, maxPacket: 64, interval: 0)
            endpoints += endpoint(Endpoint.bulkIn, attributes: 0x02, maxPacket: 64, interval: 0)
        }
        if layout.interruptEndpoint { endpoints += endpoint(Endpoint.interruptIn, attributes: 0x03, maxPacket: 8, interval: 16) }
        var body: [UInt8] = []
        for i in 0..<layout.hidInterfacesBefore { body += hidInterface(number: i, ordinal: i) }
        body += [9, 0x04, layout.ccidInterface, 0, UInt8(endpoints.count / 7), layout.interfaceClass, 0,
                 layout.iccd?.rawValue ?? 0, 0]
        body += layout.descriptorAfterEndpoints ? endpoints + classDescriptor.encoded() : classDescriptor.encoded() + endpoints
        for i in 0..<layout.hidInterfacesAfter {
            body += hidInterface(number: layout.ccidInterface + 1 + i, ordinal: layout.hidInterfacesBefore + i)
        }
        var config: [UInt8] = [9, 0x02]
        config.appendLE(UInt16(9 + body.count))
        config += [1 + layout.hidInterfacesBefore + layout.hidInterfacesAfter, 1, 0, 0x80, 50]
        config += body
        return USBDescriptorSet(device: dev, configuration: config,
                                strings: [manufacturerIndex: manufacturer, productIndex: product, serialIndex: serialNumber])
    }

    static func endpoint(_ address: UInt8, attributes: UInt8, maxPacket: UInt16, interval: UInt8) -> [UInt8] {
        var e: [UInt8] = [7, 0x05, address, attributes]
        e.appendLE(maxPacket)
        e.append(interval)
        return e
    }

    /// Finds the CCID interface: class 0x0B, or vendor class 0xFF carrying a
    /// 54-byte class descriptor; the class descriptor may follow the interface
    /// or (some readers) its endpoints. `interface` picks one interface of a
    /// composite device (pcscd names it); otherwise the first CCID one is used.
    /// An interface of protocol 1 or 2 with no bulk endpoints is an ICCD token;
    /// with bulk endpoints it is driven as the CCID reader it then is.
    public func identity(interface wanted: UInt8? = nil) throws(USBDescriptorError) -> DeviceIdentity {
        var d = ByteReader(device)
        guard device.count >= 18, d.u8() == 18, d.u8() == 0x01 else { throw .badDeviceDescriptor }
        _ = d.take(6)
        guard let vid = d.u16le(), let pid = d.u16le(), let bcd = d.u16le(),
              let iMan = d.u8(), let iProd = d.u8(), let iSerial = d.u8() else { throw .badDeviceDescriptor }

        /// The interface being read; it becomes the answer once it has all it needs.
        struct Candidate {
            var number: UInt8
            var interfaceClass: UInt8
            var interfaceProtocol: UInt8
            var classDescriptor: ClassDescriptor?
            var bulkIn: (address: UInt8, packet: Int)?
            var bulkOut: UInt8?
            var interruptIn: UInt8?
            var hasBulk: Bool { bulkIn != nil && bulkOut != nil }
            var iccd: ICCDVersion? { hasBulk || bulkIn != nil || bulkOut != nil ? nil : ICCDVersion(rawValue: interfaceProtocol) }
            var usable: Bool { classDescriptor != nil && (hasBulk || iccd != nil) }
        }
        var current: Candidate? = nil
        var found: Candidate? = nil
        var offset = 0
        while offset < configuration.count, found == nil || current != nil {
            let length = Int(configuration[offset])
            guard length >= 2, offset + length <= configuration.count else { throw .badConfiguration(offset: offset) }
            let type = configuration[offset + 1]
            let desc = configuration[offset..<offset + length]
            let at = desc.startIndex
            switch type {
            case 0x04 where length >= 9:
                if let c = current, c.usable, found == nil { found = c }
                current = nil
                let number = desc[at + 2], cls = desc[at + 5], alternate = desc[at + 3]
                if found == nil, alternate == 0, cls == 0x0B || cls == 0xFF, wanted == nil || wanted == number {
                    current = Candidate(number: number, interfaceClass: cls, interfaceProtocol: desc[at + 7])
                }
            case 0x21, 0xFF:
                if length == ClassDescriptor.length, current != nil, current?.classDescriptor == nil {
                    current?.classDescriptor = try? ClassDescriptor(decoding: desc)
                }
            case 0x05 where length >= 7 && current != nil:
                let address = desc[at + 2], kind = desc[at + 3] & 0x03
                let packet = Int(desc[at + 4]) | Int(desc[at + 5] & 0x07) << 8
                switch (kind, address & 0x80 != 0) {
                case (0x02, true) where current?.bulkIn == nil: current?.bulkIn = (address, max(packet, 8))
                case (0x02, false) where current?.bulkOut == nil: current?.bulkOut = address
                case (0x03, true) where current?.interruptIn == nil: current?.interruptIn = address
                default: break
                }
            default: break
            }
            offset += length
        }
        if found == nil, let c = current, c.usable { found = c }
        guard let ccid = found, let descriptor = ccid.classDescriptor else { throw .noCCIDInterface }
        return DeviceIdentity(vendorID: vid, productID: pid, bcdDevice: bcd,
                              manufacturer: strings[iMan] ?? "", product: strings[iProd] ?? "",
                              serialNumber: strings[iSerial] ?? "", interfaceNumber: ccid.number,
                              classDescriptor: descriptor,
                              endpoints: CCIDEndpoints(bulkOut: ccid.bulkOut ?? 0, bulkIn: ccid.bulkIn?.address ?? 0,
                                                       interruptIn: ccid.interruptIn, bulkInPacketSize: ccid.bulkIn?.packet ?? 64),
                              iccd: ccid.iccd)
    }
}

public enum USBDescriptorError: Error, Equatable, Sendable, CustomStringConvertible {
    case badDeviceDescriptor
    case badConfiguration(offset: Int)
    case noCCIDInterface

    public var description: String {
        switch self {
        case .badDeviceDescriptor: "malformed USB device descriptor"
        case .badConfiguration(let o): "malformed USB configuration descriptor at byte \(o)"
        case .noCCIDInterface: "no CCID interface with a 54-byte class descriptor and bulk endpoints (nor an ICCD one without)"
        }
    }
}
