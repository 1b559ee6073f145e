/// Defects of a real reader's firmware, fixed for the life of a simulated
/// reader (its profile's, unlike `Faults`, which a test switches at run time):
/// the misbehaviour a driver's quirk exists for, so a test can show the quirk
/// matters. Each is one row of `FirmwareBugs.table`, named as in `--config`'s
/// "firmwareBugs": ["slow-status=350", "emv-mode"].
public struct FirmwareBugs: Sendable, Equatable {
    /// For this long after the host opens the device (relay: connects; USB: from the
    /// plug) no bulk-out command is answered (id3 CL1356: about 1 s).
    public var bootSilence: Duration? = nil
    /// Every GetSlotStatus is answered this late (SCM SCL011: ~350 ms; Elatec TWN4: up to 1 s).
    public var slowSlotStatus: Duration? = nil
    /// At APDU level, responses longer than this come in chained pieces of this size,
    /// whatever level the descriptor claims (HID OMNIKEY 3x21, Cherry KC 1000 SC 1.00: 128).
    public var chainsResponsesOver: Int? = nil
    /// While the card works the reader sends no time extension: the answer just comes late (Thales eToken Fusion).
    public var noTimeExtensions = false
    /// Responses longer than this come back as garbage with half a status word (KOBIL TriB@nk: ~296).
    public var garbleResponsesOver: Int? = nil
    /// PIN entry is advertised, but there is no keypad: every Secure fails.
    public var noKeypad = false
    /// The card is mute after the host sent S(IFS request) (SafeNet eToken 5100 0.12/0.13).
    public var stallsAfterIFSRequest = false
    /// Any PPS goes unanswered (O2 Micro Oz776).
    public var noPPS = false
    /// A power-up not preceded by a power-off since the last one leaves the card mute (KOBIL IDToken).
    public var needsPowerOffFirst = false
    /// The reader cannot talk to the card faster than this (bps at its default clock):
    /// once SetParameters sets any Fi/Di but the default 372/1 that is faster, the
    /// card is mute (O2 Micro Oz776: 9600, i.e. nothing but the default).
    public var maxWorkingRate: UInt32? = nil
    /// GET_DATA_RATES also lists rates the reader cannot run (Alcor AU9540: 231250, 250000, 344086 bps).
    public var listsFakeRates = false
    /// How the PIN pad's firmware reads PC_to_RDR_Secure (PIN pads' P rows).
    public var pinFrame: Set<PINFrameBug> = []
    /// A verification less than this after the previous command is rejected: the Enter key is still down (Dell keyboards).
    public var keyRelease: Duration? = nil
    /// The firmware takes messages up to this long, longer than its dwMaxCCIDMessageLength says (SCM: 263 declared, 271 taken).
    public var takesMessagesUpTo: Int? = nil
    /// At character level, a bulk-out message of a whole number of 64-byte packets goes unanswered (O2 Micro Oz776).
    public var hangsOnWholePackets = false
    /// A T=1 SetParameters with a Fi/Di other than the card's TA1 leaves the card mute (Alcor AU9540).
    public var setParametersOnlyAtTA1 = false
    /// The reader has a vendor Escape command: it answers each Escape with the bytes it was sent.
    public var escapeEcho = false
    /// The reader starts in EMV mode: power-up fails with bError 0xBB until Escape 1F 01 (Gemplus 433-Swap, Cherry XX33).
    public var startsInEMVMode = false
    /// The pad takes a PIN only once the host has loaded its display prompts: an Escape
    /// B2 A0 00 4D 4C with ten 16-byte texts, 165 bytes in all (GemPC Pinpad).
    public var needsDisplayPrompts = false
    /// The firmware answers Escape 6A (GET_FIRMWARE_FEATURES) with this many bytes:
    /// validation key only (0x02), PINs of 4 to 8 digits, no modification fix; and it
    /// refuses a PIN entry asking for another validation condition (Gemalto PIN pads).
    public var firmwareFeaturesLength: Int? = nil
    public static func firmwareFeatures(length: Int) -> [UInt8] {
        var answer = [UInt8](repeating: 0, count: max(length, 15))
        answer[3] = 0x02
        answer[13] = 4
        answer[14] = 8
        return Array(answer.prefix(length))
    }
    /// Slots after the first run only `secondaryRates`: once SetParameters sets another
    /// rate there, the card is mute (GemCore POS Pro).
    public var limitsSecondarySlots = false
    public static let secondaryRates: [UInt32] = [10_753, 21_505, 43_011, 125_000]
    /// A verification whose APDU is a bare header with no PIN block is refused unless
    /// Escape 80 02 00 came first; then the PIN is appended as typed, its length as Lc.
    /// A Secure that reuses the Escape's bSeq is refused too (SCM SPR 532).
    public var unpaddedPINNeedsEscape = false
    /// SetParameters is carried out but answered "failed" with this bError (1–127: the
    /// offset of a field the reader kept its own value of, CCID §6.2.6).
    public var setParametersKeepsField: UInt8? = nil
    /// The reader cannot sense a card: its status says one is in (present, inactive) whether or
    /// not, no card event is sent, and with none a power-up fails ICC_MUTE (GemCore SIM Pro before 2.00).
    public var cannotSenseCards = false

    public init() {}

    /// What a PIN pad's firmware wants of PC_to_RDR_Secure, else it rejects the frame
    /// (bError naming the field's offset) or the card answers 6B 80.
    public enum PINFrameBug: String, Sendable, CaseIterable {
        /// Verification only with bEntryValidationCondition 0x02 and bNumberMessage 0x01 (GemPC Pinpad).
        case verifyGemPC = "pin-verify-gempc"
        /// Modification only with bEntryValidationCondition 0x02 (GemPC Pinpad).
        case modifyValidation2 = "pin-modify-validation2"
        /// A modification always carries three bMsgIndex bytes (Gemalto).
        case modifyThreeIndexes = "pin-modify-3-indexes"
        /// With bNumberMessage under 3 in a modification, the card answers 6B 80 (Cherry XX44).
        case modifyThreeMessages = "pin-modify-3-messages"
        /// A modification must carry three bMsgIndex bytes and bNumberMessage 0 (SCM SPR 532, Cherry ST-2xxx).
        case modifyNoMessages = "pin-modify-no-messages"
        /// A modification with bNumberMessage 0 is rejected (Cherry KC 1000 SC).
        case modifyMessage0Refused = "pin-modify-msg0-refused"
        /// Verification only with bNumberMessage 0 (Dell keyboards).
        case verifyMessage0 = "pin-verify-msg0"
        /// wPINMaxExtraDigit is read with its bytes swapped (Dell SK-3106).
        case maxExtraDigitSwapped = "pin-extra-digit-swapped"

        var effect: String {
            switch self {
            case .verifyGemPC: "a verification needs bEntryValidationCondition 0x02 and bNumberMessage 0x01"
            case .modifyValidation2: "a modification needs bEntryValidationCondition 0x02"
            case .modifyThreeIndexes: "a modification always carries three bMsgIndex bytes"
            case .modifyThreeMessages: "a modification with bNumberMessage under 3 makes the card answer 6B 80"
            case .modifyNoMessages: "a modification needs three bMsgIndex bytes and bNumberMessage 0"
            case .modifyMessage0Refused: "a modification with bNumberMessage 0 is rejected"
            case .verifyMessage0: "a verification needs bNumberMessage 0"
            case .maxExtraDigitSwapped: "wPINMaxExtraDigit is read with its bytes swapped"
            }
        }
    }

    /// What the `fake-rates` bug adds to GET_DATA_RATES.
    static let fakeRates: [UInt32] = [231_250, 250_000, 344_086]

    public struct Row: Sendable {
        public let name: String
        public let syntax: String
        public let effect: String
        let set: @Sendable (inout FirmwareBugs, Int?) -> Bool
    }

    public static let table: [Row] = [
        Row(name: "boot-silence", syntax: "boot-silence=MS", effect: "no command is answered for MS after the host opens the device",
            set: { b, v in guard let v, (1...60_000).contains(v) else { return false }; b.bootSilence = .milliseconds(v); return true }),
        Row(name: "slow-status", syntax: "slow-status=MS", effect: "every GetSlotStatus is answered MS late",
            set: { b, v in guard let v, (1...60_000).contains(v) else { return false }; b.slowSlotStatus = .milliseconds(v); return true }),
        Row(name: "chain-over", syntax: "chain-over=N", effect: "APDU responses over N bytes come chained in pieces of N (01/03/02)",
            set: { b, v in guard let v, (16...65_536).contains(v) else { return false }; b.chainsResponsesOver = v; return true }),
        Row(name: "garble-over", syntax: "garble-over=N", effect: "APDU responses over N bytes come back as garbage with half a status word",
            set: { b, v in guard let v, (2...65_536).contains(v) else { return false }; b.garbleResponsesOver = v; return true }),
        Row(name: "max-rate", syntax: "max-rate=BPS", effect: "once SetParameters sets a rate above BPS (other than 372/1) the card is mute",
            set: { b, v in guard let v, (1...10_000_000).contains(v) else { return false }; b.maxWorkingRate = UInt32(v); return true }),
        flag("fake-rates", \.listsFakeRates, "GET_DATA_RATES also lists 231250, 250000 and 344086 bps"),
        flag("no-time-extensions", \.noTimeExtensions, "while the card works, no CCID time extension is sent: the answer just comes late"),
        flag("no-keypad", \.noKeypad, "PIN entry is advertised but every Secure fails (no keypad)"),
        flag("ifs-stall", \.stallsAfterIFSRequest, "after the host's S(IFS request) the card is mute"),
        flag("no-pps", \.noPPS, "PPS goes unanswered"),
        flag("poweroff-first", \.needsPowerOffFirst, "a power-up not preceded by a power-off leaves the card mute"),
        Row(name: "pin-key-release", syntax: "pin-key-release=MS", effect: "a verification less than MS after the previous command is rejected",
            set: { b, v in guard let v, (1...10_000).contains(v) else { return false }; b.keyRelease = .milliseconds(v); return true }),
        Row(name: "takes-message", syntax: "takes-message=N", effect: "messages up to N bytes are taken, whatever dwMaxCCIDMessageLength says",
            set: { b, v in guard let v, (10...65_546).contains(v) else { return false }; b.takesMessagesUpTo = v; return true }),
        flag("whole-packet-hang", \.hangsOnWholePackets, "at character level, a message of a multiple of 64 bytes goes unanswered"),
        flag("setparams-ta1-only", \.setParametersOnlyAtTA1, "a T=1 SetParameters at a Fi/Di other than TA1 fails: card mute"),
        flag("escape-echo", \.escapeEcho, "a vendor Escape command: each Escape is answered with its own bytes"),
        flag("emv-mode", \.startsInEMVMode, "power-up fails with bError 0xBB until Escape 1F 01 (ISO mode)"),
        Row(name: "setparams-keeps", syntax: "setparams-keeps=OFFSET",
            effect: "SetParameters is carried out but answered failed, bError OFFSET (a field the reader kept)",
            set: { b, v in guard let v, (1...127).contains(v) else { return false }; b.setParametersKeepsField = UInt8(v); return true }),
        Row(name: "firmware-features", syntax: "firmware-features=N",
            effect: "Escape 6A answers N bytes of firmware features (validation key only, PINs of 4 to 8); a PIN entry asking another validation is refused",
            set: { b, v in guard let v, (1...64).contains(v) else { return false }; b.firmwareFeaturesLength = v; return true }),
        flag("needs-prompts", \.needsDisplayPrompts,
             "a PIN entry is refused until the host loads the display prompts (Escape B2 A0 00 4D 4C, 165 bytes)"),
        flag("secondary-rates", \.limitsSecondarySlots,
             "slots after the first run only 10753, 21505, 43011 and 125000 bps: at another rate the card is mute"),
        flag("pin-case1-escape", \.unpaddedPINNeedsEscape,
             "a case-1 verification with no PIN block needs Escape 80 02 00 first (then the PIN is appended unpadded) and a new bSeq"),
        flag("no-presence", \.cannotSenseCards, "the status always says a card is in, no card event is sent; with none, power-up fails ICC_MUTE"),
    ] + PINFrameBug.allCases.map { bug in
        Row(name: bug.rawValue, syntax: bug.rawValue, effect: bug.effect, set: { b, v in
            guard v == nil else { return false }
            b.pinFrame.insert(bug)
            return true
        })
    }

    private static func flag(_ name: String, _ field: WritableKeyPath<FirmwareBugs, Bool> & Sendable, _ effect: String) -> Row {
        Row(name: name, syntax: name, effect: effect, set: { b, v in
            guard v == nil else { return false }
            b[keyPath: field] = true
            return true
        })
    }

    /// Applies "name[=value]"; false if the table has no such row or the value is not one it takes.
    public mutating func apply(_ setting: String) -> Bool {
        guard let (name, value) = Setting.parse(setting), let row = Self.table.first(where: { $0.name == name }) else { return false }
        return row.set(&self, value)
    }

    public static var help: String { table.map { "\($0.syntax): \($0.effect)" }.joined(separator: "\n") }
}
