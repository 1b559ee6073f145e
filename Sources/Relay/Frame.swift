#if canImport(Glibc)
import Glibc
#endif
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
        let (header, payload) = encodedParts()
        return header + payload
    }

    /// The frame as its 5-byte header and its payload, to be written
    /// together (`StreamSocket.writeAll(_:_:)`) without copying a 64 KiB
    /// payload behind the header first.
    public func encodedParts() -> (header: [UInt8], payload: [UInt8]) {
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
        var header: [UInt8] = [frameType.rawValue]
        header.appendBE(UInt32(truncatingIfNeeded: payload.count))
        return (header, payload)
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

/// Splits a byte stream into frames. Feed it what the socket gave (or let
/// it read the socket into its own buffer, `read(from:wait:)`); take frames out.
public struct RelayFrameDecoder: Sendable {
    /// Bytes start..<end are received and not yet taken; the rest is room.
    private var storage: [UInt8] = []
    private var start = 0
    private var end = 0
    /// Room kept free for one read: a 64 KiB frame arrives in a read or two.
    static let readChunk = 64 * 1024

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        let new = Array(bytes)
        makeRoom(new.count)
        storage.replaceSubrange(end..<end + new.count, with: new)
        end += new.count
    }

    /// Reads what the socket has straight into the buffer, blocking if
    /// `wait`: the count (0: the peer closed), or nil if nothing was there.
    public mutating func read(from socket: StreamSocket, wait: Bool) throws(SocketError) -> Int? {
        makeRoom(Self.readChunk)
        let n = try socket.read(into: &storage, at: end, wait: wait)
        if let n { end += n }
        return n
    }

    /// At least `count` bytes of room after `end`: taken bytes are dropped first, then the buffer grows.
    private mutating func makeRoom(_ count: Int) {
        if start == end {
            start = 0
            end = 0
        } else if start > 0, storage.count - end < count {
            storage.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                memmove(base, base + start, end - start)
            }
            end -= start
            start = 0
        }
        if storage.count - end < count {
            storage.append(contentsOf: repeatElement(0, count: max(count, storage.count) - (storage.count - end)))
        }
    }

    /// The next complete frame, nil if more bytes are needed; throws on a
    /// frame that can never be valid (the connection must then be dropped).
    public mutating func next() throws(RelayError) -> RelayFrame? {
        let available = end - start
        guard available >= RelayFrame.headerLength else { return nil }
        let type = storage[start]
        var r = ByteReader(storage[(start + 1)..<(start + 5)])
        let length = Int(r.u32be() ?? 0)
        guard length <= RelayFrame.maximumPayloadLength else { throw .oversized(length) }
        guard available >= RelayFrame.headerLength + length else { return nil }
        let payloadStart = start + RelayFrame.headerLength
        let payload = Array(storage[payloadStart..<payloadStart + length])
        start = payloadStart + length
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
