#if canImport(Glibc)
import Glibc
#endif
import CCID
import ThreadSupport

/// `CCIDTransport` over a relay socket: one connection is one device; the
/// server closing it means the device is unplugged.
///
/// No reader thread: whichever thread waits for a frame reads the socket
/// itself (leader/follower) and files frames of other kinds into their
/// queues. The thread waiting for interrupts gives the socket up as soon as
/// an exchange starts, so a reply wakes the thread that wants it directly.
public final class RelayClientTransport: CCIDTransport, @unchecked Sendable {
    public let identity: DeviceIdentity
    public let path: String
    private let stream: FrameStream
    private let wake: (read: Int32, write: Int32)
    private let log: @Sendable (String) -> Void

    private let state = ConditionLock()
    // Guarded by `state`:
    private var bulkIn: [[UInt8]] = []
    private var interrupts: [[UInt8]] = []
    private var controlReplies: [UInt32: (stalled: Bool, data: [UInt8])] = [:]
    private var nextTag: UInt32 = 1
    private var closed = false
    private var interruptWaitCancelled = false
    /// A thread is reading the socket (it owns `stream`'s read side).
    private var reading = false
    /// The reader is the interrupt waiter, which yields to exchanges.
    private var readerYields = false
    /// An exchange is in flight: the interrupt waiter leaves the socket alone.
    private var exchangeInFlight = false
    /// When the last bulk message went out, to learn how fast the peer answers.
    private var sentAt = Deadline(nanoseconds: 0)
    private var spin: AdaptiveSpin

    /// Interrupt messages kept while nobody polls; older ones are dropped (a
    /// flood must not grow memory) — the slot status is re-read anyway.
    static let interruptQueueLimit = 64
    /// Unread bulk replies kept; a device that streams replies is cut off.
    static let bulkQueueLimit = 16

    /// `spinBudget`: how long a thread waiting for a reply may poll before
    /// sleeping, while the peer keeps answering that fast (0: never).
    public init(path: String, deadline: Deadline, spinBudget: Duration = .zero,
                log: @escaping @Sendable (String) -> Void) throws(RelayConnectError) {
        self.path = path
        self.log = log
        spin = AdaptiveSpin(budget: spinBudget)
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
            case .timeout, .closed: throw .noHello
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
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            socket.close()
            throw .socket(SocketError(operation: "pipe2", errno: errno))
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wake = (fds[0], fds[1])
        self.stream = stream
    }

    deinit {
        stream.socket.close()
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    // MARK: Reading, by whoever waits

    /// Waits until `ready` holds (lock held when called and on return),
    /// reading the socket itself when nobody else does.
    private func waitFor(until deadline: Deadline, yields: Bool, _ ready: () throws(TransportError) -> Bool) throws(TransportError) {
        while true {
            if try ready() { return }
            if closed { throw .noDevice }
            if deadline.hasPassed { throw .timeout }
            if !reading && !(yields && exchangeInFlight) {
                reading = true
                readerYields = yields
                state.unlock()
                let outcome = readFrames(until: deadline, yields: yields)
                state.lock()
                reading = false
                readerYields = false
                file(outcome)
                state.broadcast()
            } else {
                if reading && readerYields && !yields { poke() }
                state.wait(until: deadline)
            }
        }
    }

    private enum ReadOutcome {
        case frames([RelayFrame])
        case nothing
        case closed(reason: String?)
    }

    /// Reads what the socket has (one read), or returns when poked or at the deadline.
    private func readFrames(until deadline: Deadline, yields: Bool) -> ReadOutcome {
        if !yields, let limit = state.withLock({ spin.isWorthSpinning ? Deadline.after(spin.budget) : nil }) {
            var probe = pollfd(fd: stream.socket.fd, events: Int16(POLLIN), revents: 0)
            while poll(&probe, 1, 0) == 0 && !limit.hasPassed {}
        }
        var fds = [pollfd(fd: stream.socket.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        let ms = deadline == .distantFuture ? -1 : Int32(clamping: deadline.remaining.milliseconds + 1)
        let rc = poll(&fds, yields ? 2 : 1, ms)
        if rc < 0 { return errno == EINTR ? .nothing : .closed(reason: "poll: \(errno)") }
        if yields && fds[1].revents != 0 { drainWake() }
        guard fds[0].revents != 0 else { return .nothing }
        var frames: [RelayFrame] = []
        do throws(FrameStream.ReadError) {
            frames.append(try stream.receive(until: Deadline.now()))
            while let more = try stream.next() { frames.append(more) }
        } catch {
            switch error {
            case .timeout: break
            case .closed: return frames.isEmpty ? .closed(reason: nil) : .frames(frames)
            case .socket(let e): return .closed(reason: "\(e)")
            case .protocolViolation(let e): return .closed(reason: "\(e)")
            }
        }
        return .frames(frames)
    }

    /// Files frames into their queues (lock held); a violation drops the device.
    private func file(_ outcome: ReadOutcome) {
        switch outcome {
        case .nothing: return
        case .closed(let reason):
            if let reason, !closed { log("relay \(path): \(reason); dropping the connection") }
            disconnect()
        case .frames(let frames):
            for frame in frames {
                switch frame {
                case .bulkIn(let m):
                    guard bulkIn.count < Self.bulkQueueLimit else {
                        log("relay \(path): more than \(Self.bulkQueueLimit) unsolicited bulk replies; dropping the connection")
                        disconnect()
                        return
                    }
                    bulkIn.append(m)
                    spin.record(.nanoseconds(Int64(clamping: Deadline.now().nanoseconds &- sentAt.nanoseconds)))
                case .interruptIn(let m):
                    if interrupts.count >= Self.interruptQueueLimit { interrupts.removeFirst() }
                    interrupts.append(m)
                case .controlReply(let tag, let stalled, let data):
                    controlReplies[tag] = (stalled, data)
                case .hello, .bulkOut, .control:
                    log("relay \(path): server sent a \(frame.frameType) frame; dropping the connection")
                    disconnect()
                    return
                }
            }
        }
    }

    private func disconnect() {
        closed = true
        stream.socket.shutdown()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wake.read, &buffer, buffer.count) > 0 {}
    }

    // MARK: CCIDTransport

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        let yieldingReader: Bool = state.withLock {
            exchangeInFlight = true
            sentAt = Deadline.now()
            return reading && readerYields
        }
        // Ask the interrupt waiter to give up the socket while the device works.
        if yieldingReader { poke() }
        if state.withLock({ closed }) { throw .noDevice }
        do throws(SocketError) { try stream.send(.bulkOut(message)) } catch { throw .noDevice }
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        // Also when waiting again after a time extension, with nothing sent:
        // the interrupt waiter must not take the socket back in between.
        exchangeInFlight = true
        defer {
            exchangeInFlight = false
            state.broadcast()
            state.unlock()
        }
        try waitFor(until: deadline, yields: false) { !self.bulkIn.isEmpty }
        return bulkIn.removeFirst()
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        try waitFor(until: deadline, yields: true) { () throws(TransportError) -> Bool in
            if !self.interrupts.isEmpty { return true }
            if self.interruptWaitCancelled {
                self.interruptWaitCancelled = false
                throw .cancelled
            }
            return false
        }
        return interrupts.removeFirst()
    }

    /// Ends the current (or, if none, the next) interrupt wait: pcscd may ask
    /// to stop polling before the polling thread has started waiting.
    public func cancelInterruptWait() {
        let poker: Bool = state.withLock {
            interruptWaitCancelled = true
            state.broadcast()
            return reading && readerYields
        }
        if poker { poke() }
    }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        let (tag, yieldingReader): (UInt32, Bool) = state.withLock {
            defer { nextTag &+= 1 }
            exchangeInFlight = true
            return (nextTag, reading && readerYields)
        }
        if yieldingReader { poke() }
        do throws(SocketError) { try stream.send(.control(tag: tag, request)) } catch { throw .noDevice }
        state.lock()
        defer {
            exchangeInFlight = false
            state.broadcast()
            state.unlock()
        }
        try waitFor(until: deadline, yields: false) { self.controlReplies[tag] != nil }
        guard let reply = controlReplies.removeValue(forKey: tag) else { throw .noDevice }
        if reply.stalled { throw .stalled }
        return request.isDeviceToHost ? Array(reply.data.prefix(Int(request.length))) : []
    }

    /// Unplugs from our side: every waiter returns `.noDevice`.
    public func close() {
        state.withLock {
            closed = true
            state.broadcast()
        }
        stream.socket.shutdown()
        poke()
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
