import CCID

/// One relay frame (docs/relay-protocol.md): type (1 byte), payload length
/// (u32, big-endian), payload.
public enum RelayFrame: Equatable, Sendable {
    case hello(RelayHello)
    case bulkOut([UInt8])
    case bulkIn([UInt8])
    case interruptIn([UInt8])
    case control(tag: UInt32, ControlRequest)
    case controlReply(tag: UInt32, stalled: Bool, data: [UInt8])

    public enum FrameType: UInt8, Sendable {
        case hello = 0x01, bulkOut = 0x10, bulkIn = 0x11, interruptIn = 0x12, control = 0x20, controlReply = 0x21
    }

    public static let headerLength = 5
    /// No frame may be larger: an extended APDU (65,544 bytes) plus chaining slack fits well.
    public static let maximumPayloadLength = 1 << 20

    public var frameType: FrameType {
        switch self {
        case .hello: .hello
        case .bulkOut: .bulkOut
        case .bulkIn: .bulkIn
        case .interruptIn: .interruptIn
        case .control: .control
        case .controlReply: .controlReply
        }
    }

    public func encoded() -> [UInt8] {
        var payload: [UInt8]
        switch self {
        case .hello(let h): payload = h.encoded()
        case .bulkOut(let b), .bulkIn(let b), .interruptIn(let b): payload = b
        case .control(let tag, let r):
            payload = []
            payload.appendBE(tag)
            payload += [r.requestType, r.request]
            payload.appendBE(r.value)
            payload.appendBE(r.index)
            payload.appendBE(r.length)
            payload += r.data
        case .controlReply(let tag, let stalled, let data):
            payload = []
            payload.appendBE(tag)
            payload.append(stalled ? 1 : 0)
            payload += data
        }
        var out: [UInt8] = [frameType.rawValue]
        out.reserveCapacity(Self.headerLength + payload.count)
        out.appendBE(UInt32(truncatingIfNeeded: payload.count))
        return out + payload
    }

    public init(type: UInt8, payload: [UInt8]) throws(RelayError) {
        guard let kind = FrameType(rawValue: type) else { throw .unknownFrameType(type) }
        switch kind {
        case .hello: self = .hello(try RelayHello(decoding: payload))
        case .bulkOut: self = .bulkOut(payload)
        case .bulkIn: self = .bulkIn(payload)
        case .interruptIn: self = .interruptIn(payload)
        case .control:
            var r = ByteReader(payload)
            guard let tag = r.u32be(), let rt = r.u8(), let rq = r.u8(), let v = r.u16be(),
                  let i = r.u16be(), let l = r.u16be() else { throw .malformed("control frame of \(payload.count) bytes") }
            self = .control(tag: tag, ControlRequest(requestType: rt, request: rq, value: v, index: i, length: l,
                                                     data: Array(r.rest())))
        case .controlReply:
            var r = ByteReader(payload)
            guard let tag = r.u32be(), let status = r.u8(), status <= 1 else {
                throw .malformed("control reply of \(payload.count) bytes")
            }
            self = .controlReply(tag: tag, stalled: status == 1, data: Array(r.rest()))
        }
    }
}

/// Splits a byte stream into frames. Feed it what the socket gave; take frames out.
public struct RelayFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

    /// The next complete frame, nil if more bytes are needed; throws on a
    /// frame that can never be valid (the connection must then be dropped).
    public mutating func next() throws(RelayError) -> RelayFrame? {
        let available = buffer.count - start
        guard available >= RelayFrame.headerLength else { return nil }
        let type = buffer[start]
        var r = ByteReader(buffer[(start + 1)..<(start + 5)])
        let length = Int(r.u32be() ?? 0)
        guard length <= RelayFrame.maximumPayloadLength else { throw .oversized(length) }
        guard available >= RelayFrame.headerLength + length else { return nil }
        let payloadStart = start + RelayFrame.headerLength
        let payload = Array(buffer[payloadStart..<payloadStart + length])
        start = payloadStart + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 65536 {
            buffer.removeFirst(start)
            start = 0
        }
        return try RelayFrame(type: type, payload: payload)
    }
}

public enum RelayError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownFrameType(UInt8)
    case oversized(Int)
    case malformed(String)
    case badMagic
    case unsupportedVersion(major: UInt8, minor: UInt8)

    public var description: String {
        switch self {
        case .unknownFrameType(let t): "unknown relay frame type 0x\(hexString([t]))"
        case .oversized(let n): "relay frame of \(n) bytes exceeds \(RelayFrame.maximumPayloadLength)"
        case .malformed(let what): "malformed \(what)"
        case .badMagic: "peer is not a relay server (bad hello magic)"
        case .unsupportedVersion(let a, let b): "relay protocol version \(a).\(b) is not supported"
        }
    }
}
