/// Misbehaviour injected into one slot of a simulated reader, switchable at
/// run time (`ccid-sim fault`). "Every N" counts the card's blocks or the
/// reader's replies on that slot; 0 turns a fault off.
public struct Faults: Sendable, Equatable {
    /// The reader reports XFR_PARITY_ERROR (bError 0xFD) instead of the card's block.
    public var parityErrorEvery = 0
    /// A byte of the card's block is garbled (T=1: EDC error).
    public var edcErrorEvery = 0
    /// The card's block is lost: ICC_MUTE after the block waiting time.
    public var lostBlockEvery = 0
    /// The card sends its previous block again instead of the new one.
    public var repeatBlockEvery = 0
    /// Before each response the card asks for this IFSC with S(IFS request).
    public var cardIFSRequest: UInt8? = nil
    /// S(WTX request)s before each T=1 response (a WTX storm).
    public var wtxPerResponse = 0
    /// CCID time extensions before each reply (a time-extension storm).
    public var timeExtensionsPerReply = 0
    /// Every N replies first come with a wrong bSeq.
    public var wrongSequenceEvery = 0
    /// The card stops answering: every block times out (ICC_MUTE).
    public var mute = false
    /// The reader stops answering altogether: no reply to XfrBlock at all.
    public var stuck = false
    /// How the card answers PPS: echo (accept), 1 (accept but keep Fi/Di: PPS1 absent), 2 (no answer).
    public var ppsAnswer = 0

    /// What the reader itself gets wrong in its bulk-in messages.
    public enum ReaderLie: String, Sendable, CaseIterable {
        /// A message for another slot first.
        case wrongSlot = "wrongslot"
        /// Random bytes first.
        case garbage
        /// The reply cut short: dwLength promises more than comes.
        case truncated = "truncate"
        /// The reply claims a length of nearly 4 GiB.
        case oversized = "oversize"
        /// The reply of another message type.
        case wrongType = "wrongtype"
        /// The reply comes `lateMilliseconds` late: after the host's deadline and Abort.
        case late
    }
    public var readerLie: ReaderLie? = nil
    public var readerLieEvery = 0
    public var lateMilliseconds = 0
    /// NotifySlotChange messages (this slot "changed") sent with each reply: an interrupt flood.
    public var interruptFlood = 0
    /// Every N commands the reader also reports RDR_to_PC_HardwareError (overcurrent).
    public var hardwareErrorEvery = 0
    /// At the Nth command from now the reader goes away instead of answering
    /// (relay: the connection drops), whatever step of an exchange that is.
    public var hangUpAt = 0

    public init() {}

    public static let names = ["parity", "edc", "lost", "repeat", "ifs", "wtx", "te", "wrongseq", "mute", "stuck", "pps",
                               "wrongslot", "garbage", "truncate", "oversize", "wrongtype", "late", "intflood", "hwerror", "hangup", "clear"]

    /// Applies `name[=value]`, e.g. "parity=3", "mute", "clear".
    public mutating func apply(_ setting: String) -> Bool {
        let parts = setting.split(separator: "=", maxSplits: 1).map(String.init)
        let name = parts.first ?? ""
        let value = parts.count > 1 ? Int(parts[1]) : nil
        func count() -> Int? { value.map { max(0, min($0, 1_000_000)) } ?? (parts.count == 1 ? 1 : nil) }
        switch name {
        case "parity": guard let v = count() else { return false }; parityErrorEvery = v
        case "edc": guard let v = count() else { return false }; edcErrorEvery = v
        case "lost": guard let v = count() else { return false }; lostBlockEvery = v
        case "repeat": guard let v = count() else { return false }; repeatBlockEvery = v
        case "wtx": guard let v = count() else { return false }; wtxPerResponse = v
        case "te": guard let v = count() else { return false }; timeExtensionsPerReply = v
        case "wrongseq": guard let v = count() else { return false }; wrongSequenceEvery = v
        case "ifs":
            guard let v = value, (0...254).contains(v) else { return false }
            cardIFSRequest = v == 0 ? nil : UInt8(v)
        case "mute": mute = value.map { $0 != 0 } ?? true
        case "stuck": stuck = value.map { $0 != 0 } ?? true
        case "pps":
            guard let v = value, (0...2).contains(v) else { return false }
            ppsAnswer = v
        case "late":
            guard let v = value, (1...600_000).contains(v) else { return false }
            (readerLie, readerLieEvery, lateMilliseconds) = (.late, 1, v)
        case "intflood": guard let v = count() else { return false }; interruptFlood = min(v, 100_000)
        case "hwerror": guard let v = count() else { return false }; hardwareErrorEvery = v
        case "hangup": guard let v = count() else { return false }; hangUpAt = v
        case let lie where ReaderLie(rawValue: lie) != nil:
            guard let v = count(), let kind = ReaderLie(rawValue: lie) else { return false }
            (readerLie, readerLieEvery) = v == 0 ? (nil, 0) : (kind, v)
        case "clear": self = Faults()
        default: return false
        }
        return true
    }

    public var summary: String {
        var on: [String] = []
        if parityErrorEvery > 0 { on.append("parity=\(parityErrorEvery)") }
        if edcErrorEvery > 0 { on.append("edc=\(edcErrorEvery)") }
        if lostBlockEvery > 0 { on.append("lost=\(lostBlockEvery)") }
        if repeatBlockEvery > 0 { on.append("repeat=\(repeatBlockEvery)") }
        if let s = cardIFSRequest { on.append("ifs=\(s)") }
        if wtxPerResponse > 0 { on.append("wtx=\(wtxPerResponse)") }
        if timeExtensionsPerReply > 0 { on.append("te=\(timeExtensionsPerReply)") }
        if wrongSequenceEvery > 0 { on.append("wrongseq=\(wrongSequenceEvery)") }
        if mute { on.append("mute") }
        if stuck { on.append("stuck") }
        if ppsAnswer != 0 { on.append("pps=\(ppsAnswer)") }
        if let lie = readerLie { on.append(lie == .late ? "late=\(lateMilliseconds)" : "\(lie.rawValue)=\(readerLieEvery)") }
        if interruptFlood > 0 { on.append("intflood=\(interruptFlood)") }
        if hardwareErrorEvery > 0 { on.append("hwerror=\(hardwareErrorEvery)") }
        if hangUpAt > 0 { on.append("hangup=\(hangUpAt)") }
        return on.isEmpty ? "none" : on.joined(separator: " ")
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
