#if canImport(Glibc)
import Glibc
#endif

/// /etc/swiftccid/attach.conf: `key = value` lines, `#` comments. Read at
/// start and again on SIGHUP.
///   socket-group = NAME   group that may use worker sockets (default: root's)
///   log-level = info | debug
public struct AttachConfig: Equatable, Sendable {
    public var socketGroup: String?
    public var debug = false

    public init(socketGroup: String? = nil, debug: Bool = false) {
        self.socketGroup = socketGroup
        self.debug = debug
    }

    public static let defaultPath = "/etc/swiftccid/attach.conf"

    /// A missing file is the defaults; unknown keys and bad values are reported, not fatal.
    public static func parse(_ text: String, warn: (String) -> Void) -> AttachConfig {
        var config = AttachConfig()
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?.trimmingWhitespace ?? ""
            if line.isEmpty { continue }
            let kv = line.split(separator: "=", maxSplits: 1).map { String($0).trimmingWhitespace }
            guard kv.count == 2 else { warn("line \(n + 1): expected key = value"); continue }
            switch kv[0] {
            case "socket-group":
                if kv[1].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), !kv[1].isEmpty { config.socketGroup = kv[1] }
                else { warn("line \(n + 1): bad group name") }
            case "log-level":
                switch kv[1] {
                case "info": config.debug = false
                case "debug": config.debug = true
                default: warn("line \(n + 1): log-level is info or debug")
                }
            default: warn("line \(n + 1): unknown key '\(kv[0])'")
            }
        }
        return config
    }

    public static func load(path: String, warn: (String) -> Void) -> AttachConfig {
        readTextFile(path).map { parse($0, warn: warn) } ?? AttachConfig()
    }
}
