/// The driver's settings, as pcsc-lite drivers take them: keys of the
/// bundle's Info.plist, each overridden by an environment variable of pcscd.
///
/// - `ifdLogLevel` / `SWIFTCCID_LOG_LEVEL`: a bit mask, as libccid's
///   (`0x0003` by default): 1 errors, 2 information, 4 periodic (card
///   presence), 8 communication (each APDU's length, status word and time).
/// - `ifdDriverOptions`: space-separated `name=value` settings:
///   `usb-workers=auto|yes|no` (overridden by `SWIFTCCID_USB_WORKERS`; auto:
///   on while /etc/swiftccid/usb-workers exists, the file the worker unit
///   also checks) and `max-exchange-ms=N`, the cap on any one exchange
///   (overridden by `SWIFTCCID_MAX_EXCHANGE_MS`; default 30 000, at most one hour).
///   `quirks-off=ID[+ID…]` (and `SWIFTCCID_QUIRKS_OFF`, which adds to it):
///   `escape=yes|no` (and `SWIFTCCID_ESCAPE`): whether applications may send
///   any CCID Escape command to a reader (SCardControl with
///   IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE); off by default, as a vendor command
///   can do anything to a reader. The quirk table allows some readers' own.
///   `quirks-off` lists
///   quirk table entries not to apply, by id ("D9", "O1" to use firmware the
///   table refuses), for a device whose firmware was fixed, or to prove a quirk matters.
public struct DriverSettings: Equatable, Sendable {
    public struct LogMask: OptionSet, Equatable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let errors = LogMask(rawValue: 1)
        public static let info = LogMask(rawValue: 2)
        public static let periodic = LogMask(rawValue: 4)
        public static let communication = LogMask(rawValue: 8)
        public static let `default`: LogMask = [.errors, .info]
    }

    public enum WorkerMode: String, Equatable, Sendable { case auto, yes, no }

    public static let defaultMaxExchangeMs: Int64 = 30_000
    public static let maxExchangeLimitMs: Int64 = 3_600_000

    public var log: LogMask = .default
    public var usbWorkers: WorkerMode = .auto
    public var maxExchangeMs: Int64 = DriverSettings.defaultMaxExchangeMs
    /// Whether any Escape command may be sent (escape=yes).
    public var escapeAllowed = false
    /// Quirk ids not applied (quirks-off).
    public var quirksOff: Set<String> = []
    /// What was set and not understood, for the log (never fatal).
    public var problems: [String] = []

    public init() {}

    /// `plist`: the Info.plist's strings; `environment`: pcscd's.
    public init(plist: [String: String], environment: (String) -> String?) {
        if let raw = plist["ifdLogLevel"] { setLog(raw, from: "ifdLogLevel") }
        if let raw = plist["ifdDriverOptions"] { setOptions(raw) }
        if let raw = environment("SWIFTCCID_LOG_LEVEL") { setLog(raw, from: "SWIFTCCID_LOG_LEVEL") }
        if let raw = environment("SWIFTCCID_USB_WORKERS") {
            usbWorkers = ["1", "yes", "true"].contains(raw.lowercased()) ? .yes : .no
        }
        if let raw = environment("SWIFTCCID_MAX_EXCHANGE_MS") { setCap(raw, from: "SWIFTCCID_MAX_EXCHANGE_MS") }
        if let raw = environment("SWIFTCCID_QUIRKS_OFF") { quirksOff.formUnion(Self.ids(raw)) }
        if let raw = environment("SWIFTCCID_ESCAPE") { escapeAllowed = ["1", "yes", "true"].contains(raw.lowercased()) }
    }

    /// Worker mode as the driver applies it; `switchFileExists` is asked only for `auto`.
    public func workersOn(switchFileExists: () -> Bool) -> Bool {
        switch usbWorkers {
        case .yes: return true
        case .no: return false
        case .auto: return switchFileExists()
        }
    }

    private mutating func setLog(_ raw: String, from source: String) {
        guard let mask = Self.number(raw), mask <= UInt64(UInt32.max) else {
            problems.append("\(source): '\(raw)' is not a number (hex 0x... or decimal)")
            return
        }
        log = LogMask(rawValue: UInt32(mask))
    }

    private mutating func setCap(_ raw: String, from source: String) {
        guard let ms = Self.number(raw), ms > 0 else {
            problems.append("\(source): '\(raw)' is not a positive number of milliseconds")
            return
        }
        maxExchangeMs = Int64(min(ms, UInt64(Self.maxExchangeLimitMs)))
    }

    private mutating func setOptions(_ raw: String) {
        for word in raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "," }) {
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                problems.append("ifdDriverOptions: '\(word)' is not name=value")
                continue
            }
            switch parts[0] {
            case "usb-workers":
                guard let mode = WorkerMode(rawValue: parts[1].lowercased()) else {
                    problems.append("ifdDriverOptions: usb-workers must be auto, yes or no, not '\(parts[1])'")
                    continue
                }
                usbWorkers = mode
            case "max-exchange-ms":
                setCap(parts[1], from: "ifdDriverOptions max-exchange-ms")
            case "escape":
                switch parts[1].lowercased() {
                case "yes": escapeAllowed = true
                case "no": escapeAllowed = false
                default: problems.append("ifdDriverOptions: escape must be yes or no, not '\(parts[1])'")
                }
            case "quirks-off":
                quirksOff.formUnion(Self.ids(parts[1]))
            default:
                problems.append("ifdDriverOptions: unknown setting '\(parts[0])'")
            }
        }
    }

    /// "D9+O1" or "D9;O1" (the option list itself is split at commas and spaces,
    /// so several ids in ifdDriverOptions are written quirks-off=D9 quirks-off=O1, or with + or ;).
    static func ids(_ raw: String) -> Set<String> {
        Set(raw.split(whereSeparator: { ",;+ \t".contains($0) }).map(String.init))
    }

    /// "0x1F", "31".
    static func number(_ raw: String) -> UInt64? {
        let s = raw.trimmingSpaces
        if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt64(s.dropFirst(2), radix: 16) }
        return UInt64(s)
    }
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return self[first...last]
    }
}
