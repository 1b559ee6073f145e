#if canImport(Glibc)
import Glibc
#endif
import CCID
import Relay
import ThreadSupport

/// The device side of one relay connection: what a simulated reader or an
/// attach worker implements.
public protocol RelayDevice: AnyObject, Sendable {
    var descriptors: USBDescriptorSet { get }
    /// A bulk-out CCID message; answer with `connection.send(.bulkIn(...))`.
    func bulkOut(_ message: [UInt8], from connection: RelayServerConnection)
    /// Returns the data of an IN request, [] for OUT, nil to stall.
    func control(_ request: ControlRequest, from connection: RelayServerConnection) -> [UInt8]?
    func connected(_ connection: RelayServerConnection)
    func disconnected(_ connection: RelayServerConnection)
}

public final class RelayServerConnection: Sendable {
    public let stream: FrameStream
    public let peer: StreamSocket.PeerCredentials?

    init(socket: StreamSocket) {
        stream = FrameStream(socket: socket)
        peer = socket.peerCredentials()
    }

    public func send(_ frame: RelayFrame) {
        do throws(SocketError) { try stream.send(frame) } catch { stream.socket.shutdown() }
    }

    /// Ends the connection: to the client, the device was unplugged.
    public func hangUp() { stream.socket.shutdown() }
}

/// Listens on a socket path and serves one device; one client at a time, as
/// a USB device is claimed by one driver. Peers are checked by credentials.
public final class RelayListener: Sendable {
    public let path: String
    private let socket: StreamSocket
    private let ownsPath: Bool
    private let device: RelayDevice
    private let allowPeer: @Sendable (StreamSocket.PeerCredentials) -> Bool
    private let log: @Sendable (String) -> Void
    /// After answering, poll for the next request this long before sleeping:
    /// back-to-back exchanges then skip a thread wake-up; an idle device costs nothing.
    private let spinAfterReply: Duration
    private struct State: Sendable {
        var active: RelayServerConnection?
        var stopped = false
    }
    private let state = Mutex(State())

    /// Default policy: root, or the same user as the server.
    public static let sameUserOrRoot: @Sendable (StreamSocket.PeerCredentials) -> Bool = { peer in
        peer.uid == 0 || peer.uid == geteuid()
    }

    /// Binds `path` itself; `stop()` removes it.
    public convenience init(path: String, device: RelayDevice, mode: mode_t = 0o660, spinAfterReply: Duration = .zero,
                            allowPeer: @escaping @Sendable (StreamSocket.PeerCredentials) -> Bool = RelayListener.sameUserOrRoot,
                            log: @escaping @Sendable (String) -> Void) throws(SocketError) {
        try self.init(socket: try StreamSocket.listen(path: path, mode: mode), ownsPath: true, path: path, device: device,
                      spinAfterReply: spinAfterReply, allowPeer: allowPeer, log: log)
    }

    /// Serves a socket that is already listening at `path` (one systemd
    /// passed in, sd_listen_fds): its owner removes the file.
    public convenience init(listening socket: StreamSocket, path: String, device: RelayDevice, spinAfterReply: Duration = .zero,
                            allowPeer: @escaping @Sendable (StreamSocket.PeerCredentials) -> Bool = RelayListener.sameUserOrRoot,
                            log: @escaping @Sendable (String) -> Void) throws(SocketError) {
        try self.init(socket: socket, ownsPath: false, path: path, device: device, spinAfterReply: spinAfterReply,
                      allowPeer: allowPeer, log: log)
    }

    private init(socket: StreamSocket, ownsPath: Bool, path: String, device: RelayDevice, spinAfterReply: Duration,
                 allowPeer: @escaping @Sendable (StreamSocket.PeerCredentials) -> Bool,
                 log: @escaping @Sendable (String) -> Void) throws(SocketError) {
        self.path = path
        self.socket = socket
        self.ownsPath = ownsPath
        self.device = device
        self.allowPeer = allowPeer
        self.log = log
        self.spinAfterReply = spinAfterReply
        guard startThread({ [self] in acceptLoop() }) else {
            socket.close()
            throw SocketError(operation: "pthread_create", errno: 0)
        }
    }

    private func acceptLoop() {
        while true {
            let client: StreamSocket
            do throws(SocketError) { client = try socket.accept() } catch { break }
            if state.withLock({ $0.stopped }) { client.close(); break }
            let connection = RelayServerConnection(socket: client)
            guard let peer = connection.peer, allowPeer(peer) else {
                log("relay \(path): refused peer \(connection.peer.map { "uid \($0.uid) pid \($0.pid)" } ?? "without credentials")")
                client.close()
                continue
            }
            // A client that just let go may not have been noticed yet: give it a moment.
            var busy = true
            let patience = Deadline.after(.milliseconds(500))
            while busy {
                busy = state.withLock { s in
                    if s.active != nil { return true }
                    s.active = connection
                    return false
                }
                if !busy || patience.hasPassed { break }
                usleep(10_000)
            }
            if busy {
                log("relay \(path): refused pid \(peer.pid): device already in use")
                client.close()
                continue
            }
            _ = startThread { [self] in serve(connection) }
        }
    }

    private func serve(_ connection: RelayServerConnection) {
        connection.send(.hello(RelayHello(descriptors: device.descriptors)))
        device.connected(connection)
        loop: while true {
            let frame: RelayFrame
            do throws(FrameStream.ReadError) { frame = try connection.stream.receive(spin: spinAfterReply) } catch {
                if case .protocolViolation(let e) = error { log("relay \(path): \(e)") }
                break
            }
            switch frame {
            case .bulkOut(let m): device.bulkOut(m, from: connection)
            case .control(let tag, let request):
                let data = device.control(request, from: connection)
                connection.send(.controlReply(tag: tag, stalled: data == nil, data: data ?? []))
            default:
                log("relay \(path): client sent a \(frame.frameType) frame")
                break loop
            }
        }
        device.disconnected(connection)
        state.withLock { if $0.active === connection { $0.active = nil } }
        connection.stream.socket.close()
    }

    /// Unplugs: the current client sees the connection close.
    public func dropClient() {
        state.withLock { $0.active }?.hangUp()
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        if ownsPath {
            socket.shutdown()
            socket.close()
            unlink(path)
        } else {
            // shutdown(2) would end the listening socket for systemd too, which
            // holds it for the next activation: wake accept() with a connection.
            (try? StreamSocket.connect(path: path))?.close()
            socket.close()
        }
        dropClient()
    }
}
