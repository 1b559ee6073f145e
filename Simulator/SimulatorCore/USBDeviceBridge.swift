import CCID
import ThreadSupport

/// The device side of one simulated reader on a USB bus (umockdev's or a
/// real gadget's): bulk-out messages in, replies out through the reader's
/// scheduler for this bus, interrupt messages as they come, control
/// requests answered on the spot.
public final class USBDeviceBridge: Sendable {
    public typealias Send = @Sendable (_ endpoint: UInt8, _ bytes: [UInt8]) -> Void
    public let reader: SimulatedReader
    public let endpoints: CCIDEndpoints
    private let scheduler = ReplyScheduler()
    /// Where interrupt messages go while the device is plugged in.
    private let interruptSink = Mutex<Send?>(nil)

    public init(reader: SimulatedReader, endpoints: CCIDEndpoints) {
        self.reader = reader
        self.endpoints = endpoints
    }

    /// Called once the bus side can carry data.
    public func attach(send: @escaping Send) {
        let bulkIn = endpoints.bulkIn
        // A reader that "hangs up" on USB just falls silent for that command.
        scheduler.attach(reader.sink(send: { send(bulkIn, $0) }))
        guard let interrupt = endpoints.interruptIn else { return }
        interruptSink.withLock { $0 = send }
        reader.observeInterrupts { [weak self] message in
            guard let send = self?.interruptSink.withLock({ $0 }) else { return }
            send(interrupt, message)
        }
    }

    public func detach() {
        interruptSink.withLock { $0 = nil }
        scheduler.detach()
    }

    // MARK: from the host

    public func dataOut(endpoint: UInt8, _ message: [UInt8]) {
        guard endpoint == endpoints.bulkOut else { return }
        scheduler.deliver(reader.respond(to: message))
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
            return reader.controlRequest(ControlRequest(requestType: requestType, request: request, value: value,
                                                        index: index, length: length, data: data), scheduler: scheduler)
        }
    }
}
