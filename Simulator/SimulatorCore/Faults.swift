/// Misbehaviour injected into one slot of a simulated reader, switchable at
/// run time (`ccid-sim fault`). "Every N" counts the card's blocks or the
/// reader's replies on that slot; 0 turns a fault off. Every fault is one row
/// of `Faults.table`: its name, how its setting is read, what it does, and
/// how it shows in a summary.
public struct Faults: Sendable, Equatable {
    public var parityErrorEvery = 0
    public var edcErrorEvery = 0
    public var lostBlockEvery = 0
    public var repeatBlockEvery = 0
    public var cardIFSRequest: UInt8? = nil
    public var wtxPerResponse = 0
    public var timeExtensionsPerReply = 0
    public var wrongSequenceEvery = 0
    public var mute = false
    public var stuck = false
    /// How the card answers PPS: 0 echo (accept), 1 accept but keep Fi/Di (PPS1 absent), 2 no answer.
    public var ppsAnswer = 0
    /// The card answers a power-up only at this voltage (bPowerSelect: 1 5 V, 2 3 V, 3 1.8 V) or
    /// at the reader's automatic choice; at another it is mute (a class B or C card).
    public var onlyVoltage: UInt8? = nil

    /// What the reader itself gets wrong in its bulk-in messages (the row of the same name says how).
    public enum ReaderLie: String, Sendable, CaseIterable {
        case wrongSlot = "wrongslot", garbage, truncated = "truncate", oversized = "oversize", wrongType = "wrongtype", late
    }
    public var readerLie: ReaderLie? = nil
    public var readerLieEvery = 0
    public var lateMilliseconds = 0
    public var interruptFlood = 0
    public var hardwareErrorEvery = 0
    /// Counts down the commands still answered; at 0 the reader goes away.
    public var hangUpAt = 0

    public init() {}

    /// One fault: `set` reads its value (nil for a bare name) and returns false
    /// if the value is not one it takes; `shown` is its part of a summary, if on.
    public struct Row: Sendable {
        public let name: String
        public let syntax: String
        public let effect: String
        let set: @Sendable (inout Faults, Int?) -> Bool
        let shown: @Sendable (Faults) -> String?
    }

    public static let table: [Row] = [
        every("parity", \.parityErrorEvery, "every Nth card block arrives as XFR_PARITY_ERROR (bError 0xFD)"),
        every("edc", \.edcErrorEvery, "every Nth card block is garbled (T=1 EDC error)"),
        every("lost", \.lostBlockEvery, "every Nth card block is lost (ICC_MUTE)"),
        every("repeat", \.repeatBlockEvery, "every Nth time the card repeats its previous block (a duplicate)"),
        valued("ifs", "ifs=SIZE", 0...254, "before each response the card sends S(IFS request SIZE); 0 off",
               set: { f, v in f.cardIFSRequest = v == 0 ? nil : UInt8(v) }, shown: { f in f.cardIFSRequest.map { "ifs=\($0)" } }),
        every("wtx", \.wtxPerResponse, "N S(WTX request)s before each T=1 response (a WTX storm)"),
        every("te", \.timeExtensionsPerReply, "N CCID time extensions before each reply (a time-extension storm)"),
        every("wrongseq", \.wrongSequenceEvery, "every Nth reply first comes with a wrong bSeq"),
        flag("mute", \.mute, "the card stops answering (every block ICC_MUTE)"),
        flag("stuck", \.stuck, "the reader stops answering (no reply at all)"),
        valued("pps", "pps=0/1/2", 0...2, "the card answers PPS by echo / without PPS1 (keeps Fi/Di) / not at all",
               set: { f, v in f.ppsAnswer = v }, shown: { f in f.ppsAnswer == 0 ? nil : "pps=\(f.ppsAnswer)" }),
        valued("voltage", "voltage=1/2/3", 0...3, "the card answers power-up only at 5 V / 3 V / 1.8 V (or automatic); 0 off",
               set: { f, v in f.onlyVoltage = v == 0 ? nil : UInt8(v) }, shown: { f in f.onlyVoltage.map { "voltage=\($0)" } }),
        lie(.wrongSlot, "every Nth reply first comes for another slot"),
        lie(.garbage, "every Nth reply is preceded by random bytes (0–300)"),
        lie(.truncated, "every Nth reply is cut short: dwLength promises more than comes"),
        lie(.oversized, "every Nth reply claims a length of nearly 4 GiB"),
        lie(.wrongType, "every Nth reply has the wrong message type"),
        valued("late", "late=MS", 1...600_000, "replies come MS late, even after the host's ABORT (a reader that answers after Abort)",
               set: { f, v in (f.readerLie, f.readerLieEvery, f.lateMilliseconds) = (.late, 1, v) },
               shown: { f in f.readerLie == .late ? "late=\(f.lateMilliseconds)" : nil }),
        every("intflood", \.interruptFlood, "N NotifySlotChange interrupts with every reply", limit: 100_000),
        every("hwerror", \.hardwareErrorEvery, "every Nth command also raises RDR_to_PC_HardwareError"),
        every("hangup", \.hangUpAt, "at the Nth command from now the reader goes away instead of answering "
              + "(relay: the connection drops; USB: it falls silent)"),
        Row(name: "clear", syntax: "clear", effect: "all off",
            set: { f, v in
                guard v == nil else { return false }
                f = Faults()
                return true
            },
            shown: { _ in nil }),
    ]

    public static var names: [String] { table.map(\.name) }

    /// Applies `name[=value]`, e.g. "parity=3", "mute", "clear"; false if the setting is not one of the table's.
    public mutating func apply(_ setting: String) -> Bool {
        guard let (name, value) = Setting.parse(setting), let row = Self.table.first(where: { $0.name == name }) else { return false }
        return row.set(&self, value)
    }

    public var summary: String {
        let on = Self.table.compactMap { $0.shown(self) }
        return on.isEmpty ? "none" : on.joined(separator: " ")
    }

    /// The settings, one per line, for help texts.
    public static var help: String {
        table.map { "\($0.syntax): \($0.effect)" }.joined(separator: "\n")
    }

    // MARK: Row kinds

    /// "every N" / "N per reply": a bare name means 1, N is capped.
    private static func every(_ name: String, _ field: WritableKeyPath<Faults, Int> & Sendable, _ effect: String,
                              limit: Int = 1_000_000) -> Row {
        Row(name: name, syntax: "\(name)=N", effect: effect,
            set: { f, v in
                let n = v ?? 1
                guard n >= 0 else { return false }
                f[keyPath: field] = min(n, limit)
                return true
            },
            shown: { f in f[keyPath: field] > 0 ? "\(name)=\(f[keyPath: field])" : nil })
    }

    /// A value that must be given and lie in `range`.
    private static func valued(_ name: String, _ syntax: String, _ range: ClosedRange<Int>, _ effect: String,
                               set: @escaping @Sendable (inout Faults, Int) -> Void,
                               shown: @escaping @Sendable (Faults) -> String?) -> Row {
        Row(name: name, syntax: syntax, effect: effect,
            set: { f, v in
                guard let v, range.contains(v) else { return false }
                set(&f, v)
                return true
            },
            shown: shown)
    }

    /// On with a bare name or a non-zero value, off with 0.
    private static func flag(_ name: String, _ field: WritableKeyPath<Faults, Bool> & Sendable, _ effect: String) -> Row {
        Row(name: name, syntax: name, effect: effect,
            set: { f, v in
                f[keyPath: field] = v.map { $0 != 0 } ?? true
                return true
            },
            shown: { f in f[keyPath: field] ? name : nil })
    }

    /// One kind of reader lie, every Nth reply; only one lie is on at a time.
    private static func lie(_ kind: ReaderLie, _ effect: String) -> Row {
        Row(name: kind.rawValue, syntax: "\(kind.rawValue)=N", effect: effect,
            set: { f, v in
                let n = v ?? 1
                guard n >= 0 else { return false }
                (f.readerLie, f.readerLieEvery) = n == 0 ? (nil, 0) : (kind, min(n, 1_000_000))
                return true
            },
            shown: { f in f.readerLie == kind ? "\(kind.rawValue)=\(f.readerLieEvery)" : nil })
    }
}

/// A `name[=value]` setting of a fault or firmware bug, as users write them.
enum Setting {
    /// The name and the value, if any; nil when the value is not a number.
    static func parse(_ text: String) -> (name: String, value: Int?)? {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let name = parts.first else { return nil }
        guard parts.count > 1 else { return (name, nil) }
        guard let value = Int(parts[1]) else { return nil }
        return (name, value)
    }
}

/// Counts events so "every N" fires on the Nth, 2Nth, … one.
struct FaultCounter: Sendable {
    private var seen = 0
    mutating func fires(every n: Int) -> Bool {
        guard n > 0 else { return false }
        seen &+= 1
        return seen % n == 0
    }
}
