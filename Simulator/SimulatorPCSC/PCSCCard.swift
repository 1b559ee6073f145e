import CPCSCClient
import CCID
import SimulatorCore
import ThreadSupport

/// The card in a reader of another PC/SC stack (a real token on the system's
/// pcscd, or another ccid-sim's): power and APDUs go to it through
/// libpcsclite, so it can sit behind any simulated reader profile.
final class PCSCCard: SimulatedCard, Sendable {
    let name: String
    private let reader: String
    private struct Link: Sendable {
        var context: PCSCContext?
        var card: SCARDHANDLE = 0
        var activeProtocol: DWORD = 0
        var atr: [UInt8]
    }
    private let link: Mutex<Link>
    private let log: @Sendable (String) -> Void

    /// The longest R-APDU: 65,536 bytes and the status word.
    static let responseLimit = 65_538

    init(reader: String, atr: [UInt8], log: @escaping @Sendable (String) -> Void) {
        name = "pcsc:\(reader)"
        self.reader = reader
        self.log = log
        link = Mutex(Link(atr: atr))
    }

    var atr: [UInt8] { link.withLock { $0.atr } }

    func reset() {}

    func powerUp() -> [UInt8]? {
        link.withLock { l in
            do throws(PCSCError) {
                let context: PCSCContext
                if let existing = l.context { context = existing } else { context = try PCSCContext.establish() }
                l.context = context
                let protocols = PCSC.protocolT0 | PCSC.protocolT1
                if l.card != 0 {
                    try PCSCError.check(context.library.reconnect(l.card, PCSC.shareShared, protocols, PCSC.resetCard, &l.activeProtocol), "SCardReconnect")
                } else {
                    try PCSCError.check(context.library.connect(context.handle, reader, PCSC.shareShared, protocols, &l.card, &l.activeProtocol),
                                        "SCardConnect")
                }
                l.atr = try status(l.card, context.library)
                return l.atr
            } catch {
                log("\(name): power on: \(error)")
                return nil
            }
        }
    }

    func powerDown() {
        link.withLock { l in
            guard l.card != 0, let library = l.context?.library else { return }
            _ = library.disconnect(l.card, PCSC.unpowerCard)
            l.card = 0
        }
    }

    func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        link.withLock { l in
            guard l.card != 0, let library = l.context?.library else { return .silent }
            // What libpcsclite's g_rgSCardT0Pci / T1Pci hold.
            var pci = SCARD_IO_REQUEST(dwProtocol: l.activeProtocol, cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
            var response = [UInt8](repeating: 0, count: Self.responseLimit)
            var length = DWORD(response.count)
            let rv = library.transmit(l.card, &pci, apdu, DWORD(apdu.count), nil, &response, &length)
            guard rv == PCSC.success, length >= 2 else {
                log("\(name): transmit: \(PCSCError(call: "SCardTransmit", code: rv))")
                return .silent
            }
            return CardAnswer(Array(response.prefix(Int(length))))
        }
    }

    /// The card is gone from its reader: let go of the handle and the context.
    func close() {
        link.withLock { l in
            if l.card != 0, let library = l.context?.library { _ = library.disconnect(l.card, PCSC.leaveCard) }
            l.card = 0
            l.context?.release()
            l.context = nil
        }
    }

    private func status(_ card: SCARDHANDLE, _ library: PCSCLibrary) throws(PCSCError) -> [UInt8] {
        var atr = [UInt8](repeating: 0, count: 33)
        var atrLength = DWORD(atr.count)
        var state: DWORD = 0, proto: DWORD = 0
        try PCSCError.check(library.status(card, nil, nil, &state, &proto, &atr, &atrLength), "SCardStatus")
        return Array(atr.prefix(Int(min(atrLength, 33))))
    }
}
