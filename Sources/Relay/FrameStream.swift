import ThreadSupport

/// Frames over a connected socket: a write lock so several threads may send,
/// and a blocking frame reader for the single thread that owns the read side.
public final class FrameStream: @unchecked Sendable {
    public let socket: UnixSocket
    private let writeLock = Lock()
    private var decoder = RelayFrameDecoder()
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init(socket: UnixSocket) { self.socket = socket }

    public func send(_ frame: RelayFrame) throws(SocketError) {
        let bytes = frame.encoded()
        try writeLock.withLock { () throws(SocketError) in try socket.writeAll(bytes) }
    }

    public enum ReadError: Error, Sendable {
        case closed
        case timeout
        case socket(SocketError)
        case protocolViolation(RelayError)
    }

    /// A frame already buffered, without reading the socket; only the reading thread may call this.
    public func next() throws(ReadError) -> RelayFrame? {
        do throws(RelayError) { return try decoder.next() } catch { throw .protocolViolation(error) }
    }

    /// The next frame; only one thread may call this.
    public func receive(until deadline: Deadline = .distantFuture, spin: Duration = .zero) throws(ReadError) -> RelayFrame {
        var spinUntil = spin > .zero ? Deadline.after(spin) : Deadline(nanoseconds: 0)
        while true {
            do throws(RelayError) {
                if let frame = try decoder.next() { return frame }
            } catch {
                throw .protocolViolation(error)
            }
            if !spinUntil.hasPassed {
                let got: Int?
                do throws(SocketError) { got = try socket.readAvailable(into: &buffer) } catch { throw .socket(error) }
                if let n = got {
                    if n == 0 { throw .closed }
                    decoder.append(buffer[0..<n])
                    spinUntil = Deadline(nanoseconds: 0)
                }
                continue
            }
            if deadline != .distantFuture, !socket.waitReadable(until: deadline) { throw .timeout }
            let n: Int
            do throws(SocketError) { n = try socket.read(into: &buffer) } catch { throw .socket(error) }
            if n == 0 { throw .closed }
            decoder.append(buffer[0..<n])
        }
    }
}
