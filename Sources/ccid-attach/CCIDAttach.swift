#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AttachWorker
import USBTransport

@main
struct CCIDAttach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ccid-attach",
        abstract: "Attach workers: one process per USB CCID reader, serving it as a relay socket for pcscd.",
        subcommands: [Attach.self, Detach.self, Reload.self, ListWorkers.self, Doctor.self, Quirks.self])
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the worker of a device (SIGTERM) and wait for it to go.")
    @Argument(parsing: .remaining, help: "The device: BBB-DDD, or the openct form.") var instance: [String] = []
    @Option(help: "Socket directory.") var dir = defaultSocketDirectory

    func run() throws {
        let (_, pid) = try runningWorker(instance, dir: dir)
        kill(pid, SIGTERM)
        for _ in 0..<40 where isRunning(pid) { usleep(50_000) }
        if isRunning(pid) {
            FileOutput.error("ccid-attach: worker \(pid) did not stop within 2 s")
            throw ExitCode(1)
        }
    }
}

/// The unit's ExecReload where systemd has no Type=notify-reload (before 253):
/// `systemctl reload` returns when the worker has reloaded, not when the signal is sent.
struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a worker re-read its configuration (SIGHUP) and wait until it has (at most 5 s).")
    @Argument(parsing: .remaining, help: "The device: BBB-DDD, or the openct form.") var instance: [String] = []
    @Option(help: "Socket directory.") var dir = defaultSocketDirectory

    func run() throws {
        let (files, pid) = try runningWorker(instance, dir: dir)
        let reloads = { WorkerFiles.read(files.reloadsFile).flatMap { Int($0) } }
        let before = reloads() ?? 0
        kill(pid, SIGHUP)
        for _ in 0..<250 {
            if let now = reloads(), now > before { return }
            guard isRunning(pid) else {
                FileOutput.error("ccid-attach: worker \(pid) ended while reloading")
                throw ExitCode(1)
            }
            usleep(20_000)
        }
        FileOutput.error("ccid-attach: worker \(pid) did not finish reloading within 5 s")
        throw ExitCode(1)
    }
}

/// The files and pid of the running worker of a device named on the command
/// line; exit status 2 for a refused instance, 1 when no worker runs.
func runningWorker(_ instance: [String], dir: String) throws -> (WorkerFiles, Int32) {
    let parsed: AttachInstance
    do throws(AttachInstance.ParseError) { parsed = try AttachInstance.parse(instance) } catch {
        FileOutput.error("ccid-attach: refusing instance: \(error)")
        throw ExitCode(2)
    }
    let files = WorkerFiles(directory: dir, base: WorkerSocket.baseName(bus: parsed.bus, address: parsed.address))
    guard let text = WorkerFiles.read(files.pidFile), let pid = Int32(text), pid > 1, isRunning(pid) else {
        FileOutput.error("ccid-attach: no worker for \(parsed.devicePath)")
        throw ExitCode(1)
    }
    return (files, pid)
}

struct ListWorkers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Workers: device, pid, socket, client pid.")
    @Option(help: "Socket directory.") var dir = defaultSocketDirectory

    func run() throws {
        for base in workerBases(in: dir) {
            let files = WorkerFiles(directory: dir, base: base)
            let pid = WorkerFiles.read(files.pidFile).flatMap { Int32($0) }
            let alive = pid.map(isRunning) ?? false
            let client = WorkerFiles.read(files.clientFile) ?? "-"
            print("\(base)\t\(pid.map(String.init) ?? "-")\t\(alive ? "running" : "dead")\t\(files.socket)\tclient \(client)")
        }
    }
}

/// Alive and not a zombie: a worker that exited but whose parent has not
/// reaped it yet is gone for our purposes.
func isRunning(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
    return !stat[stat.index(after: close)...].hasPrefix(" Z")
}

/// usb-BBB-DDD names with a pid file in `dir`.
func workerBases(in dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name.hasPrefix("usb-"), name.hasSuffix(".pid") { names.append(String(name.dropLast(4))) }
    }
    return names.sorted()
}
