import ThreadSupport
import ISO7816

/// What a card does with one command APDU.
public struct CardAnswer: Equatable, Sendable {
    public var response: [UInt8]
    /// How long the card stays busy first, asking for more time meanwhile.
    public var busy: Duration
    /// The card said nothing (a card in another process that failed): the reader reports ICC_MUTE.
    public var silent = false
    /// Whether the card asks for time (T=1 S(WTX), T=0 NULL bytes) while busy; a card that does not just answers late.
    public var asksForTime = true
    public init(_ response: [UInt8], busy: Duration = .zero) {
        self.response = response
        self.busy = busy
    }

    public static let silent: CardAnswer = { var a = CardAnswer([]); a.silent = true; return a }()
}

/// A simulated card: an ATR and an APDU processor. The protocol in use is
/// the one negotiated since the last power-up.
public protocol SimulatedCard: AnyObject, Sendable {
    var name: String { get }
    var atr: [UInt8] { get }
    /// Cold or warm reset: volatile state (selection, pending responses) is lost.
    func reset()
    /// PC_to_RDR_IccPowerOn: a reset, and the ATR; nil if the card does not answer.
    func powerUp() -> [UInt8]?
    func powerDown()
    func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer
    /// T=0 at character level: whether this header's P3 counts bytes sent to the card.
    func commandCarriesData(_ header: [UInt8]) -> Bool
    /// The card this is: a wrapper (a recording) answers for the card it wraps.
    var identity: ObjectIdentifier { get }
    /// A contactless card's UID, which its reader reports (PC/SC Part 3 GET DATA); nil for a contact card.
    var uid: [UInt8]? { get }
}

extension SimulatedCard {
    public var identity: ObjectIdentifier { ObjectIdentifier(self) }
    public var uid: [UInt8]? { nil }

    public func powerUp() -> [UInt8]? {
        reset()
        return atr
    }

    public func powerDown() {}

    /// For a card whose commands the simulator does not know: the ISO/IEC
    /// 7816-4 commands that carry data to the card (cases 3 and 4).
    public func commandCarriesData(_ header: [UInt8]) -> Bool {
        header.count > 1 && isoDataInINS.contains(header[1])
    }
}

/// ISO/IEC 7816-4 INS codes whose P3 is Lc under T=0.
let isoDataInINS: Set<UInt8> = [
    0x0E, 0x10, 0x12, 0x20, 0x21, 0x22, 0x24, 0x2A, 0x2C, 0x46, 0x47, 0x82, 0x86, 0x87, 0x88, 0xA4,
    0xB1, 0xB3, 0xC2, 0xC3, 0xCB, 0xD0, 0xD1, 0xD2, 0xD6, 0xD7, 0xDA, 0xDB, 0xDC, 0xDD, 0xE0,
    0xE2, 0xE4,
]

/// The PC/SC compliance test card of docs/compliance-test-card.md:
/// a test applet plus the extended-APDU commands of the "Athena" cards.
public final class ComplianceTestCard: SimulatedCard, Sendable {
    public enum Variant: String, CaseIterable, Sendable {
        case direct = "compliance"
        case inverse = "compliance-inverse"
        case crypto = "compliance-crypto"
        /// The same applet on an ISO/IEC 14443-4 (type A) card in a contactless
        /// reader: PC/SC Part 3's ATR, built from the ATS's historical bytes, and a UID.
        case contactless = "compliance-contactless"
        /// The same card asking for a fast rate: TA1 96 (Fi 512, Di 32: 250 kbps at 4 MHz).
        case fast = "compliance-fast"
        /// The same applet behind an OpenPGP card's ATR (T=1 only, TB3 45: BWI 4),
        /// which, like that card, asks for no time while it works.
        case openPGPATR = "compliance-openpgp-atr"

        public var atr: [UInt8] {
            switch self {
            case .direct: [0x3B, 0xD6, 0x18, 0x00, 0x80, 0xB1, 0x80, 0x6D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x9E]
            case .inverse: [0x3F, 0x96, 0x18, 0x80, 0x01, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x9F]
            case .crypto: [0x3B, 0xD6, 0x18, 0x00, 0x81, 0xB1, 0x80, 0x7D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x8F]
            case .contactless: Self.contactlessATR
            case .openPGPATR: [0x3B, 0xFA, 0x13, 0x00, 0xFF, 0x81, 0x31, 0x80, 0x45, 0x00, 0x31, 0xC1, 0x73, 0xC0,
                                0x01, 0x00, 0x00, 0x90, 0x00, 0xB1]
            case .fast: [0x3B, 0xD6, 0x96, 0x00, 0x80, 0xB1, 0x80, 0x6D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x10]
            }
        }

        /// PC/SC Part 3 §3.1.3.2.3: 3B 8n 80 01, the ATS's n historical bytes, TCK.
        static let contactlessHistoricalBytes: [UInt8] = [0x80, 0x51, 0x00, 0x61, 0x10, 0x30]
        static var contactlessATR: [UInt8] {
            let body: [UInt8] = [0x80 | UInt8(contactlessHistoricalBytes.count), 0x80, 0x01] + contactlessHistoricalBytes
            return [0x3B] + body + [body.reduce(0, ^)]
        }

        /// A 7-byte UID (NXP's manufacturer code first), for contactless readers' FF CA.
        public var uid: [UInt8]? { self == .contactless ? [0x04, 0xA2, 0x2B, 0x7A, 0x5C, 0x3E, 0x80] : nil }
    }

    public static let appletAID: [UInt8] = [0xA0, 0x00, 0x00, 0x00, 0x18, 0xFF]
    public static let initialPINTries = 3
    /// Each unit of P2 of the time-request command keeps the card busy this long.
    public static let busyUnit: Duration = .milliseconds(50)

    public let variant: Variant
    public var name: String { variant.rawValue }
    public var atr: [UInt8] { variant.atr }
    public var uid: [UInt8]? { variant.uid }
    private let applet = Mutex(ComplianceApplet())

    public init(_ variant: Variant = .direct) { self.variant = variant }

    static let ok: [UInt8] = [0x90, 0x00]
    static let wrongLength: [UInt8] = [0x67, 0x00]
    static let insNotSupported: [UInt8] = [0x6D, 0x00]
    /// INS of commands whose P3 is Lc (data to the card); the others return data (P3 is Le) or none.
    static let dataInINS: Set<UInt8> = [0x32, 0x22, 0x3A, 0x36, 0x23, 0x3E, 0x20, 0x24, 0xA4, 0xC2, 0x12]

    public func reset() { applet.withLock { $0.reset() } }

    public func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        var answer = applet.withLock { $0.process(apdu, protocolType: protocolType) }
        // The OpenPGP card this variant wears the ATR of asks for no time while it works.
        if variant == .openPGPATR { answer.asksForTime = false }
        return answer
    }

    public func commandCarriesData(_ header: [UInt8]) -> Bool {
        header.count > 1 && Self.dataInINS.contains(header[1])
    }
}

/// The test applet's state and its answers, as a value.
struct ComplianceApplet: Sendable {
    private var selected = false
    private var pendingResponse: [UInt8] = []
    /// The status word that ends the pending response (an enveloped command's own).
    private var pendingStatus: [UInt8] = ComplianceTestCard.ok
    /// An extended command arriving in ENVELOPE pieces (T=0).
    private var envelope: [UInt8] = []
    private var pinTries = ComplianceTestCard.initialPINTries
    private var lastPINCommand: [UInt8] = []

    mutating func reset() {
        selected = false
        pendingResponse = []
        envelope = []
    }


    mutating func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        guard let command = try? CommandAPDU(apdu) else { return CardAnswer(ComplianceTestCard.wrongLength) }
        let (_, ins, p1, p2) = command.header
        if ins != 0xC0 {
            pendingResponse = []
            pendingStatus = ComplianceTestCard.ok
        }
        if ins != 0xC2 { envelope = [] }
        switch ins {
        case 0xC2: return envelopePiece(command)
        case 0xA4: return CardAnswer(select(command))
        case 0xC0: return CardAnswer(getResponse(command))
        case 0x00 where p1 == 0x04: return CardAnswer(repeatedByte(command))
        case 0x12 where p1 == 0x01 && p2 == 0x80: return CardAnswer(checkSequence(command.data, lengthChecked: false))
        default: break
        }
        guard selected else { return CardAnswer(ComplianceTestCard.insNotSupported) }
        switch ins {
        case 0x30:
            // `80 30 00 00 [00]`: P3, if present, must be 0.
            return CardAnswer(apdu.count == 4 || (apdu.count == 5 && apdu[4] == 0) ? ComplianceTestCard.ok : ComplianceTestCard.wrongLength)
        case 0x32, 0x22: return CardAnswer(checkSequence(command.data, lengthChecked: true))
        case 0x3A: return CardAnswer(checkSequence(command.data, lengthChecked: false))
        case 0x34, 0x21, 0x3C:
            let wanted = Int(p1) << 8 | Int(p2)
            if ins != 0x3C {
                guard command.apduCase == .two, wanted == command.expectedLength else { return CardAnswer(ComplianceTestCard.wrongLength) }
            }
            return CardAnswer(sequence(wanted) + ComplianceTestCard.ok)
        case 0x36, 0x23, 0x3E:
            if ins != 0x3E, command.dataLength == 0 { return CardAnswer(ComplianceTestCard.wrongLength) }
            let check = checkSequence(command.data, lengthChecked: false)
            guard check == ComplianceTestCard.ok else { return CardAnswer(check) }
            let data = sequence(Int(p1) << 8 | Int(p2))
            return CardAnswer(caseFourAnswer(data, protocolType: protocolType))
        case 0x38: return CardAnswer(ComplianceTestCard.ok, busy: ComplianceTestCard.busyUnit * Int(p2))
        case 0x20: return CardAnswer(verify(command, apdu: apdu))
        case 0x24: return CardAnswer(modify(command, apdu: apdu))
        case 0x40:
            if protocolType == 0, !command.isExtended, command.apduCase == .two,
               command.expectedLength != lastPINCommand.count, lastPINCommand.count <= 256 {
                return CardAnswer([0x6C, UInt8(truncatingIfNeeded: lastPINCommand.count)])
            }
            return CardAnswer(lastPINCommand + ComplianceTestCard.ok)
        default:
            return CardAnswer(ComplianceTestCard.insNotSupported)
        }
    }

    /// ENVELOPE (ISO/IEC 7816-4 §7.6.4): pieces of an extended command; an
    /// empty one runs it, and its response waits for GET RESPONSE.
    private mutating func envelopePiece(_ c: CommandAPDU) -> CardAnswer {
        if c.dataLength > 0 {
            guard envelope.count + c.dataLength <= 65544 else {
                envelope = []
                return CardAnswer([0x67, 0x00])
            }
            envelope += c.data
            return CardAnswer(ComplianceTestCard.ok)
        }
        let inner = envelope
        envelope = []
        guard !inner.isEmpty else { return CardAnswer([0x67, 0x00]) }
        // The transport is ENVELOPE/GET RESPONSE: the command answers in full, as under T=1.
        let answer = process(inner, protocolType: 1)
        let data = Array(answer.response.dropLast(2)), status = Array(answer.response.suffix(2))
        guard !data.isEmpty else { return CardAnswer(status, busy: answer.busy) }
        pendingResponse = data
        pendingStatus = status
        return CardAnswer([0x61, UInt8(truncatingIfNeeded: min(data.count, 256))], busy: answer.busy)
    }

    private mutating func select(_ c: CommandAPDU) -> [UInt8] {
        guard c.header.p1 == 0x04 else { return [0x6A, 0x86] }
        if Array(c.data) == ComplianceTestCard.appletAID {
            selected = true
            return ComplianceTestCard.ok
        }
        selected = false
        return [0x6A, 0x82]
    }

    /// Under T=0 a case 4 answer is announced with 61xx and fetched by GET RESPONSE.
    private mutating func caseFourAnswer(_ data: [UInt8], protocolType: UInt8) -> [UInt8] {
        guard protocolType == 0, !data.isEmpty else { return data + ComplianceTestCard.ok }
        pendingResponse = data
        return [0x61, UInt8(truncatingIfNeeded: min(data.count, 256))]
    }

    private mutating func getResponse(_ c: CommandAPDU) -> [UInt8] {
        guard !pendingResponse.isEmpty else { return [0x6F, 0x00] }
        let le = c.apduCase == .two ? c.expectedLength : 256
        let available = pendingResponse.count
        if le > available { return [0x6C, UInt8(truncatingIfNeeded: available)] }
        let n = le
        let chunk = Array(pendingResponse.prefix(n))
        pendingResponse.removeFirst(n)
        if pendingResponse.isEmpty { return chunk + pendingStatus }
        return chunk + [0x61, UInt8(truncatingIfNeeded: min(pendingResponse.count, 256))]
    }

    /// Case 2E/2S: `80 00 04 VV Le` → VV repeated Ne times.
    private func repeatedByte(_ c: CommandAPDU) -> [UInt8] {
        guard c.apduCase == .two else { return ComplianceTestCard.wrongLength }
        return [UInt8](repeating: c.header.p2, count: c.expectedLength) + ComplianceTestCard.ok
    }

    private func checkSequence(_ data: ArraySlice<UInt8>, lengthChecked: Bool) -> [UInt8] {
        if lengthChecked, data.isEmpty { return ComplianceTestCard.wrongLength }
        for (i, b) in data.enumerated() where b != UInt8(truncatingIfNeeded: i) {
            return [0x6A, UInt8(clamping: i)]
        }
        return ComplianceTestCard.ok
    }

    private func sequence(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0) } }

    /// PIN digits are ASCII "1", "2", "3"…; 0xFF is block padding, after
    /// which the next PIN (MODIFY carries old and new) starts again at "1".
    private func checkPIN(_ data: ArraySlice<UInt8>) -> Int? {
        var expected: UInt8 = 0x31
        for (i, b) in data.enumerated() {
            if b == 0xFF { expected = 0x31; continue }
            if b != expected { return i }
            expected &+= 1
        }
        return nil
    }

    private mutating func verify(_ c: CommandAPDU, apdu: [UInt8]) -> [UInt8] {
        if c.dataLength == 0 { return [0x63, 0xC0 | UInt8(pinTries)] }
        lastPINCommand = apdu
        if pinTries == 0 { return [0x69, 0x83] }
        if let wrong = checkPIN(c.data) {
            pinTries -= 1
            return [0x6A, UInt8(clamping: wrong)]
        }
        pinTries = ComplianceTestCard.initialPINTries
        return ComplianceTestCard.ok
    }

    private mutating func modify(_ c: CommandAPDU, apdu: [UInt8]) -> [UInt8] {
        lastPINCommand = apdu
        if let wrong = checkPIN(c.data) { return [0x6A, UInt8(clamping: wrong)] }
        return ComplianceTestCard.ok
    }
}
