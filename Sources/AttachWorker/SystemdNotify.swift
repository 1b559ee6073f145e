#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// sd_notify(3): a no-op when not started by systemd (no NOTIFY_SOCKET).
public enum SystemdNotify {
    public static func send(_ fields: String...) {
        _ = sd_notify(0, fields.joined(separator: "\n"))
    }

    /// CLOCK_MONOTONIC in µs, as RELOADING=1's MONOTONIC_USEC= wants it.
    public static var monotonicMicroseconds: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    /// Whether a service manager waits for our notifications.
    public static var underSystemd: Bool {
        guard let socket = getenv("NOTIFY_SOCKET") else { return false }
        return socket.pointee != 0
    }
}

/// Log lines on stderr with sd-daemon(3) priority prefixes, which journald reads.
public struct PriorityLog: Sendable {
    public enum Level: Int32, Sendable { case error = 3, warning = 4, notice = 5, info = 6, debug = 7 }
    public let tag: String

    public init(tag: String) { self.tag = tag }

    public func callAsFunction(_ level: Level, _ message: String) {
        // One write(2) per line, so lines from several threads never interleave.
        let line = Array("<\(level.rawValue)>\(tag): \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
