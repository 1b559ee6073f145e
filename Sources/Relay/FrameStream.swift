import ThreadSupport

/// Frames over a connected socket: several threads may send, one at a time;
/// one thread reads (the owner of the read side; the mutex makes sure).
public final class FrameStream: Sendable {
    public let socket: StreamSocket
    /// Orders writers; guards no state, so a plain Lock (see SlotGate).
    private let writer = Lock()
    private struct ReadSide: Sendable {
        var decoder = RelayFrameDecoder()
    }
    private let reader = Mutex(ReadSide())

    public init(socket: StreamSocket) { self.socket = socket }

    public func send(_ frame: RelayFrame) throws(SocketError) {
        let (header, payload) = frame.encodedParts()
        try writer.withLock { () throws(SocketError) in try socket.writeAll(header, payload) }
    }

    public enum ReadError: Error, Sendable {
        case closed
        case timeout
        case socket(SocketError)
        case protocolViolation(RelayError)
    }

    /// A frame already buffered, without reading the socket; only the reading thread may call this.
    public func next() throws(ReadError) -> RelayFrame? {
        do throws(RelayError) { return try reader.withLock { r throws(RelayError) in try r.decoder.next() } } catch {
            throw .protocolViolation(error)
        }
    }

    /// The next frame; one thread reads at a time.
    public func receive(until deadline: Deadline = .distantFuture, spin: Duration = .zero) throws(ReadError) -> RelayFrame {
        var spinUntil = spin > .zero ? Deadline.after(spin) : Deadline(nanoseconds: 0)
        return try reader.withLock { r throws(ReadError) -> RelayFrame in
            while true {
                do throws(RelayError) {
                    if let frame = try r.decoder.next() { return frame }
                } catch {
                    throw .protocolViolation(error)
                }
                if !spinUntil.hasPassed {
                    let got: Int?
                    do throws(SocketError) { got = try r.decoder.read(from: socket, wait: false) } catch { throw .socket(error) }
                    if let n = got {
                        if n == 0 { throw .closed }
                        spinUntil = Deadline(nanoseconds: 0)
                    }
                    continue
                }
                if deadline != .distantFuture, !socket.waitReadable(until: deadline) { throw .timeout }
                let n: Int?
                do throws(SocketError) { n = try r.decoder.read(from: socket, wait: true) } catch { throw .socket(error) }
                if n == 0 { throw .closed }
            }
        }
    }
}
