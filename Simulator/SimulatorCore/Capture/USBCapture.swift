#if canImport(Glibc)
import Glibc
#endif
import CCID
import ThreadSupport

/// `--pcap FILE`: the CCID traffic of every simulated reader, on every bus
/// (relay, umockdev, gadget), as a Linux usbmon capture Wireshark and tshark
/// decode with their USB CCID dissector. Each reader appears as a device on
/// bus 1 that was just enumerated (its device and configuration descriptors
/// come first, so the dissector knows its interface is a CCID one).
public final class USBCapture: Sendable {
    private let fd: Int32
    private let nextID = Mutex<UInt64>(1)
    private let lock = Lock()
    let showPINs: Bool

    public init(path: String, showPINs: Bool = false) throws(SimulatorError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .config("cannot write the capture \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        self.showPINs = showPINs
        write(PcapFormat.fileHeader())
    }

    deinit { close(fd) }

    /// A reader's side of the capture, announced by its enumeration.
    func device(_ number: UInt8, descriptors: USBDescriptorSet) -> USBTrace {
        let trace = USBTrace(capture: self, device: number)
        trace.control(setup: [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, UInt8(descriptors.device.count), 0x00], answer: descriptors.device)
        let length = descriptors.configuration.count
        trace.control(setup: [0x80, 0x06, 0x00, 0x02, 0x00, 0x00, UInt8(length & 0xFF), UInt8(length >> 8)], answer: descriptors.configuration)
        return trace
    }

    /// Writes one transfer: its submission and its completion, under one URB id.
    func transfer(device: UInt8, _ transfer: UsbmonRecord.Transfer, endpoint: UInt8, setup: [UInt8]? = nil,
                  sent: [UInt8], received: [UInt8]?, length: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let id = nextID.withLock { n in
            defer { n &+= 1 }
            return n
        }
        let seconds = Int64(now.tv_sec), microseconds = Int32(now.tv_nsec / 1000)
        let submit = UsbmonRecord(id: id, event: .submit, transfer: transfer, endpoint: endpoint, device: device, setup: setup,
                                  data: sent, length: length, seconds: seconds, microseconds: microseconds)
        let complete = UsbmonRecord(id: id, event: .complete, transfer: transfer, endpoint: endpoint, device: device,
                                    data: received ?? [], length: received?.count ?? sent.count,
                                    seconds: seconds, microseconds: microseconds)
        write(PcapFormat.packet(submit) + PcapFormat.packet(complete))
    }

    private func write(_ bytes: [UInt8]) {
        lock.withLock {
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }
}

/// One reader in the capture: what crosses its endpoints.
struct USBTrace: Sendable {
    let capture: USBCapture
    let device: UInt8
    typealias Endpoint = USBDescriptorSet.Endpoint

    func bulkOut(_ message: [UInt8]) {
        let shown = capture.showPINs ? message : PINMask.masked(message)
        capture.transfer(device: device, .bulk, endpoint: Endpoint.bulkOut, sent: shown, received: nil, length: shown.count)
    }

    func bulkIn(_ message: [UInt8]) {
        capture.transfer(device: device, .bulk, endpoint: Endpoint.bulkIn, sent: [], received: message, length: message.count)
    }

    func interrupt(_ message: [UInt8]) {
        capture.transfer(device: device, .interrupt, endpoint: Endpoint.interruptIn, sent: [], received: message, length: message.count)
    }

    func control(setup: [UInt8], outData: [UInt8] = [], answer: [UInt8]?) {
        let inbound = setup.first.map { $0 & 0x80 != 0 } ?? false
        let length = setup.count == 8 ? Int(setup[6]) | Int(setup[7]) << 8 : 0
        capture.transfer(device: device, .control, endpoint: inbound ? 0x80 : 0x00, setup: setup,
                         sent: inbound ? [] : outData, received: inbound ? (answer ?? []) : nil, length: length)
    }

    func control(_ request: ControlRequest, answer: [UInt8]?) {
        let setup = [request.requestType, request.request, UInt8(request.value & 0xFF), UInt8(request.value >> 8),
                     UInt8(request.index & 0xFF), UInt8(request.index >> 8),
                     UInt8(request.length & 0xFF), UInt8(request.length >> 8)]
        control(setup: setup, outData: request.data, answer: answer)
    }
}
