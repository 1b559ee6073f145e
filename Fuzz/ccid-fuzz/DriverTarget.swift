import CCID
import CCIDDriver
import ThreadSupport

/// A reader (or an ICCD token) whose every reply is fuzz input: the driver
/// powers a card, picks a protocol and sends APDUs at the reader's exchange
/// level, and must only ever answer with errors.
final class ScriptedTransport: CCIDTransport, @unchecked Sendable {
    let identity: DeviceIdentity
    private var chunks: Chunks
    private var lastHeader: (slot: UInt8, seq: UInt8) = (0, 0)
    private let lock = Lock()

    /// `iccd`: an ICCD token, whose every exchange is a control answer from the script.
    init(descriptor: ClassDescriptor, iccd: ICCDVersion? = nil, script: ArraySlice<UInt8>) {
        let endpoints = iccd == nil ? CCIDEndpoints(bulkOut: 1, bulkIn: 0x82, interruptIn: nil, bulkInPacketSize: 64)
                                    : CCIDEndpoints(bulkOut: 0, bulkIn: 0, interruptIn: nil, bulkInPacketSize: 64)
        identity = DeviceIdentity(vendorID: 1, productID: 2, bcdDevice: 3, manufacturer: "fuzz", product: "fuzz",
                                  serialNumber: "0", interfaceNumber: 0, classDescriptor: descriptor,
                                  endpoints: endpoints, iccd: iccd)
        chunks = Chunks(bytes: script)
    }

    func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        guard message.count >= 7 else { return }
        lock.withLock { lastHeader = (message[5], message[6]) }
    }

    /// Odd-length chunks get the slot and sequence of the last command, so
    /// the fuzzer reaches past the driver's bSeq check.
    func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        let next: [UInt8]? = lock.withLock {
            guard var reply = chunks.next() else { return nil }
            if reply.count >= 7, reply.count & 1 == 1 { (reply[5], reply[6]) = lastHeader }
            return reply
        }
        guard let next else { throw .noDevice }
        return next
    }

    func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] { throw .noDevice }
    func cancelInterruptWait() {}

    func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        let next = lock.withLock { chunks.next() }
        guard let next else { throw .noDevice }
        if next.isEmpty { throw .stalled }
        return next
    }

    func close() {}
}

/// Real readers' descriptors at each exchange level (extended, short, TPDU, character).
let fuzzDescriptors: [ClassDescriptor] = [
    "36211001000703000000c0120000c012000001002a0000e74c06006afe0000000700000000000000ba0704000f010000ffff00000001",
    "36210001000703000000c0120000401f000004002a0000e74c06006afe0000000700000000000000b20702000f010000ffff00000001",
    "36210001000703000000a00f0000a00f000000002a000008f8010000fe0000000000000000000000300001000f010000000000000001",
    "3621000100010300000070170000701700000300e10400005ffb0000fe000000000000000000000000000000000000000000000000",
].compactMap { bytesFromHex($0).flatMap { try? ClassDescriptor(decoding: $0) } }

func fuzzDriver(_ data: [UInt8]) {
    guard let first = data.first, !fuzzDescriptors.isEmpty else { return }
    let descriptor = fuzzDescriptors[Int(first) % fuzzDescriptors.count]
    // Bit 6 of the first byte: the device is an ICCD token (bit 5: version B), its answers control answers.
    let iccd: ICCDVersion? = first & 0x40 == 0 ? nil : first & 0x20 == 0 ? .a : .b
    let transport = ScriptedTransport(descriptor: descriptor, iccd: iccd, script: data.dropFirst())
    let reader = Reader(transport: transport, timeouts: ExchangeTimeouts(maximum: .milliseconds(50), transportMargin: .milliseconds(10)),
                        log: { _ in })
    defer { reader.close() }
    guard (try? reader.powerOn(slot: 0)) != nil else { return }
    _ = try? reader.selectProtocol(slot: 0, requested: first & 0x80 == 0 ? .any : .t0)
    for apdu: [UInt8] in [[0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00], [0x80, 0x34, 0x00, 0x10, 0x10],
                          [0x80, 0x36, 0x00, 0x04, 0x04, 1, 2, 3, 4, 0x00], [0x80, 0x00, 0x04, 0xA5, 0x00, 0x01, 0x00]] {
        _ = try? reader.transmit(slot: 0, apdu: apdu)
    }
    _ = try? reader.iccStatus(slot: 0)
    _ = try? reader.powerOff(slot: 0)
}
