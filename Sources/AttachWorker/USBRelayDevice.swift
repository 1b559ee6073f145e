import CCID
import Relay
import RelayServer
import ThreadSupport

/// A real USB reader served over the relay protocol: bulk-out messages go to
/// the device, and two pumps forward whatever the device sends on its bulk-in
/// and interrupt endpoints to the connected client. The pumps stop, and
/// `onGone` runs once, when the device disappears.
public final class USBRelayDevice: RelayDevice, Sendable {
    private let transport: CCIDTransport
    public let descriptors: USBDescriptorSet
    private struct State: Sendable {
        var connection: RelayServerConnection?
        var gone = false
        var stopped = false
    }
    private let state = Mutex(State())
    private let onGone: @Sendable () -> Void
    /// Told of each client that connects (its pid) and leaves (nil).
    private let onClient: @Sendable (Int32?) -> Void
    private let log: @Sendable (String) -> Void
    /// What one write to the device may take: a stuck device costs this, once.
    static let writeTime: Duration = .seconds(5)

    public init(transport: CCIDTransport, descriptors: USBDescriptorSet, log: @escaping @Sendable (String) -> Void,
                onGone: @escaping @Sendable () -> Void, onClient: @escaping @Sendable (Int32?) -> Void = { _ in }) {
        self.transport = transport
        self.descriptors = descriptors
        self.log = log
        self.onGone = onGone
        self.onClient = onClient
    }

    /// Starts the pumps. An ICCD token has no bulk-in to pump: its exchanges
    /// are control requests, relayed as they come (the driver makes them).
    public func start() -> Bool {
        if transport.identity.iccd == nil {
            guard startThread({ [self] in pump(interrupt: false) }) else { return false }
        }
        if transport.identity.hasInterruptEndpoint {
            guard startThread({ [self] in pump(interrupt: true) }) else { return false }
        }
        return true
    }

    /// Ends the pumps by closing the device (a pending read is never
    /// cancelled otherwise: on a real bus that could lose a reply).
    public func stop() {
        state.withLock { $0.stopped = true }
        transport.close()
    }

    public var clientPID: Int32? { state.withLock { $0.connection?.peer?.pid } }

    private func pump(interrupt: Bool) {
        while !state.withLock({ $0.stopped || $0.gone }) {
            let bytes: [UInt8]
            do throws(TransportError) {
                bytes = interrupt ? try transport.receiveInterrupt(deadline: .distantFuture)
                                  : try transport.receiveBulk(deadline: .distantFuture)
            } catch {
                switch error {
                case .timeout, .cancelled: continue
                case .noDevice:
                    if !state.withLock({ $0.stopped }) { deviceGone() }
                    return
                case .stalled, .protocolViolation:
                    log("\(interrupt ? "interrupt" : "bulk-in") pipe: \(error)")
                    continue
                }
            }
            state.withLock { $0.connection }?.send(interrupt ? .interruptIn(bytes) : .bulkIn(bytes))
        }
    }

    private func deviceGone() {
        let (first, connection) = state.withLock { s in
            defer { s.gone = true }
            return (!s.gone, s.connection)
        }
        guard first else { return }
        connection?.hangUp()
        onGone()
    }

    // MARK: RelayDevice

    public func connected(_ connection: RelayServerConnection) {
        state.withLock { $0.connection = connection }
        onClient(connection.peer?.pid)
    }

    public func disconnected(_ connection: RelayServerConnection) {
        state.withLock { if $0.connection === connection { $0.connection = nil } }
        onClient(nil)
    }

    public func bulkOut(_ message: [UInt8], from connection: RelayServerConnection) {
        do throws(TransportError) { try transport.sendBulk(message, deadline: .after(Self.writeTime)) } catch {
            log("bulk-out: \(error)")
            if error == .noDevice { deviceGone() }
        }
    }

    public func control(_ request: ControlRequest, from connection: RelayServerConnection) -> [UInt8]? {
        do throws(TransportError) { return try transport.control(request, deadline: .after(Self.writeTime)) } catch {
            if error == .noDevice { deviceGone() } else if error != .stalled { log("control request: \(error)") }
            return nil
        }
    }
}
