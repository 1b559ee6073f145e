import ArgumentParser
import Foundation
import SimulatorCore

@main
struct CCIDSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ccid-sim",
        abstract: "Virtual CCID readers and cards, served over relay sockets.",
        discussion: "With no subcommand, serves one reader with the compliance test card inserted.",
        subcommands: [Serve.self, PrivatePCSCD.self, List.self, Insert.self, Remove.self, Plug.self, Unplug.self, Suspend.self,
                      PINPad.self, Fault.self, Profiles.self],
        defaultSubcommand: Serve.self)
}

/// Options every subcommand that reaches a running simulator shares.
struct DirectoryOption: ParsableArguments {
    @Option(name: .long, help: "Directory of the simulator's sockets (default: /run/ccid-sim as root, else $XDG_RUNTIME_DIR/ccid-sim).")
    var dir: String?

    var resolved: String {
        if let dir { return dir }
        if geteuid() == 0 { return "/run/ccid-sim" }
        let base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "/tmp"
        return "\(base)/ccid-sim"
    }
}

struct ReaderOptions: ParsableArguments {
    @Option(name: .long, help: "JSON file describing the readers (see docs/ccid-sim.md).")
    var config: String?

    @Option(name: .long, help: "Profile of the default reader when no --config is given (see `ccid-sim profiles`).")
    var profile: String?

    @Option(name: .long, help: "Card in the default reader's first slot: a built-in card, vpcd:PORT (a card process connects, as to vpcd), vpcd-connect:HOST:PORT (one that listens, as vicc --reversed), replay:FILE (a --record file answering again), or none.")
    var card: CardChoice = .defaultCard

    @Option(help: "Write every slot's card events and exchanges (time, reader, slot, ATR, C-APDU, R-APDU) to this file as JSON lines; `--card replay:FILE` answers from it.")
    var record: String?

    @Option(help: "Write every reader's CCID traffic (relay, USB and gadget readers alike) to this file as a Linux usbmon pcap for Wireshark and tshark.")
    var pcap: String?

    @Flag(help: "Show the PINs of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER in the --pcap trace (masked with '*' otherwise).")
    var pcapPins = false

    @Option(name: .customLong("spin-us"),
            help: "After each reply, poll for the next request this many µs before sleeping (0: never). Idle readers cost no CPU either way.")
    var spinUs: Int = 200

    func validate() throws {
        guard (0...10_000).contains(spinUs) else { throw ValidationError("--spin-us is between 0 and 10000") }
    }

    func setups() throws -> [ReaderSetup] {
        if let config { return try SimulatorConfig.load(path: config) }
        guard let profile = try profile.map({ name in
            guard let p = ReaderProfile.named(name) else { throw ValidationError("no built-in profile '\(name)'; see `ccid-sim profiles`") }
            return p
        }) ?? ReaderProfile.defaultProfile else { throw ValidationError("no built-in profiles") }
        return [ReaderSetup(profile: profile, cards: [card.card])]
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ccid-sim: \(message)\n".utf8))
    exit(1)
}

func note(_ message: String) {
    FileHandle.standardError.write(Data("ccid-sim: \(message)\n".utf8))
}
