/// The interface device's side of T=1 (ISO/IEC 7816-3 §11) as a state
/// machine: feed it the card's blocks (or the reader's report that none came
/// or it was garbled) and it says what to send next. Chaining both ways,
/// S(IFS)/S(WTX)/S(ABORT) from the card, and error recovery: an R-block for a
/// bad or missing block, retransmission, then resynchronisation, then a
/// clean "card dead" error. No I/O; the driver runs the transport and timers.
public struct T1Host: Sendable {
    public static let defaultIFS = 32
    /// Attempts at one block before resynchronising, and resynchronisations before giving up (§11.6.3).
    public static let maximumRetries = 3
    public static let maximumResynchronisations = 3

    public let edc: EDC
    public let nad: UInt8
    /// IFSD we offer; negotiated with S(IFS request) when it is not the default.
    public let ifsd: Int
    public private(set) var ifsc: Int
    /// The most information one block we send may carry whatever the card's
    /// IFSC: a TPDU reader moves a block in one message of bounded size.
    public var sendLimit = T1Block.maximumInformationLength
    private let initialIFSC: Int
    private var ifsdAgreed: Bool

    /// N(S) of our next new I-block, and the N(S) we expect of the card's next one.
    private var sendSequence: UInt8 = 0
    private var receiveSequence: UInt8 = 0

    /// What the driver does next.
    public enum Action: Equatable, Sendable {
        /// Send this block and wait for the card's next one, for `waitMultiplier` block waiting times.
        case send([UInt8], waitMultiplier: UInt8)
        case complete([UInt8])
        case failed(T1Error)
    }

    /// Why no valid block arrived, as the reader reports it.
    public enum ReceiveFailure: Sendable { case parityError, timeout }

    private enum Phase: Equatable {
        case idle
        /// Negotiating IFSD before the command goes out.
        case negotiatingIFSD
        /// Our chain: `remaining` is still to go; `awaitingAcknowledgement` while the last block had M set.
        case sending(remaining: ArraySlice<UInt8>, awaitingAcknowledgement: Bool)
        /// The card's chain, gathered so far.
        case receiving(response: [UInt8])
        case resynchronising
        /// The card aborted the chain; we answered and end the exchange.
        case aborted
    }

    private var phase: Phase = .idle
    private var command: [UInt8] = []
    private var lastBlock: [UInt8] = []
    private var lastIBlock: [UInt8] = []
    private var errors = 0
    private var resynchronisations = 0

    /// `negotiateIFSD`: false when the reader exchanges IFSD itself (dwFeatures 0x400).
    public init(ifsc: Int, ifsd: Int, edc: EDC, nad: UInt8 = 0, negotiateIFSD: Bool) {
        let c = (1...T1Block.maximumInformationLength).contains(ifsc) ? ifsc : T1Host.defaultIFS
        self.ifsc = c
        initialIFSC = c
        self.ifsd = (1...T1Block.maximumInformationLength).contains(ifsd) ? ifsd : T1Host.defaultIFS
        self.edc = edc
        self.nad = nad
        ifsdAgreed = !negotiateIFSD || self.ifsd == T1Host.defaultIFS
    }

    /// Starts one APDU exchange.
    public mutating func transmit(_ apdu: [UInt8]) -> Action {
        command = apdu
        errors = 0
        resynchronisations = 0
        if !ifsdAgreed {
            phase = .negotiatingIFSD
            return send(T1Block(nad: nad, kind: .supervisory(.ifs, isResponse: false), information: [UInt8(ifsd)]))
        }
        return startCommand()
    }

    private mutating func startCommand() -> Action {
        sendChunk(ArraySlice(command))
    }

    private mutating func sendChunk(_ remaining: ArraySlice<UInt8>) -> Action {
        let chunk = remaining.prefix(max(1, min(ifsc, sendLimit)))
        let more = remaining.count > chunk.count
        let block = T1Block(nad: nad, kind: .information(sequence: sendSequence, more: more), information: Array(chunk))
        sendSequence ^= 1
        phase = .sending(remaining: remaining.dropFirst(chunk.count), awaitingAcknowledgement: more)
        let bytes = block.encoded(edc: edc)
        lastIBlock = bytes
        lastBlock = bytes
        return .send(bytes, waitMultiplier: 1)
    }

    private mutating func send(_ block: T1Block, waitMultiplier: UInt8 = 1) -> Action {
        let bytes = block.encoded(edc: edc)
        lastBlock = bytes
        return .send(bytes, waitMultiplier: waitMultiplier)
    }

    private mutating func resend(_ bytes: [UInt8]) -> Action {
        lastBlock = bytes
        return .send(bytes, waitMultiplier: 1)
    }

    /// The reader reported a parity error, or no block within BWT.
    public mutating func receiveFailed(_ failure: ReceiveFailure) -> Action {
        guard phase != .idle else { return .failed(.protocolViolation("no exchange in progress")) }
        if phase == .aborted { return finish(.failed(.abortedByCard)) }
        return invalidBlock(failure == .parityError ? .parityOrEDC : .other)
    }

    /// A block from the card.
    public mutating func received(_ bytes: [UInt8]) -> Action {
        guard phase != .idle else { return .failed(.protocolViolation("block outside an exchange")) }
        if phase == .aborted { return finish(.failed(.abortedByCard)) }
        let block: T1Block
        do throws(T1BlockError) { block = try T1Block(decoding: bytes, edc: edc) } catch {
            return invalidBlock(error == .edcMismatch ? .parityOrEDC : .other)
        }
        switch block.kind {
        case .supervisory(let type, isResponse: false):
            return cardRequest(type, block.information)
        case .supervisory(let type, isResponse: true):
            return cardResponse(type, block.information)
        case .receiveReady(let nr, _):
            return receiveReady(nr)
        case .information(let ns, let more):
            return information(ns, more: more, data: block.information)
        }
    }

    private mutating func cardRequest(_ type: T1Block.SBlockType, _ info: [UInt8]) -> Action {
        switch type {
        case .wtx:
            guard info.count == 1, info[0] > 0 else { return invalidBlock(.other) }
            errors = 0
            return send(T1Block(nad: nad, kind: .supervisory(.wtx, isResponse: true), information: info), waitMultiplier: info[0])
        case .ifs:
            guard info.count == 1, (1...T1Block.maximumInformationLength).contains(Int(info[0])) else { return invalidBlock(.other) }
            errors = 0
            ifsc = Int(info[0])
            return send(T1Block(nad: nad, kind: .supervisory(.ifs, isResponse: true), information: info))
        case .abort:
            phase = .aborted
            return send(T1Block(nad: nad, kind: .supervisory(.abort, isResponse: true)))
        case .resynch:
            // Only the interface device may ask to resynchronise.
            return invalidBlock(.other)
        }
    }

    private mutating func cardResponse(_ type: T1Block.SBlockType, _ info: [UInt8]) -> Action {
        switch (phase, type) {
        case (.negotiatingIFSD, .ifs) where info == [UInt8(ifsd)]:
            ifsdAgreed = true
            errors = 0
            return startCommand()
        case (.resynchronising, .resynch):
            sendSequence = 0
            receiveSequence = 0
            ifsc = initialIFSC
            errors = 0
            // The exchange starts over, IFSD included (§11.6.3.3).
            ifsdAgreed = ifsd == T1Host.defaultIFS
            if !ifsdAgreed {
                phase = .negotiatingIFSD
                return send(T1Block(nad: nad, kind: .supervisory(.ifs, isResponse: false), information: [UInt8(ifsd)]))
            }
            return startCommand()
        default:
            return invalidBlock(.other)
        }
    }

    private mutating func receiveReady(_ nr: UInt8) -> Action {
        switch phase {
        case .sending(let remaining, awaitingAcknowledgement: true) where nr == sendSequence:
            // The card took our block and asks for the next one.
            errors = 0
            return sendChunk(remaining)
        case .sending:
            // N(R) names the block we sent last: it did not arrive intact.
            return retransmit(nr == sendSequence ? lastBlock : lastIBlock)
        default:
            return retransmit(lastBlock)
        }
    }

    private mutating func information(_ ns: UInt8, more: Bool, data: [UInt8]) -> Action {
        var response: [UInt8]
        switch phase {
        case .sending(_, awaitingAcknowledgement: false): response = []
        case .receiving(let sofar): response = sofar
        default: return invalidBlock(.other)
        }
        guard ns == receiveSequence else { return invalidBlock(.other) }
        errors = 0
        receiveSequence ^= 1
        response += data
        guard response.count <= 65538 else { return finish(.failed(.protocolViolation("response chain exceeds 65538 bytes"))) }
        if more {
            phase = .receiving(response: response)
            return send(T1Block(nad: nad, kind: .receiveReady(sequence: receiveSequence, error: .none)))
        }
        return finish(.complete(response))
    }

    private mutating func retransmit(_ bytes: [UInt8]) -> Action {
        errors += 1
        if errors > Self.maximumRetries { return resynchronise() }
        return resend(bytes)
    }

    /// An invalid or missing block: ask for it again, then resynchronise.
    private mutating func invalidBlock(_ error: T1Block.RBlockError) -> Action {
        errors += 1
        if errors > Self.maximumRetries { return resynchronise() }
        if phase == .resynchronising || phase == .negotiatingIFSD { return resend(lastBlock) }
        return send(T1Block(nad: nad, kind: .receiveReady(sequence: receiveSequence, error: error)))
    }

    private mutating func resynchronise() -> Action {
        resynchronisations += 1
        errors = 0
        guard resynchronisations <= Self.maximumResynchronisations else {
            return finish(.failed(.cardDead))
        }
        phase = .resynchronising
        return send(T1Block(nad: nad, kind: .supervisory(.resynch, isResponse: false)))
    }

    private mutating func finish(_ action: Action) -> Action {
        phase = .idle
        command = []
        return action
    }
}

public enum T1Error: Error, Equatable, Sendable, CustomStringConvertible {
    /// Retransmissions and resynchronisations all failed (§11.6.3).
    case cardDead
    case abortedByCard
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .cardDead: "T=1: card does not answer correctly after retransmissions and resynchronisation"
        case .abortedByCard: "T=1: card aborted the exchange (S(ABORT))"
        case .protocolViolation(let why): "T=1: \(why)"
        }
    }
}
