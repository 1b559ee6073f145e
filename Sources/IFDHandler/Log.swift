import CPCSCLog

/// Driver log lines, into pcscd's log when loaded by pcscd.
enum Log {
    static func error(_ message: String) { swiftccid_log(Int32(SWIFTCCID_LOG_ERROR), message) }
    static func info(_ message: String) { swiftccid_log(Int32(SWIFTCCID_LOG_INFO), message) }
    static func debug(_ message: String) { swiftccid_log(Int32(SWIFTCCID_LOG_DEBUG), message) }
}
