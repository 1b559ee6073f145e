#if canImport(Glibc)
import Glibc
#endif
import CCID
import Relay
import RelayServer
import ThreadSupport

/// One simulated reader to serve: its profile and the card in each slot.
public struct ReaderSetup: Sendable {
    public var profile: ReaderProfile
    /// The card per slot (nil: empty slot); missing entries are empty.
    public var cards: [CardSpec?]
    public init(profile: ReaderProfile, cards: [CardSpec?]) {
        self.profile = profile
        self.cards = cards
    }
}

/// The running simulator: readers served as relay sockets in `directory`
/// (`sim0.sock`, `sim1.sock`, …) or, in USB mode, plugged into a `ReaderBus`;
/// and a control socket (`control.sock`) that `ccid-sim list/insert/remove/
/// plug/unplug` talk to. Readers keep their number when unplugged.
public final class Simulator: Sendable {
    public let directory: String
    private let bus: ReaderBus?
    private struct State: Sendable {
        var entries: [SimulatedReader] = []
        var listeners: [Int: RelayListener] = [:]
        var locations: [Int: String] = [:]
        var control: ControlServer?
        var spinAfterReply: Duration = .zero
        /// Slots whose cards come and go: vpcd sockets, other PC/SC readers.
        var cardSources: [SlotAddress: CardSource] = [:]
    }
    private struct SlotAddress: Hashable, Sendable { var reader: Int, slot: Int }
    private let state = Mutex(State())
    private let log: @Sendable (String) -> Void
    private let recorder: Recorder?
    private let capture: USBCapture?
    private let pcscCards: PCSCCardSourceMaker?

    public static let controlSocketName = "control.sock"
    public static func socketName(_ index: Int) -> String { "sim\(index).sock" }

    /// The readers so far, plugged or not, by number.
    public var readers: [SimulatedReader] { state.withLock { $0.entries } }

    /// `recorder`: every slot's card events and exchanges go to it (`--record`);
    /// `capture`: every reader's USB traffic (`--pcap`); `pcscCards`: what
    /// makes `pcsc:READER` cards (ccid-sim's PC/SC client).
    public init(directory: String, setups: [ReaderSetup], bus: ReaderBus? = nil, recorder: Recorder? = nil,
                capture: USBCapture? = nil, pcscCards: PCSCCardSourceMaker? = nil,
                log: @escaping @Sendable (String) -> Void) throws(SimulatorError) {
        self.directory = directory
        self.pcscCards = pcscCards
        self.recorder = recorder
        self.capture = capture
        self.bus = bus
        self.log = log
        do throws(SimulatorError) {
            for setup in setups { _ = try add(setup) }
        } catch {
            stopCardSources()
            throw error
        }
    }

    /// A new reader with its cards, not yet shown to hosts; returns its number.
    private func add(_ setup: ReaderSetup) throws(SimulatorError) -> Int {
        let index = state.withLock { s in
            let i = s.entries.count
            s.entries.append(SimulatedReader(name: "sim\(i)", profile: setup.profile, serialNumber: "SIM\(1000 + i)",
                                             recorder: recorder, capture: capture, deviceNumber: UInt8(min(127, 2 + i))))
            return i
        }
        for (slot, card) in setup.cards.enumerated() {
            guard let card else { continue }
            do throws(SimulatorError) { try insert(card, reader: index, slot: slot) } catch {
                throw .config("reader \(index): \(error)")
            }
        }
        return index
    }

    // MARK: Cards

    /// Puts a card in a slot, taking out what was there: a built-in card at
    /// once; for a vpcd card, the slot is empty until a card process connects.
    public func insert(_ card: CardSpec, reader index: Int, slot: Int) throws(SimulatorError) {
        guard let reader = readers.dropFirst(index).first else { throw .config("no reader \(index)") }
        let address = SlotAddress(reader: index, slot: slot)
        stopCardSource(address)
        switch card {
        case .builtIn(let variant):
            try Self.slotAction { () throws(SimulatedReader.SlotActionError) in try reader.insert(ComplianceTestCard(variant), slot: slot) }
        case .replay(let path):
            let card = try ReplayCard(path: path, log: log)
            try Self.slotAction { () throws(SimulatedReader.SlotActionError) in try reader.insert(card, slot: slot) }
        case .vpcd(let mode):
            try Self.slotAction { () throws(SimulatedReader.SlotActionError) in try reader.remove(slot: slot) }
            let socket: VPCDCardSocket
            do throws(SocketError) {
                socket = try VPCDCardSocket(mode, log: log,
                                            insert: { card in try? reader.insert(card, slot: slot) },
                                            remove: { card in reader.remove(slot: slot, ifStill: card) })
            } catch {
                throw .socket(error)
            }
            state.withLock { $0.cardSources[address] = socket }
        case .pcsc(let name):
            guard let pcscCards else { throw .config("\(card): this simulator has no PC/SC client") }
            try Self.slotAction { () throws(SimulatedReader.SlotActionError) in try reader.remove(slot: slot) }
            let events = SlotEvents(insert: { card in try? reader.insert(card, slot: slot) },
                                    remove: { card in reader.remove(slot: slot, ifStill: card) }, log: log)
            let source = try pcscCards(name, events)
            state.withLock { $0.cardSources[address] = source }
        }
    }

    private static func slotAction(_ body: () throws(SimulatedReader.SlotActionError) -> Void) throws(SimulatorError) {
        do throws(SimulatedReader.SlotActionError) { try body() } catch { throw .config("\(error)") }
    }

    /// Takes the card out of a slot (and closes its vpcd socket, if it has one).
    public func remove(reader index: Int, slot: Int) throws(SimulatorError) {
        guard let reader = readers.dropFirst(index).first else { throw .config("no reader \(index)") }
        stopCardSource(SlotAddress(reader: index, slot: slot))
        try Self.slotAction { () throws(SimulatedReader.SlotActionError) in try reader.remove(slot: slot) }
    }

    private func stopCardSource(_ address: SlotAddress) {
        state.withLock { $0.cardSources.removeValue(forKey: address) }?.stop()
    }

    private func stopCardSources() {
        let sockets = state.withLock { s in
            defer { s.cardSources = [:] }
            return Array(s.cardSources.values)
        }
        for socket in sockets { socket.stop() }
    }

    /// What a slot shows in `list`: its card, or the vpcd socket waiting for one.
    private func slotListing(reader index: Int, slot: Int) -> String {
        if let name = readers[index].cardName(slot: slot) { return name }
        if let socket = state.withLock({ $0.cardSources[SlotAddress(reader: index, slot: slot)] }) {
            return "\(socket.name) (no card connected)"
        }
        return "empty"
    }

    public func socketPath(_ index: Int) -> String { "\(directory)/\(Self.socketName(index))" }

    /// The reader.conf FRIENDLYNAME; pcscd names slot S of it "<name> NN SS",
    /// NN being pcscd's own reader number.
    public func friendlyName(_ index: Int) -> String {
        let r = readers[index]
        return "\(r.profile.product) [\(r.name)]"
    }

    /// The slot a PC/SC reader name of reader `index` names, if it is one:
    /// "<friendly name> NN SS" for relay readers; for USB readers pcscd builds
    /// the name from the driver's list and the device, which carries the
    /// reader's serial number "(SIMnnnn)".
    func slot(inPCSCName token: String, reader index: Int) -> Int? {
        let reader = readers[index]
        let rest: Substring
        if token.hasPrefix(friendlyName(index) + " ") {
            rest = token.dropFirst(friendlyName(index).count + 1)
        } else if let r = Self.after("(\(reader.serialNumber)) ", in: token) {
            rest = r
        } else {
            return nil
        }
        let numbers = rest.split(separator: " ")
        guard numbers.count == 2, numbers.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }),
              let slot = Int(numbers[1], radix: 16), slot < reader.slotCount else { return nil }
        return slot
    }

    /// What follows the first occurrence of `marker` in `text` (no Foundation here).
    private static func after(_ marker: String, in text: String) -> Substring? {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i...].hasPrefix(marker) { return text[text.index(i, offsetBy: marker.count)...] }
            i = text.index(after: i)
        }
        return nil
    }

    public func start(spinAfterReply: Duration = .zero) throws(SimulatorError) {
        state.withLock { $0.spinAfterReply = spinAfterReply }
        for i in readers.indices { try show(i) }
        do throws(SocketError) {
            let control = try ControlServer(path: "\(directory)/\(Self.controlSocketName)", simulator: self, log: log)
            state.withLock { $0.control = control }
        } catch {
            throw .socket(error)
        }
    }

    /// Serves reader `i` on its socket, or plugs it into the bus.
    private func show(_ i: Int) throws(SimulatorError) {
        let reader = readers[i]
        if let bus {
            let node = try bus.plug(reader)
            state.withLock { $0.locations[i] = node }
            return
        }
        do throws(SocketError) {
            let path = socketPath(i)
            let listener = try RelayListener(path: path, device: reader, spinAfterReply: state.withLock { $0.spinAfterReply }, log: log)
            state.withLock { s in
                s.listeners[i] = listener
                s.locations[i] = path
            }
        } catch {
            throw .socket(error)
        }
    }

    /// A new reader, plugged in at once (hotplug); returns its number.
    public func plug(_ setup: ReaderSetup) throws(SimulatorError) -> Int {
        let index = try add(setup)
        try show(index)
        return index
    }

    /// Takes reader `index` away, as pulling its plug: hosts see it vanish.
    public func unplug(_ index: Int) -> Bool {
        let (reader, listener, wasThere) = state.withLock { s -> (SimulatedReader?, RelayListener?, Bool) in
            guard s.entries.indices.contains(index) else { return (nil, nil, false) }
            return (s.entries[index], s.listeners.removeValue(forKey: index), s.locations.removeValue(forKey: index) != nil)
        }
        guard let reader, wasThere else { return false }
        listener?.stop()
        bus?.unplug(reader)
        return true
    }

    /// A system suspend and resume of reader `index` (USB only; see `ReaderBus.suspendAndResume`).
    public func suspendAndResume(_ index: Int, stale: Duration) throws(SimulatorError) {
        guard let bus else { throw .config("suspend needs USB mode (--usb or --gadget)") }
        let reader: SimulatedReader? = state.withLock { s in
            s.entries.indices.contains(index) && s.locations[index] != nil ? s.entries[index] : nil
        }
        guard let reader else { throw .config("reader \(index) is not plugged in") }
        let node = try bus.suspendAndResume(reader, stale: stale)
        state.withLock { $0.locations[index] = node }
    }

    public func location(_ index: Int) -> String? { state.withLock { $0.locations[index] } }

    public func stop() {
        let (control, listeners) = state.withLock { ($0.control, Array($0.listeners.values)) }
        control?.stop()
        stopCardSources()
        for l in listeners { l.stop() }
        bus?.stop()
    }

    /// Resolves READER as the number `list` shows, the simulator's name
    /// (sim0) or the name a PC/SC application sees (which also names a slot).
    public func resolve(_ token: String) -> (index: Int, slot: Int?)? {
        let all = readers
        if let n = Int(token), all.indices.contains(n) { return (n, nil) }
        if let i = all.firstIndex(where: { $0.name == token }) { return (i, nil) }
        for i in all.indices {
            if token == friendlyName(i) { return (i, nil) }
            if let s = slot(inPCSCName: token, reader: i) { return (i, s) }
        }
        return nil
    }

    /// One line per reader: number, name, profile, relay friendly name, cards, where it is plugged.
    public func listing() -> [String] {
        readers.enumerated().map { i, r in
            let cards = (0..<r.slotCount).map { "slot \($0): \(slotListing(reader: i, slot: $0))" }.joined(separator: ", ")
            return "\(i)\t\(r.name)\t\(r.profile.name)\t\(friendlyName(i))\t\(cards)\t\(location(i) ?? "unplugged")"
        }
    }

    /// One line per reader: number, name, bulk-out and bulk-in CCID messages so far.
    public func messageCounts() -> [String] {
        readers.enumerated().map { i, r in
            let counts = r.messageCounts
            return "\(i)\t\(r.name)\t\(counts.bulkOut)\t\(counts.bulkIn)"
        }
    }
}

public enum SimulatorError: Error, CustomStringConvertible {
    case config(String)
    case socket(SocketError)

    public var description: String {
        switch self {
        case .config(let why): why
        case .socket(let e): "\(e)"
        }
    }
}

/// Where readers are shown to hosts when not (only) as relay sockets: the
/// simulator's USB mode plugs them into a mocked USB bus.
public protocol ReaderBus: AnyObject, Sendable {
    /// Shows `reader` to hosts; returns where it appeared (a device node).
    func plug(_ reader: SimulatedReader) throws(SimulatorError) -> String
    func unplug(_ reader: SimulatedReader)
    /// A system suspend and resume with USB persist off; returns where the reader came back.
    func suspendAndResume(_ reader: SimulatedReader, stale: Duration) throws(SimulatorError) -> String
    func stop()
}
