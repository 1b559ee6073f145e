import ArgumentParser
import Foundation
import SimulatorCore

func control(_ directory: DirectoryOption, _ fields: [String]) throws -> [String] {
    let answer: (ok: Bool, lines: [String])
    do { answer = try ControlClient.request(directory: directory.resolved, fields) } catch {
        throw ValidationError("no simulator running in \(directory.resolved) (\(error)); start one with `ccid-sim serve` or `ccid-sim pcscd`")
    }
    guard answer.ok else { fail(answer.lines.joined(separator: "\n")) }
    return answer.lines
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running simulator's readers: number, name, profile, PC/SC name, cards.")
    @OptionGroup var directory: DirectoryOption

    func run() throws {
        for line in try control(directory, ["list"]) { print(line) }
    }
}

struct Insert: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Insert a card into a reader's slot.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader: its number in `list`, its simulator name (sim0) or its PC/SC name.")
    var reader: String
    @Option(help: "Slot number (default: the slot the PC/SC name names, else 0).")
    var slot: Int?
    @Option(help: "Card: \(CardCatalog.names.joined(separator: ", ")).")
    var card: String = CardCatalog.defaultCard

    func run() throws {
        _ = try control(directory, ["insert", reader, slot.map(String.init) ?? "-", card])
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
        _ = try control(directory, ["remove", reader, slot.map(String.init) ?? "-"])
    }
}

struct PINPad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pinpad", abstract: "Say what the user does at a PIN pad reader's keypad next time.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader.") var reader: String
    @Argument(help: "enter, cancel or timeout.") var action: String
    @Argument(help: "Digits typed (for enter).") var digits: String?

    func validate() throws {
        guard ["enter", "cancel", "timeout"].contains(action) else { throw ValidationError("action is enter, cancel or timeout") }
        if action == "enter", digits?.allSatisfy(\.isNumber) != true { throw ValidationError("enter needs the digits typed") }
    }

    func run() throws {
        _ = try control(directory, ["pinpad", reader, action] + (digits.map { [$0] } ?? []))
    }
}

struct Fault: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Switch misbehaviour on or off in a reader's slot, at run time.",
        discussion: "Settings (N counts the card's blocks or the reader's replies; N=0 turns one off):\n" + Faults.help)

    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader.") var reader: String
    @Option(help: "Slot number (default: the slot the PC/SC name names, else 0).") var slot: Int?
    @Argument(help: "Settings, e.g. parity=3 wtx=10 mute clear.") var settings: [String]

    func run() throws {
        for line in try control(directory, ["fault", reader, slot.map(String.init) ?? "-"] + settings) { print(line) }
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
