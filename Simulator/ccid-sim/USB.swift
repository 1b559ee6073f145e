import ArgumentParser
import Foundation
import SimulatorCore
import SimulatorUSB

/// umockdev delivers a testbed's uevents only from a process running with its
/// preload library: USB mode restarts ccid-sim with it, once.
enum UMockdevPreload {
    static func reexec() throws -> Never {
        var env = ProcessInfo.processInfo.environment
        let existing = env["LD_PRELOAD"].map { " " + $0 } ?? ""
        env["LD_PRELOAD"] = MockUSBBus.preloadLibrary + existing
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let argv = [exe] + CommandLine.arguments.dropFirst()
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(exe, cArgs, cEnv)
        throw ValidationError("cannot restart under \(MockUSBBus.preloadLibrary): \(String(cString: strerror(errno))) (is umockdev installed?)")
    }
}

struct Plug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plug a new reader into a running simulator (USB mode: pcscd hotplugs it).",
        discussion: "Prints the new reader's `list` line.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "Profile of the reader (see `ccid-sim profiles`).") var profile: String
    @Option(help: "Card in its first slot, or none.")
    var card: CardChoice = .defaultCard

    func run() throws {
        for line in try control(directory, .plug(profile: profile, card: card.card)) { print(line) }
    }
}

struct Unplug: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unplug a reader from a running simulator, as pulling its cable.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader: its number in `list`, its simulator name (sim0) or its PC/SC name.") var reader: String

    func run() throws {
        _ = try control(directory, .unplug(reader: reader))
    }
}

struct Suspend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Suspend and resume a USB reader, as a system sleep with USB persist off (the udev rule's).",
        discussion: "Its handles go stale (requests fail with ENODEV) for --stale-ms, with no uevent yet (umockdev; "
            + "a gadget is removed at once), then the kernel's re-enumeration: it is removed and comes back at a "
            + "new address, its cards unpowered. Prints its list line.")
    @OptionGroup var directory: DirectoryOption
    @Argument(help: "The reader: its number in `list`, its simulator name (sim0) or its PC/SC name.") var reader: String
    @Option(help: "How long its handles are stale before it is re-enumerated (0 to 60000).") var staleMs = 500

    func run() throws {
        for line in try control(directory, .suspend(reader: reader, staleMilliseconds: staleMs)) { print(line) }
    }
}
