import ArgumentParser
import Foundation
import SimulatorCore

func control(_ directory: DirectoryOption, _ request: SimulatorRequest) throws -> [String] {
    let answer: SimulatorAnswer
    do { answer = try ControlClient.request(directory: directory.resolved, request) } catch {
        throw ValidationError("no simulator running in \(directory.resolved) (\(error)); start one with `ccid-sim serve` or `ccid-sim pcscd`")
    }
    if let error = answer.error { fail(error) }
    return answer.lines
}

extension CardSpec: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public static var allValueStrings: [String] { syntax }
}

/// A card to insert, or none (an empty slot).
enum CardChoice: ExpressibleByArgument, CustomStringConvertible {
    case none
    case card(CardSpec)

    init?(argument: String) {
        if argument == "none" { self = .none; return }
        guard let card = CardSpec(argument) else { return nil }
        self = .card(card)
    }

    static var allValueStrings: [String] { CardSpec.syntax + ["none"] }
    static let defaultCard = CardChoice.card(.defaultCard)
    var card: CardSpec? { if case .card(let c) = self { c } else { nil } }
    var description: String { card?.description ?? "none" }
}

/// What the user does at a PIN pad.
enum PINPadVerb: String, ExpressibleByArgument, CaseIterable { case enter, cancel, timeout }

/// One fault setting, checked against the fault table.
struct FaultSetting: ExpressibleByArgument {
    let text: String
    init?(argument: String) {
        var scratch = Faults()
        guard scratch.apply(argument) else { return nil }
        text = argument
    }
    static var allValueStrings: [String] { Faults.table.map(\.syntax) }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running simulator's readers: number, name, profile, PC/SC name, cards.")
    @OptionGroup var directory: DirectoryOption
    @Flag(help: "Print each reader's CCID traffic instead: number, name, bulk-out and bulk-in messages since it was created.")
    var counts = false

    func run() throws {
        for line in try control(directory, counts ? .counts : .list) { print(line) }
    }
}

struct Insert: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Insert a card into a reader's slot.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader: its number in `list`, its simulator name (sim0) or its PC/SC name.")
    var reader: String
    @Option(help: "Slot number (default: the slot the PC/SC name names, else 0).")
    var slot: Int?
    @Option(help: "The card: a built-in one, or a card process on a vpcd socket.")
    var card: CardSpec = .defaultCard

    func run() throws {
        _ = try control(directory, .insert(reader: reader, slot: slot, card: card))
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove the card from a reader's slot.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader: its number in `list`, its simulator name (sim0) or its PC/SC name.")
    var reader: String
    @Option(help: "Slot number (default: the slot the PC/SC name names, else 0).")
    var slot: Int?

    func run() throws {
        _ = try control(directory, .remove(reader: reader, slot: slot))
    }
}

struct PINPad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pinpad", abstract: "Say what the user does at a PIN pad reader's keypad next time.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader.") var reader: String
    @Argument(help: "What the user does.") var action: PINPadVerb
    @Argument(help: "Digits typed (for enter).") var digits: String?

    func validate() throws {
        if action == .enter, digits?.allSatisfy(\.isNumber) != true { throw ValidationError("enter needs the digits typed") }
    }

    func run() throws {
        let what: PINPadAction = switch action {
        case .enter: .enter(digits ?? "")
        case .cancel: .cancel
        case .timeout: .timeout
        }
        _ = try control(directory, .pinPad(reader: reader, action: what))
    }
}

struct Fault: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Switch misbehaviour on or off in a reader's slot, at run time.",
        discussion: "Settings (N counts the card's blocks or the reader's replies; N=0 turns one off):\n" + Faults.help)

    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader.") var reader: String
    @Option(help: "Slot number (default: the slot the PC/SC name names, else 0).") var slot: Int?
    @Argument(help: "Settings, e.g. parity=3 wtx=10 mute clear.") var settings: [FaultSetting]

    func run() throws {
        for line in try control(directory, .fault(reader: reader, slot: slot, settings: settings.map(\.text))) { print(line) }
    }
}

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the built-in reader profiles, one per line, name first.")

    func run() {
        for p in ReaderProfile.builtIns {
            let id = String(format: "%04X:%04X", p.vendorID, p.productID)
            print("\(p.name)\t\(id)\t\(p.descriptor.slotCount) slot(s)\t\(p.summary)")
        }
    }
}
