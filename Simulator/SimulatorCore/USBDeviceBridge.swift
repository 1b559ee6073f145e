import CCID
import ThreadSupport

/// The device side of one simulated reader on a USB bus (umockdev's or a
/// real gadget's): bulk-out messages in, timed replies and interrupt
/// messages out through `send`, control requests answered on the spot.
public final class USBDeviceBridge: @unchecked Sendable {
    public typealias Send = @Sendable (_ endpoint: UInt8, _ bytes: [UInt8]) -> Void
    public let reader: SimulatedReader
    public let endpoints: CCIDEndpoints
    private let state = ConditionLock()
    private var send: Send?
    private var due: [(at: Deadline, bytes: [UInt8], survivesAbort: Bool)] = []
    private var unplugged = false

    public init(reader: SimulatedReader, endpoints: CCIDEndpoints) {
        self.reader = reader
        self.endpoints = endpoints
    }

    /// Called once the bus side can carry data; starts the reply clock.
    public func attach(send: @escaping Send) {
        state.withLock { self.send = send }
        let interrupt = endpoints.interruptIn
        reader.observeInterrupts { [weak self] message in
            guard let self, let interrupt, let send = self.state.withLock({ self.unplugged ? nil : self.send }) else { return }
            send(interrupt, message)
        }
        _ = startThread { [self] in replyClock() }
    }

    public func detach() {
        state.withLock {
            unplugged = true
            due = []
            state.broadcast()
        }
    }

    /// Replies with a delay (busy card, time extensions) leave here when due,
    /// in order; an idle device's thread sleeps.
    private func replyClock() {
        while true {
            let next: (Send, [UInt8])? = state.withLock {
                while !unplugged {
                    if let first = due.first, first.at <= .now() { break }
                    _ = state.wait(until: due.first?.at ?? .distantFuture)
                }
                if unplugged { return nil }
                guard let send else { return nil }
                return (send, due.removeFirst().bytes)
            }
            guard let (send, bytes) = next else { return }
            send(endpoints.bulkIn, bytes)
        }
    }

    // MARK: from the host

    public func dataOut(endpoint: UInt8, _ message: [UInt8]) {
        guard endpoint == endpoints.bulkOut else { return }
        let steps = reader.respond(to: message)
        var immediate: [[UInt8]] = []
        state.withLock {
            var at = Deadline.now()
            // A relay reader that hangs up; on USB the device just falls silent.
            for step in steps where !step.hangUp {
                at = at.advanced(by: step.delay)
                // Keep order: once one reply waits, those after it wait too.
                if step.delay == .zero && due.isEmpty { immediate.append(step.bytes) }
                else { due.append((at, step.bytes, step.survivesAbort)) }
            }
            state.broadcast()
        }
        guard let send = state.withLock({ unplugged ? nil : self.send }) else { return }
        for bytes in immediate { send(endpoints.bulkIn, bytes) }
    }

    /// Standard GET_DESCRIPTOR and GET_STATUS; class requests go to the model. nil stalls.
    public func control(setup: [UInt8], outData: [UInt8], capacity: Int) -> [UInt8]? {
        guard setup.count == 8 else { return nil }
        let requestType = setup[0], request = setup[1]
        let value = UInt16(setup[2]) | UInt16(setup[3]) << 8, index = UInt16(setup[4]) | UInt16(setup[5]) << 8
        let length = UInt16(setup[6]) | UInt16(setup[7]) << 8
        let descriptors = reader.descriptors
        switch (requestType, request) {
        case (0x80, 0x06):
            switch value >> 8 {
            case 1: return descriptors.device
            case 2: return descriptors.configuration
            case 3:
                let i = UInt8(value & 0xFF)
                if i == 0 { return [4, 0x03, 0x09, 0x04] }
                guard let text = descriptors.strings[i] else { return nil }
                var out: [UInt8] = [0, 0x03]
                for unit in text.utf16.prefix(126) { out.appendLE(unit) }
                out[0] = UInt8(out.count)
                return out
            default: return nil
            }
        case (0x80, 0x00): return [0, 0]
        case (0x80, 0x08): return [1]
        default:
            let data = requestType & 0x80 != 0 ? [] : outData
            let answer = reader.controlRequest(ControlRequest(requestType: requestType, request: request, value: value,
                                                              index: index, length: length, data: data))
            if requestType == 0x21, request == ClassRequest.abort.rawValue {
                // The aborted command's replies still waiting are not sent (unless the reader is set to answer anyway).
                state.withLock { due.removeAll { !$0.survivesAbort } }
            }
            return answer
        }
    }
}
