import CCID
import ThreadSupport

/// `CCIDTransport` over a relay socket: one connection is one device. A
/// reader thread sorts incoming frames into bulk, interrupt and control
/// queues; the server closing the connection means the device is unplugged.
public final class RelayClientTransport: CCIDTransport, @unchecked Sendable {
    public let identity: DeviceIdentity
    public let path: String
    private let stream: FrameStream
    private let state = ConditionLock()
    // Guarded by `state`:
    private var bulkIn: [[UInt8]] = []
    private var interrupts: [[UInt8]] = []
    private var controlReplies: [UInt32: (stalled: Bool, data: [UInt8])] = [:]
    private var nextTag: UInt32 = 1
    private var closed = false
    private var interruptWaitCancelled = false
    private let log: @Sendable (String) -> Void

    /// Interrupt messages kept while nobody polls; older ones are dropped (a
    /// flood must not grow memory) — the slot status is re-read anyway.
    static let interruptQueueLimit = 64
    /// Unread bulk replies kept; a device that streams replies is cut off.
    static let bulkQueueLimit = 16

    public init(path: String, deadline: Deadline, log: @escaping @Sendable (String) -> Void) throws(RelayConnectError) {
        self.path = path
        self.log = log
        let socket: UnixSocket
        do throws(SocketError) { socket = try UnixSocket.connect(path: path) } catch { throw .socket(error) }
        let stream = FrameStream(socket: socket)
        let first: RelayFrame
        do throws(FrameStream.ReadError) {
            first = try stream.receive(until: deadline)
        } catch {
            socket.close()
            switch error {
            case .protocolViolation(let e): throw .protocolViolation(e)
            case .timeout: throw .noHello
            case .closed: throw .noHello
            case .socket(let e): throw .socket(e)
            }
        }
        guard case .hello(let hello) = first else {
            socket.close()
            throw .noHello
        }
        do throws(USBDescriptorError) { identity = try hello.descriptors.identity() } catch {
            socket.close()
            throw .descriptors(error)
        }
        self.stream = stream
        guard startThread({ [self] in readLoop() }) else {
            socket.close()
            throw .socket(SocketError(operation: "pthread_create", errno: 0))
        }
    }

    private func readLoop() {
        while true {
            let frame: RelayFrame
            do throws(FrameStream.ReadError) {
                frame = try stream.receive()
            } catch {
                if case .protocolViolation(let e) = error { log("relay \(path): \(e); dropping the connection") }
                break
            }
            var violation: String? = nil
            state.withLock {
                switch frame {
                case .bulkIn(let m):
                    if bulkIn.count >= Self.bulkQueueLimit { violation = "more than \(Self.bulkQueueLimit) unsolicited bulk replies" }
                    else { bulkIn.append(m) }
                case .interruptIn(let m):
                    if interrupts.count >= Self.interruptQueueLimit { interrupts.removeFirst() }
                    interrupts.append(m)
                case .controlReply(let tag, let stalled, let data):
                    controlReplies[tag] = (stalled, data)
                case .hello, .bulkOut, .control:
                    violation = "server sent a \(frame.frameType) frame"
                }
                state.broadcast()
            }
            if let violation {
                log("relay \(path): \(violation); dropping the connection")
                break
            }
        }
        state.withLock {
            closed = true
            state.broadcast()
        }
        stream.socket.close()
    }

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        if state.withLock({ closed }) { throw .noDevice }
        do throws(SocketError) { try stream.send(.bulkOut(message)) } catch { throw .noDevice }
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        while bulkIn.isEmpty {
            if closed { throw .noDevice }
            if !state.wait(until: deadline), deadline.hasPassed, bulkIn.isEmpty { throw closed ? .noDevice : .timeout }
        }
        return bulkIn.removeFirst()
    }

    /// Drops replies that arrived for earlier (aborted) exchanges.
    public func discardPendingBulk() -> Int {
        state.withLock {
            defer { bulkIn.removeAll() }
            return bulkIn.count
        }
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        while interrupts.isEmpty {
            if interruptWaitCancelled { interruptWaitCancelled = false; throw .cancelled }
            if closed { throw .noDevice }
            if !state.wait(until: deadline), deadline.hasPassed, interrupts.isEmpty { throw .timeout }
        }
        return interrupts.removeFirst()
    }

    /// Ends the current (or, if none, the next) interrupt wait: pcscd may ask
    /// to stop polling before the polling thread has started waiting.
    public func cancelInterruptWait() {
        state.withLock {
            interruptWaitCancelled = true
            state.broadcast()
        }
    }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        let tag: UInt32 = state.withLock {
            defer { nextTag &+= 1 }
            return nextTag
        }
        do throws(SocketError) { try stream.send(.control(tag: tag, request)) } catch { throw .noDevice }
        state.lock()
        defer { state.unlock() }
        while true {
            if let reply = controlReplies.removeValue(forKey: tag) {
                if reply.stalled { throw .stalled }
                return request.isDeviceToHost ? Array(reply.data.prefix(Int(request.length))) : []
            }
            if closed { throw .noDevice }
            if !state.wait(until: deadline), deadline.hasPassed { throw .timeout }
        }
    }

    public var isClosed: Bool { state.withLock { closed } }

    public func close() {
        stream.socket.shutdown()
    }
}

public enum RelayConnectError: Error, Sendable, CustomStringConvertible {
    case socket(SocketError)
    case noHello
    case protocolViolation(RelayError)
    case descriptors(USBDescriptorError)

    public var description: String {
        switch self {
        case .socket(let e): "\(e)"
        case .noHello: "relay server sent no hello"
        case .protocolViolation(let e): "\(e)"
        case .descriptors(let e): "\(e)"
        }
    }
}
