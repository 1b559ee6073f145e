import CCID
import ThreadSupport

/// `CCIDTransport` straight into a `SimulatedReader`, with no socket: the
/// driver ↔ simulator tests of DESIGN.md's second layer. Reply delays are
/// kept as due times so deadlines behave as on a wire.
public final class InProcessTransport: CCIDTransport, @unchecked Sendable {
    public let identity: DeviceIdentity
    public let reader: SimulatedReader
    private let state = ConditionLock()
    private var bulk: [(due: Deadline, bytes: [UInt8])] = []
    private var interrupts: [[UInt8]] = []
    private var cancelled = false
    private var closed = false
    /// Test hook: rewrite or drop (return nil) each reply before the driver sees it.
    public var tamper: (@Sendable ([UInt8]) -> [[UInt8]])?

    public init(reader: SimulatedReader) throws(USBDescriptorError) {
        self.reader = reader
        identity = try reader.descriptors.identity()
        reader.observeInterrupts { [weak self] message in
            guard let self else { return }
            self.state.withLock {
                self.interrupts.append(message)
                self.state.broadcast()
            }
        }
    }

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        if state.withLock({ closed }) { throw .noDevice }
        var due = Deadline.now()
        var out: [(Deadline, [UInt8])] = []
        for step in reader.respond(to: message) {
            due = due.advanced(by: step.delay)
            let replies = tamper?(step.bytes) ?? [step.bytes]
            for r in replies { out.append((due, r)) }
        }
        state.withLock {
            bulk += out
            state.broadcast()
        }
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        while true {
            if closed { throw .noDevice }
            if let first = bulk.first, first.due <= Deadline.now() { return bulk.removeFirst().bytes }
            if deadline.hasPassed { throw .timeout }
            let wake = bulk.first.map { Deadline.min($0.due, deadline) } ?? deadline
            state.wait(until: wake)
        }
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        state.lock()
        defer { state.unlock() }
        while interrupts.isEmpty {
            if cancelled { cancelled = false; throw .cancelled }
            if closed { throw .noDevice }
            if !state.wait(until: deadline), deadline.hasPassed { throw .timeout }
        }
        return interrupts.removeFirst()
    }

    public func cancelInterruptWait() {
        state.withLock { cancelled = true; state.broadcast() }
    }

    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        if state.withLock({ closed }) { throw .noDevice }
        // No relay connection here; the device model answers class requests itself.
        guard let data = reader.controlRequest(request) else { throw .stalled }
        return data
    }

    public func close() {
        state.withLock { closed = true; state.broadcast() }
    }
}
