#if canImport(Glibc)
import Glibc
#endif
import AttachWorker

/// A worker's files in the socket directory: the socket, its pid, its
/// current client's pid (for `ccid-attach list` and `detach`) and how many
/// reloads it has finished (for `ccid-attach reload`).
struct WorkerFiles: Sendable {
    let directory: String
    let base: String

    var socket: String { "\(directory)/\(base).sock" }
    var pidFile: String { "\(directory)/\(base).pid" }
    var clientFile: String { "\(directory)/\(base).client" }
    var reloadsFile: String { "\(directory)/\(base).reloads" }

    func writePID() { write(pidFile, "\(getpid())\n") }

    func writeClient(_ pid: Int32?) {
        if let pid { write(clientFile, "\(pid)\n") } else { unlink(clientFile) }
    }

    func writeReloads(_ count: Int) { write(reloadsFile, "\(count)\n") }

    func removeAll(socket removeSocket: Bool = true) {
        for p in [pidFile, clientFile, reloadsFile] { unlink(p) }
        if removeSocket { unlink(socket) }
    }

    /// Written whole or not at all (rename), so a reader never sees half.
    private func write(_ path: String, _ text: String) {
        let temporary = path + ".new"
        guard let f = fopen(temporary, "w") else { return }
        fputs(text, f)
        fclose(f)
        rename(temporary, path)
    }

    /// The one value a pid or client file holds.
    static func read(_ path: String) -> String? { readTextFile(path, limit: 64)?.trimmingWhitespace }
}

/// What the main thread waits for. Signal handlers write one byte to a pipe.
enum WorkerEvent { case stop, reload, deviceGone }

/// Unchecked: a signal handler can only reach plain globals (the pipe's fds),
/// set once before the handlers are installed.
final class EventPipe: @unchecked Sendable {
    nonisolated(unsafe) static var fds: [Int32] = [-1, -1]

    static func install() -> EventPipe {
        pipe(&fds)
        signal(SIGTERM) { _ in var b: UInt8 = 0x54; _ = write(EventPipe.fds[1], &b, 1) }
        signal(SIGINT) { _ in var b: UInt8 = 0x54; _ = write(EventPipe.fds[1], &b, 1) }
        signal(SIGHUP) { _ in var b: UInt8 = 0x48; _ = write(EventPipe.fds[1], &b, 1) }
        signal(SIGPIPE, SIG_IGN)
        return EventPipe()
    }

    func post(_ event: WorkerEvent) {
        var b: UInt8 = event == .deviceGone ? 0x47 : event == .reload ? 0x48 : 0x54
        _ = write(Self.fds[1], &b, 1)
    }

    func wait() -> WorkerEvent {
        var b: UInt8 = 0
        while true {
            let n = read(Self.fds[0], &b, 1)
            if n == 1 { break }
            if n < 0 && errno == EINTR { continue }
            return .stop
        }
        switch b {
        case 0x48: return .reload
        case 0x47: return .deviceGone
        default: return .stop
        }
    }
}

enum FileOutput {
    static func error(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
