import ArgumentParser
import Foundation
import Relay
import SimulatorCore
import SimulatorUSB

struct PrivatePCSCD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pcscd",
        abstract: "Serve the readers and run a private pcscd (own mount namespace) that loads the driver for them.",
        discussion: """
            Prints PCSCLITE_CSOCK_NAME=<path> as the first line once clients can connect; \
            point PC/SC clients at it with that environment variable. Stops on SIGTERM or SIGINT \
            and removes everything it created.
            """)

    @OptionGroup var directory: DirectoryOption
    @OptionGroup var readers: ReaderOptions

    @Option(help: "The IFD handler bundle to load (default: build/ifd-swiftccid.bundle, else the installed one).")
    var driver: String?

    @Option(help: "Keep pcscd's log in this file (default: discarded on exit).")
    var pcscdLog: String?

    @Flag(help: "Run pcscd with --debug.")
    var debug = false

    @Flag(help: """
        Plug the readers in as USB devices (a umockdev testbed) instead of relay sockets: pcscd finds them \
        with its own hotplug and loads the driver by VID/PID. `ccid-sim plug` and `unplug` then hotplug readers.
        """)
    var usb = false

    @Option(name: .customLong("relay"), help: "Also give pcscd this relay socket served by another process (an attach worker, a test peer). Repeatable.")
    var extraRelays: [String] = []

    @Option(name: .customLong("reader-conf"), help: "Also give pcscd this reader.conf file (e.g. another driver to compare with). Repeatable.")
    var extraConfs: [String] = []

    func validate() throws {
        for path in extraRelays where !path.hasPrefix("/") || path.contains(" ") || path.utf8.count >= 108 {
            throw ValidationError("--relay wants an absolute socket path without spaces, under 108 bytes: \(path)")
        }
    }

    func run() throws {
        if usb && !MockUSBBus.underPreload { try UMockdevPreload.reexec() }
        let bundled = try DriverBundle.library(explicit: driver)
        let dir = directory.resolved
        let bus = usb ? try MockUSBBus(log: { note($0) }) : nil
        let running = try startSimulator(directory: dir, setups: try readers.setups(), readers: readers, bus: bus)
        let sim = running.simulator
        let fm = FileManager.default
        let confDir = "\(dir)/reader.conf.d", runDir = "\(dir)/pcscd", dropDir = "\(dir)/drivers"
        var cleanup: [String] = [confDir, runDir, dropDir] + (bus.map { [$0.root] } ?? [])
        defer {
            running.stop()
            for path in cleanup { try? fm.removeItem(atPath: path) }
        }
        try fm.createDirectory(atPath: confDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        // pcscd warns about reader.conf entries whose LIBPATH lies in a .bundle: point at a link instead.
        let library = "\(dir)/\((bundled as NSString).lastPathComponent)"
        try? fm.removeItem(atPath: library)
        try fm.createSymbolicLink(atPath: library, withDestinationPath: bundled)
        cleanup.append(library)
        // One file, readers in order: pcscd numbers readers as it reads them ("<name> NN SS").
        var conf = ""
        for i in sim.readers.indices where !usb {
            conf += "FRIENDLYNAME \"\(sim.friendlyName(i))\"\nDEVICENAME relay:\(sim.socketPath(i))\nLIBPATH \(library)\n\n"
        }
        for (k, path) in extraRelays.enumerated() {
            conf += "FRIENDLYNAME \"Relay \(k) [\((path as NSString).lastPathComponent)]\"\nDEVICENAME relay:\(path)\nLIBPATH \(library)\n\n"
        }
        for path in extraConfs {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
            conf += text + "\n"
        }
        try conf.write(toFile: "\(confDir)/ccid-sim", atomically: true, encoding: .utf8)
        let logPath = pcscdLog ?? "\(dir)/pcscd.log"
        if pcscdLog == nil { cleanup.append(logPath) }
        _ = fm.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw ValidationError("cannot write \(logPath)") }
        // pcscd's server socket is fixed at /run/pcscd/pcscd.comm: give it a private /run/pcscd.
        try fm.createDirectory(atPath: "/run/pcscd", withIntermediateDirectories: true)
        let pcscd = Process()
        pcscd.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        // For USB readers pcscd reads bundles from its compiled-in drop directory:
        // give it one holding only the chosen bundle.
        var mounts = "mount --bind \"$0\" /run/pcscd"
        if usb {
            try fm.createDirectory(atPath: dropDir, withIntermediateDirectories: true)
            let bundle = try DriverBundle.bundle(containing: bundled)
            try fm.copyItem(atPath: bundle, toPath: "\(dropDir)/\((bundle as NSString).lastPathComponent)")
            mounts += " && mount --bind \"$3\" \"$4\""
        }
        pcscd.arguments = ["--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                           mounts + " && exec pcscd --foreground --config \"$1\" $2",
                           runDir, confDir, debug ? "--debug" : "--info", dropDir, DriverBundle.dropDirectory()]
        pcscd.standardOutput = log
        pcscd.standardError = log
        // PCSCLITE_CSOCK_NAME here names another pcscd, whose cards `--card pcsc:` takes: not this one's socket.
        pcscd.environment = ProcessInfo.processInfo.environment.filter { $0.key != "PCSCLITE_CSOCK_NAME" }
        StopSignal.install()
        try pcscd.run()
        defer { stop(pcscd) }

        let socketPath = "\(runDir)/pcscd.comm"
        let ready = Date().addingTimeInterval(15)
        while !Self.canConnect(socketPath) {
            guard pcscd.isRunning else { fail("pcscd exited (status \(pcscd.terminationStatus)); see \(logPath)") }
            guard Date() < ready else { fail("pcscd did not open \(socketPath) within 15 s; see \(logPath)") }
            usleep(50_000)
        }
        print("PCSCLITE_CSOCK_NAME=\(socketPath)")
        // For other programs that should see the USB devices (an attach worker): run them with
        // this UMOCKDEV_DIR and LD_PRELOAD=libumockdev-preload.so.0.
        if let bus { print("UMOCKDEV_DIR=\(bus.root)") }
        fflush(nil)
        StopSignal.wait()
    }

    func stop(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        let limit = Date().addingTimeInterval(5)
        while process.isRunning && Date() < limit { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    static func canConnect(_ path: String) -> Bool {
        guard let socket = try? StreamSocket.connect(path: path) else { return false }
        socket.close()
        return true
    }
}

/// Finds the IFD handler library inside a bundle.
enum DriverBundle {
    static let name = "ifd-swiftccid.bundle"

    static func library(explicit: String?) throws -> String {
        if let explicit { return try library(in: explicit) }
        for candidate in candidates() where FileManager.default.fileExists(atPath: "\(candidate)/Contents/Info.plist") {
            return try library(in: candidate)
        }
        throw ValidationError("no \(name) found; run `make bundle` or `make install`, or pass --driver")
    }

    /// pcscd's bundle directory (`usbdropdir` of libpcsclite's pkg-config).
    static func dropDirectory() -> String {
        let pkg = Process()
        pkg.executableURL = URL(fileURLWithPath: "/usr/bin/pkg-config")
        pkg.arguments = ["--variable=usbdropdir", "libpcsclite"]
        let out = Pipe()
        pkg.standardOutput = out
        guard (try? pkg.run()) != nil else { return "/usr/lib/pcsc/drivers" }
        pkg.waitUntilExit()
        let dir = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return dir.isEmpty ? "/usr/lib/pcsc/drivers" : dir
    }

    /// The .bundle directory a library path lies in.
    static func bundle(containing library: String) throws -> String {
        var url = URL(fileURLWithPath: library)
        while url.path != "/" {
            if url.pathExtension == "bundle" { return url.path }
            url.deleteLastPathComponent()
        }
        throw ValidationError("\(library) is not inside a .bundle directory")
    }

    static func candidates() -> [String] {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        var list = ["\(FileManager.default.currentDirectoryPath)/build/\(name)",
                    exe.appendingPathComponent("../../build/\(name)").standardized.path,
                    exe.appendingPathComponent("../../../build/\(name)").standardized.path]
        list.append("\(dropDirectory())/\(name)")
        list.append("/usr/lib/pcsc/drivers/\(name)")
        return list
    }

    /// Contents/Linux/<CFBundleExecutable> of the bundle.
    static func library(in bundle: String) throws -> String {
        let plist = "\(bundle)/Contents/Info.plist"
        guard let data = FileManager.default.contents(atPath: plist),
              let root = try? PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any],
              let exe = root["CFBundleExecutable"] as? String else {
            throw ValidationError("\(plist) is missing or names no CFBundleExecutable")
        }
        let path = URL(fileURLWithPath: "\(bundle)/Contents/Linux/\(exe)").standardized.path
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("\(path) does not exist") }
        guard !path.contains(" ") else { throw ValidationError("\(path): reader.conf cannot carry a path with spaces") }
        return path
    }
}
