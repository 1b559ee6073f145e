import CCID
import ThreadSupport

/// `CCIDTransport` straight into a `SimulatedReader`, with no socket: the
/// driver ↔ simulator tests of DESIGN.md's second layer. Replies are timed
/// by the same scheduler as on the other buses, so deadlines, ABORT and
/// hang-up behave as on a wire.
public final class InProcessTransport: CCIDTransport, Sendable {
    public let identity: DeviceIdentity
    public let reader: SimulatedReader
    private let scheduler = ReplyScheduler()

    private struct State: Sendable {
        var bulk: [[UInt8]] = []
        var interrupts: [[UInt8]] = []
        var cancelled = false
        var closed = false
        var tamper: (@Sendable ([UInt8]) -> [[UInt8]])?
    }
    private let state = Mutex(State())
    private let bulkArrived = Wakeup()
    private let interruptArrived = Wakeup()

    /// Test hook: rewrite or drop (return []) each reply before the driver sees it.
    public var tamper: (@Sendable ([UInt8]) -> [[UInt8]])? {
        get { state.withLock { $0.tamper } }
        set { state.withLock { $0.tamper = newValue } }
    }

    public init(reader: SimulatedReader) throws(USBDescriptorError) {
        self.reader = reader
        identity = try reader.descriptors.identity()
        reader.observeInterrupts { [weak self] message in
            guard let self else { return }
            state.withLock { $0.interrupts.append(message) }
            interruptArrived.signal()
        }
        scheduler.attach(ReplyScheduler.Sink(
            send: { [weak self] bytes in
                guard let self else { return }
                state.withLock { s in s.bulk += s.tamper?(bytes) ?? [bytes] }
                bulkArrived.signal()
            },
            // The device went away: as an unplugged one.
            hangUp: { [weak self] in self?.close() }))
    }

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        if state.withLock({ $0.closed }) { throw .noDevice }
        scheduler.deliver(reader.respond(to: message))
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        while true {
            let next: Result<[UInt8]?, TransportError> = state.withLock { s in
                if s.closed { return .failure(.noDevice) }
                return .success(s.bulk.isEmpty ? nil : s.bulk.removeFirst())
            }
            if let reply = try next.get() { return reply }
            if deadline.hasPassed { throw .timeout }
            bulkArrived.wait(until: deadline)
        }
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        while true {
            let next: Result<[UInt8]?, TransportError> = state.withLock { s in
                if !s.interrupts.isEmpty { return .success(s.interrupts.removeFirst()) }
                if s.cancelled { s.cancelled = false; return .failure(.cancelled) }
                if s.closed { return .failure(.noDevice) }
                return .success(nil)
            }
            if let message = try next.get() { return message }
            if deadline.hasPassed { throw .timeout }
            interruptArrived.wait(until: deadline)
        }
    }

    public func cancelInterruptWait() {
        state.withLock { $0.cancelled = true }
        interruptArrived.signal()
    }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        if state.withLock({ $0.closed }) { throw .noDevice }
        // No relay connection here; the device model answers class requests itself.
        guard let data = reader.controlRequest(request, scheduler: scheduler) else { throw .stalled }
        return data
    }

    public func close() {
        state.withLock { $0.closed = true }
        bulkArrived.signal()
        interruptArrived.signal()
    }
}
