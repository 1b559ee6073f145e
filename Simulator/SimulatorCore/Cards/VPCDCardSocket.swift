import CCID
import Relay
import ThreadSupport

/// Where a slot meets card processes that speak the vpcd protocol. As vpcd
/// does, it listens on the loopback and a card (vicc, jCardSim…) connects;
/// or it connects out to a card that listens (vicc --reversed). A card
/// connecting is an insertion, a card going away a removal: the socket's
/// thread tells the slot through `insert` and `remove`, then waits for the
/// next card. A card whose first answer is not an ATR is turned away.
public final class VPCDCardSocket: CardSource, Sendable {
    public enum Mode: Sendable, Equatable {
        case listen(port: UInt16)
        case connect(host: String, port: UInt16)
    }

    public let mode: Mode
    /// The port cards connect to (listen mode; the kernel's pick for port 0).
    public let port: UInt16
    private let answerTimeout: Duration
    private let log: @Sendable (String) -> Void
    private let insert: @Sendable (VPCDCard) -> Void
    private let remove: @Sendable (VPCDCard) -> Void
    private struct State: Sendable {
        var stopped = false
        var listener: StreamSocket?
        /// The connected card's socket, for `stop` to shut down; its thread closes it.
        var current: StreamSocket?
    }
    private let state = Mutex(State())
    private let wakeup = Wakeup()

    /// Between attempts to reach a card that listens.
    static let retryInterval: Duration = .milliseconds(250)
    /// How often the thread looks at `stopped` while a card is in.
    static let watchInterval: Duration = .milliseconds(500)

    /// Listens at once in listen mode, so a port in use is an error now, not later.
    public init(_ mode: Mode, answerTimeout: Duration = VPCDCard.defaultAnswerTimeout,
                log: @escaping @Sendable (String) -> Void,
                insert: @escaping @Sendable (VPCDCard) -> Void,
                remove: @escaping @Sendable (VPCDCard) -> Void) throws(SocketError) {
        self.mode = mode
        self.answerTimeout = answerTimeout
        self.log = log
        self.insert = insert
        self.remove = remove
        switch mode {
        case .listen(let wanted):
            let listener = try StreamSocket.listenTCP(port: wanted)
            port = listener.localPort ?? wanted
            state.withLock { $0.listener = listener }
        case .connect(_, let p):
            port = p
        }
        guard startThread({ [self] in run() }) else {
            stop()
            throw SocketError(operation: "pthread_create", errno: 0)
        }
    }

    public var name: String {
        switch mode {
        case .listen: "vpcd:\(port)"
        case .connect(let host, let port): "vpcd-connect:\(host):\(port)"
        }
    }

    /// No more cards: the one connected is taken out, the thread ends.
    public func stop() {
        state.withLock { s in
            s.stopped = true
            s.listener?.shutdown()
            s.current?.shutdown()
        }
        wakeup.signal()
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run() {
        while !stopped {
            guard let socket = nextConnection() else { continue }
            socket.setNoDelay()
            serve(socket)
        }
        state.withLock { s in
            s.listener?.close()
            s.listener = nil
        }
    }

    /// The next card's connection: accepted, or made (retrying until stopped).
    private func nextConnection() -> StreamSocket? {
        switch mode {
        case .listen:
            guard let listener = state.withLock({ $0.listener }) else { return nil }
            do throws(SocketError) { return try listener.accept() } catch {
                if !stopped {
                    log("\(name): accept failed (\(error)); no more cards")
                    state.withLock { $0.stopped = true }
                }
                return nil
            }
        case .connect(let host, let port):
            do throws(SocketError) { return try StreamSocket.connectTCP(host: host, port: port) } catch {
                _ = wakeup.wait(until: .after(Self.retryInterval))
                return nil
            }
        }
    }

    /// One card, from connecting to going away.
    private func serve(_ socket: StreamSocket) {
        let registered = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.current = socket
            return true
        }
        guard registered else {
            socket.close()
            return
        }
        let card = VPCDCard(name: name, socket: socket, answerTimeout: answerTimeout, log: log)
        if let atr = card.fetchATR() {
            log("\(name): card connected, ATR \(hexString(atr, separator: ""))")
            insert(card)
            while !stopped, !socket.waitHangUp(until: .after(Self.watchInterval)) {}
            remove(card)
            log("\(name): card gone")
        }
        state.withLock { $0.current = nil }
        card.close()
        if case .connect = mode, !stopped {
            // A card that listens (vicc --reversed) takes a moment to listen again.
            _ = wakeup.wait(until: .after(Self.retryInterval))
        }
    }
}
