import CCID
import ISO7816

/// One slot of a simulated reader: its card, the state the reader keeps for
/// it, and the state of the exchange in progress at each level.
struct SlotModel: Sendable {
    var card: SimulatedCard?
    var powered = false
    var protocolType: UInt8 = 0
    /// What SetParameters last set (nil: the defaults).
    var parameters: ProtocolData? = nil
    /// The rate the reader was told to use (SetParameters); unlike the card's, nothing is heard.
    var readerFiDi: UInt8 = 0x11
    var faults = Faults()
    var counters = FaultCounters()
    var apdu = APDUExchange()
    var session = CardSession()
    var character = CharacterExchange()
    /// For the `poweroff-first` bug: a power-off came since the last power-up.
    var poweredOffSincePowerUp = false
    /// The card is mute until the next power-up: the host sent S(IFS request)
    /// (`ifs-stall`), or a SetParameters it could not follow (`setparams-ta1-only`).
    var cardLost = false

    init(card: SimulatedCard? = nil) { self.card = card }

    var icc: ICCStatus { card == nil ? .absent : (powered ? .presentActive : .presentInactive) }

    /// The card's ATR parsed, if it parses.
    var atr: ATR? { card.flatMap { try? ATR($0.atr) } }

    /// After an ATR: the card is in its default protocol, at the default rate, PPS allowed.
    mutating func poweredOn() {
        let parsed = atr
        powered = true
        poweredOffSincePowerUp = false
        cardLost = false
        protocolType = parsed?.defaultProtocol ?? 0
        parameters = nil
        apdu = APDUExchange()
        character = CharacterExchange()
        session = CardSession(protocolType: protocolType, atr: parsed)
    }

    mutating func poweredOff() {
        powered = false
        poweredOffSincePowerUp = true
        apdu = APDUExchange()
    }

    /// CCID §5.3.1: an aborted transfer's bytes are gone, both ways.
    mutating func discardTransfer() {
        apdu = APDUExchange()
        character = CharacterExchange()
    }
}

/// The "every N" counters of the slot's faults.
struct FaultCounters: Sendable {
    var block = FaultCounter(), parity = FaultCounter(), edc = FaultCounter()
    var lost = FaultCounter(), repeated = FaultCounter(), sequence = FaultCounter()
    var lie = FaultCounter(), hardwareError = FaultCounter()
}

/// Short and extended APDU level: a command APDU arriving in pieces, a
/// response leaving in pieces.
struct APDUExchange: Sendable {
    var commandChain: [UInt8]? = nil
    var pendingResponse: [UInt8] = []
}

/// The card's side at TPDU and character level: its T=1 engine, the response
/// it owes and how long it stays busy, and the rate PPS agreed.
struct CardSession: Sendable {
    var t1: T1Card? = nil
    var t1Response: [UInt8] = []
    var t1Busy: Duration = .zero
    var t1AsksForTime = true
    var t1WTXLeft = 0
    /// Fi/Di agreed by PPS; PPS is possible only right after the ATR.
    var fiDi: UInt8 = 0x11
    var ppsAllowed = false

    init() {}

    init(protocolType: UInt8, atr: ATR?) {
        ppsAllowed = true
        t1 = protocolType == 1 ? T1Card(ifsc: atr?.t1IFSC ?? 32, edc: atr?.t1EDC ?? .lrc) : nil
    }
}

/// Character level: bytes the card has sent and the reader not yet returned,
/// how long the card is busy first, and partial input.
struct CharacterExchange: Sendable {
    var output: [UInt8] = []
    var busy: Duration = .zero
    var t0 = T0CharacterCard()
    var t1Input: [UInt8] = []
    var ppsInput: [UInt8] = []
}

/// The fields every reply to one command shares, and the replies a reader
/// makes of them.
struct ReplyContext {
    let slot: UInt8
    let sequence: UInt8
    let icc: ICCStatus
    var timing = ReaderTiming.realistic

    func reply(_ body: Reply.Body, after delay: Duration = .zero) -> TimedReply {
        TimedReply(delay: delay, reply: Reply(slot: slot, sequence: sequence, status: SlotStatus(icc: icc), body: body))
    }

    func dataBlock(_ data: [UInt8], chain: UInt8 = 0, after delay: Duration = .zero) -> TimedReply {
        reply(.dataBlock(chainParameter: chain, data: data), after: delay)
    }

    func failed(_ error: SlotError, type: Reply.MessageType = .dataBlock, after delay: Duration = .zero) -> TimedReply {
        let body: Reply.Body = switch type {
        case .dataBlock: .dataBlock(chainParameter: 0, data: [])
        case .slotStatus: .slotStatus(clockStatus: 0)
        case .parameters: .parameters(protocolNumber: 0, data: [])
        case .escape: .escape(data: [])
        case .dataRateAndClockFrequency: .dataRateAndClockFrequency(clockFrequency: 0, dataRate: 0)
        }
        return TimedReply(delay: delay, reply: Reply(slot: slot, sequence: sequence, status: SlotStatus(icc: icc, command: .failed),
                                                     error: error.rawValue, body: body))
    }

    /// The card is busy: the reader asks the host for more time.
    func timeExtension(after delay: Duration) -> TimedReply {
        TimedReply(delay: delay, reply: Reply(slot: slot, sequence: sequence, status: SlotStatus(icc: icc, command: .timeExtension),
                                              error: 1, body: .dataBlock(chainParameter: 0, data: [])))
    }

    func mute() -> TimedReply { failed(.iccMute, after: timing.muteDelay) }
}

/// How long the simulated reader takes for what a real one spends waiting
/// on the card: injected, so that in-process tests of faults need not wait
/// as long as a reader on a wire shows it.
public struct ReaderTiming: Sendable, Equatable {
    /// A real reader reports a lost block (ICC_MUTE) after the card's block
    /// waiting time; the simulated one after this.
    public var muteDelay: Duration
    /// The gap between the time extensions of the `te` fault.
    public var faultTimeExtensionGap: Duration

    public init(muteDelay: Duration, faultTimeExtensionGap: Duration) {
        self.muteDelay = muteDelay
        self.faultTimeExtensionGap = faultTimeExtensionGap
    }

    /// On the relay and USB buses: short enough for fault tests, long enough to be seen.
    public static let realistic = ReaderTiming(muteDelay: .milliseconds(100), faultTimeExtensionGap: .milliseconds(5))
    /// For in-process tests: the same replies in the same order, without the waits.
    public static let quick = ReaderTiming(muteDelay: .milliseconds(2), faultTimeExtensionGap: .zero)
}
