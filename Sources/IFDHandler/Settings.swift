import CCIDDriver
#if canImport(Glibc)
import Glibc
#endif

/// The driver's settings (Configuration: Info.plist, then pcscd's environment)
/// as the registry applies them.
enum Settings {
    /// The cap on any one exchange: ifdDriverOptions max-exchange-ms, SWIFTCCID_MAX_EXCHANGE_MS.
    static let timeouts: ExchangeTimeouts = {
        var t = ExchangeTimeouts()
        t.maximum = .milliseconds(Configuration.current.maxExchangeMs)
        return t
    }()

    /// Quirk ids not applied: ifdDriverOptions quirks-off, SWIFTCCID_QUIRKS_OFF.
    static var quirksOff: Set<String> { Configuration.current.quirksOff }

    /// SWIFTCCID_RELAY_SPIN_US: how long a relay exchange polls for its reply
    /// before sleeping, while the peer answers that fast (default 50, 0 = never, at most 1000). Read once.
    static let relaySpin: Duration = {
        guard let raw = getenv("SWIFTCCID_RELAY_SPIN_US"), let us = Int64(String(cString: raw)), us >= 0 else {
            return .microseconds(50)
        }
        return .microseconds(min(us, 1000))
    }()

    /// SWIFTCCID_RELAY_DIR. Read once.
    static let relayDirectory: String? = getenv("SWIFTCCID_RELAY_DIR").map { String(cString: $0) }

    /// Worker mode: USB readers are reached through their attach worker's
    /// socket (ccid-attach, started by udev and systemd) in
    /// SWIFTCCID_RELAY_DIR (default /run/swiftccid), not opened in pcscd.
    /// ifdDriverOptions usb-workers=auto|yes|no, SWIFTCCID_USB_WORKERS; auto
    /// follows the switch file the worker unit also tests (ConditionPathExists),
    /// looked at on each open: udev starts workers by it from the moment it changes.
    static var usbWorkers: Bool {
        Configuration.current.workersOn { access("/etc/swiftccid/usb-workers", F_OK) == 0 }
    }

    /// How long pcscd's hotplug waits for systemd to bind a worker's socket,
    /// and then for the worker (started with it) to answer on it.
    static let socketAppears: Duration = .seconds(3)
    static let workerStartup: Duration = .seconds(5)
}
