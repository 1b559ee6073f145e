// libFuzzer entry points for everything that parses what a device, card or
// socket sends. One binary; SWIFTCCID_FUZZ_TARGET picks the target (see
// `targets`). Built only with `make fuzz` (swift build --sanitize=fuzzer,address).
#if canImport(Glibc)
import Glibc
#endif
import CCID
import CCIDDriver
import ISO7816
import Relay
import ThreadSupport

/// Splits fuzz input into chunks: a length byte, then that many bytes.
struct Chunks {
    var bytes: ArraySlice<UInt8>
    mutating func next() -> [UInt8]? {
        guard let n = bytes.first else { return nil }
        bytes = bytes.dropFirst()
        let take = Array(bytes.prefix(Int(n)))
        bytes = bytes.dropFirst(take.count)
        return take
    }
}

nonisolated(unsafe) var target: @Sendable ([UInt8]) -> Void = { _ in }

let targets: [String: @Sendable ([UInt8]) -> Void] = [
    "ccid-messages": { data in
        _ = try? Reply(decoding: data)
        _ = try? Command(decoding: data)
        _ = try? InterruptMessage(decoding: data)
        _ = ICCDBAnswer(decoding: data)?.encoded()
    },
    "class-descriptor": { data in
        if let d = try? ClassDescriptor(decoding: data) {
            _ = d.exchangeLevel
            _ = d.slotCount
            _ = d.maxCCIDMessageLength
        }
        // The same bytes as a whole configuration descriptor.
        let device: [UInt8] = [18, 1, 0, 2, 0, 0, 0, 64, 0x6B, 0x07, 0x31, 0x30, 0, 1, 1, 2, 3, 1]
        _ = try? USBDescriptorSet(device: device, configuration: data, strings: [:]).identity()
        _ = try? USBDescriptorSet(device: device, configuration: data, strings: [:]).identity(interface: data.first)
    },
    "atr": { data in
        if let atr = try? ATR(data) {
            _ = atr.t1IFSC
            _ = atr.t1EDC
            _ = ExchangeTimeouts.cardWaitingTime(atr: atr, protocolType: 1, clockKHz: 4000)
            _ = ExchangeTimeouts.cardWaitingTime(atr: atr, protocolType: 0, clockKHz: UInt32(data.count) * 1000)
        }
    },
    "pps": { data in
        guard let first = data.first else { return }
        let request = PPS(protocolType: first & 1, fiDi: data.count > 1 ? data[1] : nil)
        _ = try? request.negotiated(by: Array(data.dropFirst()))
        _ = try? PPS(decoding: data)
    },
    "wire-structures": { data in
        // SCardControl input from any client (Part 10 PIN structures) and the
        // protocol data a reader reports: decoded values must re-encode to themselves.
        guard let first = data.first else { return }
        let rest = Array(data.dropFirst())
        let entries = [PINEntry(part10Verify: rest), PINEntry(part10Modify: rest), PINEntry(ccid: rest)]
        for case let entry? in entries {
            guard PINEntry(ccid: entry.ccidEncoded()) == entry else { fatalError("PINEntry does not round-trip: \(rest)") }
        }
        if let p = ProtocolData(protocolNumber: first & 3, bytes: rest) {
            guard ProtocolData(protocolNumber: first & 3, bytes: p.encoded()) == p else { fatalError("ProtocolData: \(rest)") }
        }
    },
    "relay-frames": { data in
        var decoder = RelayFrameDecoder()
        var chunks = Chunks(bytes: data[...])
        while let c = chunks.next() {
            decoder.append(c)
            while let frame = try? decoder.next() {
                if case .hello(let h) = frame { _ = try? h.descriptors.identity() }
            }
        }
        _ = try? RelayHello(decoding: data)
    },
    "t1-host": { data in
        // The card answers each block we send with fuzz bytes (or a failure).
        guard data.count >= 3 else { return }
        var host = T1Host(ifsc: Int(data[0]), ifsd: Int(data[1]), edc: data[2] & 1 == 0 ? .lrc : .crc,
                          negotiateIFSD: data[2] & 2 != 0)
        var chunks = Chunks(bytes: data.dropFirst(3))
        var action = host.transmit([0x80, 0x34, 0x00, 0x10] + Array(repeating: 0x55, count: Int(data[0])))
        var steps = 0
        while case .send = action, steps < 10_000 {
            steps += 1
            guard let reply = chunks.next() else { break }
            if reply.count == 1 { action = host.receiveFailed(reply[0] & 1 == 0 ? .timeout : .parityError) }
            else { action = host.received(reply) }
        }
    },
    "t0-character": { data in
        guard data.count >= 5, var engine = T0CharacterExchange(tpdu: Array(data.prefix(5)) + Array(repeating: 0x11, count: Int(data[4]))) else { return }
        var chunks = Chunks(bytes: data.dropFirst(5))
        var action = engine.start()
        var steps = 0
        while case .transfer = action, steps < 10_000 {
            steps += 1
            guard let reply = chunks.next() else { break }
            action = engine.received(reply)
        }
    },
    "t0-reader": { data in
        // An APDU-level reader carrying an APDU over T=0 (simulator side):
        // whatever the card answers, the exchange ends within its limits.
        guard let shape = data.first else { return }
        let apdus: [[UInt8]] = [[0x80, 0x34, 0x00, 0x10, 0x10], [0x80, 0x36, 0x00, 0x03, 0x01, 0x00, 0x00],
                                [0x80, 0x12, 0x01, 0x80, 0x00, 0x01, 0x2C] + Array(repeating: 0x5A, count: 300) + [0x00, 0x00]]
        let apdu = apdus[Int(shape) % apdus.count]
        guard let command = try? CommandAPDU(apdu) else { fatalError("fuzz target's own APDU does not parse") }
        var chunks = Chunks(bytes: data.dropFirst())
        var steps = 0
        if command.isExtended {
            var exchange = T0EnvelopeExchange(apdu: apdu, classByte: 0x80)
            var action = exchange.start()
            while case .send = action, let answer = chunks.next() {
                steps += 1
                action = exchange.received(answer)
            }
            guard steps <= 3 + T0EnvelopeExchange.fetchLimit else { fatalError("ENVELOPE exchange ran \(steps) rounds") }
        } else {
            var exchange = T0ReaderExchange(apdu: command)
            var action = exchange.start()
            while case .send = action, let answer = chunks.next() {
                steps += 1
                action = exchange.received(answer)
            }
            guard steps <= T0ReaderExchange.roundLimit else { fatalError("T=0 exchange ran \(steps) rounds") }
        }
    },
    "driver": { data in fuzzDriver(data) },
]

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = getenv("SWIFTCCID_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let chosen = targets[name] else {
        let names = targets.keys.sorted().joined(separator: ", ")
        let message = Array("SWIFTCCID_FUZZ_TARGET must be one of: \(names)\n".utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(2)
    }
    target = chosen
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    target(bytes)
    return 0
}
