import CPCSCLog
import DriverSettings

/// Driver log lines, into pcscd's log when loaded by pcscd, as far as the
/// log mask (ifdLogLevel, SWIFTCCID_LOG_LEVEL) lets them through. Messages
/// are built only when they will be written.
enum Log {
    static func error(_ message: @autoclosure () -> String) { write(.errors, SWIFTCCID_LOG_ERROR, message) }
    static func info(_ message: @autoclosure () -> String) { write(.info, SWIFTCCID_LOG_INFO, message) }
    /// Card presence as pcscd polls it.
    static func periodic(_ message: @autoclosure () -> String) { write(.periodic, SWIFTCCID_LOG_DEBUG, message) }
    /// One line per exchange.
    static func communication(_ message: @autoclosure () -> String) { write(.communication, SWIFTCCID_LOG_DEBUG, message) }

    static func wants(_ kind: DriverSettings.LogMask) -> Bool { Configuration.current.log.contains(kind) }

    private static func write(_ kind: DriverSettings.LogMask, _ priority: Int, _ message: () -> String) {
        guard wants(kind) else { return }
        swiftccid_log(Int32(priority), message())
    }
}
