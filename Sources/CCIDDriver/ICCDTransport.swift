import CCID
import ThreadSupport

/// An ICCD token (USB ICCD version A or B: control requests, no bulk pipes)
/// seen by the driver as the CCID reader its class descriptor describes.
/// Each CCID command sent becomes the class requests that do its work
/// (`ICCDExchange`), made when its reply is read, under that read's deadline;
/// the reply is the one a reader would give. A busy token shows as a time
/// extension, so the driver's one deadline per APDU bounds the polling too.
///
/// The descriptor the driver sees says how the token is driven: version A at
/// TPDU level, T=0 (the token runs the procedure bytes itself); version B at
/// extended-APDU level, whatever level it declares (version B moves APDUs,
/// chained as CCID's extended level; the reference driver drives a short-APDU
/// one so, and one of the corpus declares character level against the spec).
public final class ICCDTransport: CCIDTransport, Sendable {
    public let identity: DeviceIdentity
    private let inner: CCIDTransport
    private let version: ICCDVersion

    private struct State: Sendable {
        var exchange: ICCDExchange?
        var next: ICCDExchange.Step?
        /// A wait already reported as a time extension: it is waited out on the next read.
        var reportedWait: Duration?
        var powered = false
    }
    private let state = Mutex(State())

    /// `transport` itself for a CCID device; wrapped for an ICCD token.
    public static func wrapping(_ transport: CCIDTransport) -> CCIDTransport {
        guard let version = transport.identity.iccd else { return transport }
        return ICCDTransport(inner: transport, version: version)
    }

    init(inner: CCIDTransport, version: ICCDVersion) {
        self.inner = inner
        self.version = version
        identity = Self.drivenAs(inner.identity, version: version)
    }

    /// The identity as the driver drives the token.
    static func drivenAs(_ identity: DeviceIdentity, version: ICCDVersion) -> DeviceIdentity {
        var i = identity
        var features = i.classDescriptor.features.rawValue & ~ClassDescriptor.Features.exchangeLevelMask
        switch version {
        case .a:
            features |= ExchangeLevel.tpdu.rawValue
            i.classDescriptor.protocols = .t0
        case .b:
            features |= ExchangeLevel.extendedAPDU.rawValue
        }
        i.classDescriptor.features = ClassDescriptor.Features(rawValue: features)
        // One slot: the token's own chip.
        i.classDescriptor.maxSlotIndex = 0
        return i
    }

    public func sendBulk(_ message: [UInt8], deadline: Deadline) throws(TransportError) {
        let command: Command
        do throws(CCIDDecodingError) { command = try Command(decoding: message) } catch {
            throw .protocolViolation("not a CCID command for the ICCD token: \(error)")
        }
        state.withLock { s in
            var exchange = ICCDExchange(command: command, version: version, interface: UInt16(identity.interfaceNumber),
                                        powered: s.powered, protocols: identity.classDescriptor.protocols)
            s.next = exchange.start()
            s.exchange = exchange
            s.reportedWait = nil
        }
    }

    public func receiveBulk(deadline: Deadline) throws(TransportError) -> [UInt8] {
        let taken = state.withLock { s -> (ICCDExchange, ICCDExchange.Step, Duration?)? in
            guard let e = s.exchange, let n = s.next else { return nil }
            defer { s.exchange = nil; s.next = nil; s.reportedWait = nil }
            return (e, n, s.reportedWait)
        }
        guard var (exchange, step, reported) = taken else {
            // Nothing was asked: like a reader with nothing to say, silence until the deadline.
            deadline.sleepUntil()
            throw .timeout
        }
        while true {
            switch step {
            case .request(let request):
                do throws(TransportError) {
                    step = exchange.received(try inner.control(request, deadline: deadline))
                } catch .stalled {
                    step = exchange.stalled()
                }
            case .wait(let delay):
                guard let waited = reported else {
                    // Report the wait first: the driver extends this command's deadline (within its cap).
                    state.withLock { s in
                        s.exchange = exchange
                        s.next = step
                        s.reportedWait = delay
                    }
                    return timeExtension(for: exchange.command).encoded()
                }
                let until = Deadline.after(waited)
                Deadline.min(until, deadline).sleepUntil()
                if deadline < until { throw .timeout }
                reported = nil
                step = exchange.resume()
            case .done(let reply):
                if reply.status.command == .processed {
                    switch exchange.command.body {
                    case .iccPowerOn: state.withLock { $0.powered = true }
                    case .iccPowerOff: state.withLock { $0.powered = false }
                    default: break
                    }
                }
                return reply.encoded()
            }
        }
    }

    private func timeExtension(for command: Command) -> Reply {
        Reply(slot: command.slot, sequence: command.sequence, status: SlotStatus(icc: .presentActive, command: .timeExtension),
              error: 1, body: .dataBlock(chainParameter: 0, data: []))
    }

    /// ICCD has no ABORT request: a command the driver gives up on is simply not asked about again.
    public func control(_ request: ControlRequest, deadline: Deadline) throws(TransportError) -> [UInt8] {
        if request.requestType == 0x21, request.request == ClassRequest.abort.rawValue { return [] }
        return try inner.control(request, deadline: deadline)
    }

    public func receiveInterrupt(deadline: Deadline) throws(TransportError) -> [UInt8] {
        try inner.receiveInterrupt(deadline: deadline)
    }

    public func cancelInterruptWait() { inner.cancelInterruptWait() }

    public func close() { inner.close() }
}
