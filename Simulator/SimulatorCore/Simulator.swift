#if canImport(Glibc)
import Glibc
#endif
import CCID
import Relay
import ThreadSupport

/// One simulated reader to serve: its profile and the card in each slot.
public struct ReaderSetup: Sendable {
    public var profile: ReaderProfile
    /// Card name per slot (nil: empty slot); missing entries are empty.
    public var cards: [String?]
    public init(profile: ReaderProfile, cards: [String?]) {
        self.profile = profile
        self.cards = cards
    }
}

/// The running simulator: readers served as relay sockets in `directory`
/// (`sim0.sock`, `sim1.sock`, …) and a control socket (`control.sock`) that
/// `ccid-sim list/insert/remove` talk to.
public final class Simulator: @unchecked Sendable {
    public let directory: String
    public let readers: [SimulatedReader]
    private var listeners: [RelayListener] = []
    private var control: ControlServer?
    private let log: @Sendable (String) -> Void

    public static let controlSocketName = "control.sock"
    public static func socketName(_ index: Int) -> String { "sim\(index).sock" }

    public init(directory: String, setups: [ReaderSetup], log: @escaping @Sendable (String) -> Void) throws(SimulatorError) {
        self.directory = directory
        self.log = log
        var readers: [SimulatedReader] = []
        for (i, setup) in setups.enumerated() {
            let reader = SimulatedReader(name: "sim\(i)", profile: setup.profile, serialNumber: "SIM\(1000 + i)")
            for (slot, card) in setup.cards.enumerated() {
                guard let card else { continue }
                guard let model = CardCatalog.make(card) else { throw .unknownCard(card) }
                do throws(SimulatedReader.SlotActionError) { try reader.insert(model, slot: slot) } catch {
                    throw .config("reader \(i): \(error)")
                }
            }
            readers.append(reader)
        }
        self.readers = readers
    }

    public func socketPath(_ index: Int) -> String { "\(directory)/\(Self.socketName(index))" }

    /// The reader.conf FRIENDLYNAME; pcscd names slot S of it "<name> NN SS",
    /// NN being pcscd's own reader number.
    public func friendlyName(_ index: Int) -> String {
        let r = readers[index]
        return "\(r.profile.product) [\(r.name)]"
    }

    /// The slot a PC/SC reader name of reader `index` names, if it is one.
    func slot(inPCSCName token: String, reader index: Int) -> Int? {
        let prefix = friendlyName(index) + " "
        guard token.hasPrefix(prefix) else { return nil }
        let numbers = token.dropFirst(prefix.count).split(separator: " ")
        guard numbers.count == 2, numbers.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }),
              let slot = Int(numbers[1], radix: 16), slot < readers[index].slotCount else { return nil }
        return slot
    }

    public func start(spinAfterReply: Duration = .zero) throws(SimulatorError) {
        for i in readers.indices {
            do throws(SocketError) {
                listeners.append(try RelayListener(path: socketPath(i), device: readers[i],
                                                   spinAfterReply: spinAfterReply, log: log))
            } catch {
                throw .socket(error)
            }
        }
        do throws(SocketError) {
            control = try ControlServer(path: "\(directory)/\(Self.controlSocketName)", simulator: self, log: log)
        } catch {
            throw .socket(error)
        }
    }

    public func stop() {
        control?.stop()
        for l in listeners { l.stop() }
    }

    /// Resolves READER as the number `list` shows, the simulator's name
    /// (sim0) or the name a PC/SC application sees (which also names a slot).
    public func resolve(_ token: String) -> (index: Int, slot: Int?)? {
        if let n = Int(token), readers.indices.contains(n) { return (n, nil) }
        if let i = readers.firstIndex(where: { $0.name == token }) { return (i, nil) }
        for i in readers.indices {
            if token == friendlyName(i) { return (i, nil) }
            if let s = slot(inPCSCName: token, reader: i) { return (i, s) }
        }
        return nil
    }

    public func listing() -> [String] {
        readers.indices.map { i in
            let r = readers[i]
            let cards = (0..<r.slotCount).map { "slot \($0): \(r.cardName(slot: $0) ?? "empty")" }.joined(separator: ", ")
            return "\(i)\t\(r.name)\t\(r.profile.name)\t\(friendlyName(i))\t\(cards)"
        }
    }
}

public enum SimulatorError: Error, CustomStringConvertible {
    case unknownCard(String)
    case config(String)
    case socket(SocketError)

    public var description: String {
        switch self {
        case .unknownCard(let c): "no card named '\(c)' (cards: \(CardCatalog.names.joined(separator: ", ")))"
        case .config(let why): why
        case .socket(let e): "\(e)"
        }
    }
}
