import CCID
import CLibUSB

/// libusb hands out descriptors parsed; our CCID interface finder reads the
/// bytes a device sends. These rebuild them, unknown descriptors ("extra")
/// kept where they were, so class descriptors after endpoints still count.
enum RawDescriptors {
    static func device(_ d: libusb_device_descriptor) -> [UInt8] {
        var out: [UInt8] = [18, 0x01]
        out.appendLE(d.bcdUSB)
        out += [d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol, d.bMaxPacketSize0]
        out.appendLE(d.idVendor)
        out.appendLE(d.idProduct)
        out.appendLE(d.bcdDevice)
        out += [d.iManufacturer, d.iProduct, d.iSerialNumber, d.bNumConfigurations]
        return out
    }

    static func configuration(_ c: libusb_config_descriptor) -> [UInt8] {
        var body: [UInt8] = extra(c.extra, c.extra_length)
        for i in 0..<Int(c.bNumInterfaces) {
            guard let interface = c.interface?[i], let settings = interface.altsetting else { continue }
            for a in 0..<Int(max(0, interface.num_altsetting)) {
                let s = settings[a]
                body += [9, 0x04, s.bInterfaceNumber, s.bAlternateSetting, s.bNumEndpoints,
                         s.bInterfaceClass, s.bInterfaceSubClass, s.bInterfaceProtocol, s.iInterface]
                body += extra(s.extra, s.extra_length)
                for e in 0..<Int(s.bNumEndpoints) {
                    guard let endpoint = s.endpoint?[e] else { continue }
                    body += [7, 0x05, endpoint.bEndpointAddress, endpoint.bmAttributes]
                    body.appendLE(endpoint.wMaxPacketSize)
                    body.append(endpoint.bInterval)
                    body += extra(endpoint.extra, endpoint.extra_length)
                }
            }
        }
        var out: [UInt8] = [9, 0x02]
        out.appendLE(UInt16(clamping: 9 + body.count))
        out += [c.bNumInterfaces, c.bConfigurationValue, c.iConfiguration, c.bmAttributes, c.MaxPower]
        return out + body
    }

    private static func extra(_ p: UnsafePointer<UInt8>?, _ length: Int32) -> [UInt8] {
        guard let p, length > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: Int(length)))
    }
}
