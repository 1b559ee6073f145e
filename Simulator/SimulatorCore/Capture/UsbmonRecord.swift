import CCID

/// One Linux usbmon event as pcap stores it for LINKTYPE_USB_LINUX_MMAPPED
/// (220): the kernel's 64-byte `struct mon_bin_hdr`, host byte order (little
/// endian here), then the captured data. Encoded here only.
struct UsbmonRecord: Equatable, Sendable {
    enum Event: UInt8 { case submit = 0x53, complete = 0x43 }   // 'S', 'C'
    enum Transfer: UInt8 { case interrupt = 1, control = 2, bulk = 3 }

    var id: UInt64
    var event: Event
    var transfer: Transfer
    /// With 0x80 for IN.
    var endpoint: UInt8
    var device: UInt8
    var bus: UInt16 = 1
    /// Control submissions: the SETUP packet.
    var setup: [UInt8]? = nil
    var data: [UInt8] = []
    /// The URB's length: what is sent, or what may come back.
    var length: Int
    var seconds: Int64
    var microseconds: Int32

    /// -EINPROGRESS: a submission is under way; completions are done (0).
    var status: Int32 { event == .submit ? -115 : 0 }

    static let headerLength = 64

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerLength + data.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: id >> (8 * UInt64(i)))) }
        out += [event.rawValue, transfer.rawValue, endpoint, device]
        out.appendLE(bus)
        // flag_setup: 0 when a SETUP packet is there, '-' when not; flag_data: 0 when data is there.
        out.append(setup == nil ? 0x2D : 0)
        out.append(data.isEmpty ? (endpoint & 0x80 != 0 ? 0x3C : 0x3E) : 0)
        let sec = UInt64(bitPattern: seconds)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: sec >> (8 * UInt64(i)))) }
        out.appendLE(UInt32(bitPattern: microseconds))
        out.appendLE(UInt32(bitPattern: status))
        out.appendLE(UInt32(clamping: length))
        out.appendLE(UInt32(clamping: data.count))
        out += (setup ?? []).prefix(8) + [UInt8](repeating: 0, count: 8 - min(8, setup?.count ?? 0))
        // interval (interrupt endpoints poll every 8 ms here), start_frame, xfer_flags, ndesc.
        out.appendLE(UInt32(transfer == .interrupt ? 8 : 0))
        out.appendLE(UInt32(0))
        out.appendLE(UInt32(0))
        out.appendLE(UInt32(0))
        return out + data
    }
}

/// The pcap container: a global header, then records with their own header.
enum PcapFormat {
    static let linkTypeUSBLinuxMMapped: UInt32 = 220
    /// Room for a 65,554-byte CCID message with its usbmon header.
    static let snapLength: UInt32 = 0x40000

    static func fileHeader() -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE(UInt32(0xA1B2_C3D4))
        out.appendLE(UInt16(2))
        out.appendLE(UInt16(4))
        out.appendLE(UInt32(0))         // thiszone
        out.appendLE(UInt32(0))         // sigfigs
        out.appendLE(snapLength)
        out.appendLE(linkTypeUSBLinuxMMapped)
        return out
    }

    static func packet(_ record: UsbmonRecord) -> [UInt8] {
        let body = record.encoded()
        var out: [UInt8] = []
        out.appendLE(UInt32(truncatingIfNeeded: record.seconds))
        out.appendLE(UInt32(bitPattern: record.microseconds))
        out.appendLE(UInt32(clamping: body.count))
        out.appendLE(UInt32(clamping: body.count))
        return out + body
    }
}
