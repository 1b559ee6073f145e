import CCID
import Relay
import ThreadSupport

/// A card in another process that speaks vsmartcard's vpcd protocol over
/// TCP: vicc, a jCardSim applet in vpcd mode, virt_cacard… The reader model
/// calls it as it calls any card, with the model's lock held, so every
/// exchange has one deadline: a silent or garbled card costs that deadline,
/// then the link is shut down and the card's socket (`VPCDCardSocket`) takes
/// the card out of its slot. Only that socket's thread closes the descriptor.
public final class VPCDCard: SimulatedCard, Sendable {
    public let name: String
    private struct Link: Sendable {
        var socket: StreamSocket?
        var atr: [UInt8] = []
        var powered = false
    }
    private let link: Mutex<Link>
    private let answerTimeout: Duration
    private let log: @Sendable (String) -> Void

    /// How long a card process may take to answer one message.
    public static let defaultAnswerTimeout: Duration = .seconds(30)

    init(name: String, socket: StreamSocket, answerTimeout: Duration, log: @escaping @Sendable (String) -> Void) {
        self.name = name
        self.answerTimeout = answerTimeout
        self.log = log
        link = Mutex(Link(socket: socket))
    }

    public var atr: [UInt8] { link.withLock { $0.atr } }

    /// Asks the card for its ATR (on connecting); nil if it gives none a reader could return.
    func fetchATR() -> [UInt8]? {
        link.withLock { l in answerATR(&l) }
    }

    public func reset() {}

    public func powerUp() -> [UInt8]? {
        link.withLock { l in
            guard send(l.powered ? .reset : .powerOn, &l), let atr = answerATR(&l) else { return nil }
            l.powered = true
            return atr
        }
    }

    public func powerDown() {
        link.withLock { l in
            guard l.powered else { return }
            l.powered = false
            _ = send(.powerOff, &l)
        }
    }

    public func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        guard VPCDMessage.apdu(apdu).framed() != nil else {
            log("\(name): a C-APDU of \(apdu.count) bytes does not fit a vpcd message (1 to \(VPCDMessage.frameLimit) bytes); answered 6700")
            return CardAnswer([0x67, 0x00])
        }
        return link.withLock { l in
            guard send(.apdu(apdu), &l), let response = receive(&l) else { return .silent }
            guard response.count >= 2 else {
                drop(&l, "answered with \(response.count) byte(s), not an R-APDU")
                return .silent
            }
            return CardAnswer(response)
        }
    }

    /// The link is over: the socket's thread closes the descriptor, here.
    func close() {
        link.withLock { l in
            l.socket?.close()
            l.socket = nil
        }
    }

    // MARK: The wire, with the link's lock held

    private func answerATR(_ l: inout Link) -> [UInt8]? {
        guard send(.getATR, &l), let atr = receive(&l) else { return nil }
        guard VPCDMessage.acceptableATR(atr) else {
            drop(&l, "ATR of \(atr.count) byte(s) \(hexString(atr.prefix(40), separator: "")) is not one (TS 3B or 3F, 2 to \(VPCDMessage.atrLimit) bytes)")
            return nil
        }
        l.atr = atr
        return atr
    }

    private func send(_ message: VPCDMessage, _ l: inout Link) -> Bool {
        guard let socket = l.socket, let frame = message.framed() else { return false }
        // The card speaks only when asked: anything waiting now is out of step.
        switch Self.waiting(on: socket) {
        case .nothing: break
        case .bytes(let n):
            drop(&l, "sent \(n)+ byte(s) nobody asked for")
            return false
        case .closed:
            drop(&l, "hung up")
            return false
        }
        do throws(SocketError) { try socket.writeAll(frame) } catch {
            drop(&l, "cannot be written to (\(error))")
            return false
        }
        return true
    }

    private func receive(_ l: inout Link) -> [UInt8]? {
        guard let socket = l.socket else { return nil }
        let deadline = Deadline.after(answerTimeout)
        guard let header = socket.readExactly(2, until: deadline), let length = VPCDMessage.length(header: header) else {
            drop(&l, deadline.hasPassed ? "did not answer within \(answerTimeout)" : "hung up")
            return nil
        }
        guard let body = socket.readExactly(length, until: deadline) else {
            drop(&l, deadline.hasPassed ? "announced \(length) bytes and did not send them within \(answerTimeout)" : "hung up mid-message")
            return nil
        }
        if case .bytes = Self.waiting(on: socket) {
            drop(&l, "sent more than the \(length) bytes its message announced")
            return nil
        }
        return body
    }

    private enum Waiting { case nothing, bytes(Int), closed }

    /// What the card has sent that nobody has read, without waiting.
    private static func waiting(on socket: StreamSocket) -> Waiting {
        var scratch = [UInt8](repeating: 0, count: 256)
        do throws(SocketError) {
            guard let n = try socket.readAvailable(into: &scratch) else { return .nothing }
            return n == 0 ? .closed : .bytes(n)
        } catch {
            return .closed
        }
    }

    /// Shuts the link down; the socket's thread sees the hang-up and removes the card.
    private func drop(_ l: inout Link, _ why: String) {
        guard let socket = l.socket else { return }
        log("\(name): the card \(why); link closed, card removed")
        socket.shutdown()
    }
}
