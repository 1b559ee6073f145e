import CPCSCClient
import SimulatorCore
import ThreadSupport

/// `--card pcsc:READER`: the slot holds whatever card is in READER of
/// another PC/SC stack (the pcscd `PCSCLITE_CSOCK_NAME` names, else the
/// system's). READER is a reader's name, or a part of one that names a
/// single reader. A card inserted there is inserted here, and so is its
/// removal; the reader may come later, or go.
public final class PCSCCardSource: CardSource, Sendable {
    public let name: String
    private let wanted: String
    private let events: SlotEvents
    private struct State: Sendable {
        var stopped = false
        var context: PCSCContext?
    }
    private let state = Mutex(State())
    private let wakeup = Wakeup()
    static let lookInterval: Duration = .milliseconds(250)

    public static let maker: PCSCCardSourceMaker = { reader, events throws(SimulatorError) in
        try PCSCCardSource(reader: reader, events: events)
    }

    init(reader: String, events: SlotEvents) throws(SimulatorError) {
        name = "pcsc:\(reader)"
        wanted = reader
        self.events = events
        let context: PCSCContext
        do throws(PCSCError) { context = try PCSCContext.establish() } catch {
            throw .config("\(name): no PC/SC service to take cards from (\(error))")
        }
        state.withLock { $0.context = context }
        guard startThread({ [self] in run(context) }) else {
            context.release()
            throw .config("\(name): pthread_create failed")
        }
    }

    public func stop() {
        state.withLock { s in
            s.stopped = true
            s.context?.cancel()
        }
        wakeup.signal()
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run(_ context: PCSCContext) {
        var card: PCSCCard?
        var known = PCSC.stateUnknown
        var reader: String?
        var waitingSaid = false
        while !stopped {
            guard let name = reader ?? resolve(context) else {
                if !waitingSaid { events.log("\(self.name): waiting for a reader named \"\(wanted)\"") }
                waitingSaid = true
                _ = wakeup.wait(until: .after(Self.lookInterval))
                continue
            }
            reader = name
            let change: (state: DWORD, atr: [UInt8])
            do throws(PCSCError) { change = try context.waitForChange(reader: name, known: known, timeoutMs: 1000) } catch {
                if error.code == PCSC.cancelled { break }
                // The reader went away: so did its card.
                if let c = card { events.remove(c); c.close(); card = nil }
                reader = nil
                known = PCSC.stateUnknown
                continue
            }
            known = change.state
            let present = change.state & PCSC.statePresent != 0
            if present, card == nil, !change.atr.isEmpty {
                let c = PCSCCard(reader: name, atr: change.atr, log: events.log)
                card = c
                events.insert(c)
            } else if !present, let c = card {
                events.remove(c)
                c.close()
                card = nil
            }
        }
        if let c = card { events.remove(c); c.close() }
        state.withLock { s in
            s.context = nil
        }
        context.release()
    }

    /// The reader READER names: that name, or the one reader whose name contains it.
    private func resolve(_ context: PCSCContext) -> String? {
        let all = context.readers()
        if all.contains(wanted) { return wanted }
        let matching = all.filter { $0.contains(wanted) }
        return matching.count == 1 ? matching[0] : nil
    }
}
