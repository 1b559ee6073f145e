/// The card's side of T=1, for the simulator: gathers the command chain,
/// hands the APDU over, sends the response chained by IFSD, answers the
/// interface device's S-blocks and retransmission requests, and can ask for
/// more time or a new IFSC itself.
public struct T1Card: Sendable {
    public let edc: EDC
    public let nad: UInt8
    /// What the card accepts (its ATR's IFSC) and what the interface device does (IFSD).
    public let ifsc: Int
    public private(set) var ifsd = T1Host.defaultIFS

    private var receiveSequence: UInt8 = 0
    private var sendSequence: UInt8 = 0
    private var command: [UInt8] = []
    private var pending: ArraySlice<UInt8>? = nil
    private var lastBlock: [UInt8] = []
    private var lastIBlock: [UInt8] = []
    /// We sent an S(request) that has not been answered yet.
    private var awaitingResponse = false

    public enum Step: Equatable, Sendable {
        case send([UInt8])
        /// The whole command APDU arrived: process it, then call `respond`.
        case process([UInt8])
        /// The interface device granted the time asked for (S(WTX response)).
        case timeGranted
        /// The interface device accepted the card's S(IFS request).
        case ifsAccepted
    }

    public init(ifsc: Int, edc: EDC, nad: UInt8 = 0) {
        self.ifsc = ifsc
        self.edc = edc
        self.nad = nad
    }

    /// Cold or warm reset.
    public mutating func reset() {
        self = T1Card(ifsc: ifsc, edc: edc, nad: nad)
    }

    /// The block sent last, for a fault that repeats it.
    public var previousBlock: [UInt8] { lastBlock }

    public mutating func received(_ bytes: [UInt8]) -> Step {
        let block: T1Block
        do throws(T1BlockError) { block = try T1Block(decoding: bytes, edc: edc) } catch {
            return reject(error == .edcMismatch ? .parityOrEDC : .other)
        }
        switch block.kind {
        case .information(let ns, let more):
            guard ns == receiveSequence, block.information.count <= ifsc else {
                // A repeat of a block we acknowledged already: our answer went missing.
                if ns != receiveSequence, !lastBlock.isEmpty { return .send(lastBlock) }
                return reject(.other)
            }
            receiveSequence ^= 1
            pending = nil
            command += block.information
            if more { return send(T1Block(nad: nad, kind: .receiveReady(sequence: receiveSequence, error: .none))) }
            defer { command = [] }
            return .process(command)
        case .receiveReady(let nr, _):
            // N(R) is the N(S) the interface device wants from us next.
            if awaitingResponse { return .send(lastBlock) }
            if let rest = pending, nr == sendSequence, !rest.isEmpty { return sendChunk(rest) }
            if !lastIBlock.isEmpty, nr != sendSequence { return .send(lastIBlock) }
            // It has all we sent: it is our turn to ask for its block again.
            return .send(T1Block(nad: nad, kind: .receiveReady(sequence: receiveSequence, error: .none)).encoded(edc: edc))
        case .supervisory(let type, isResponse: false):
            switch type {
            case .resynch:
                receiveSequence = 0
                sendSequence = 0
                command = []
                pending = nil
                lastIBlock = []
                awaitingResponse = false
                ifsd = T1Host.defaultIFS
                return send(T1Block(nad: nad, kind: .supervisory(.resynch, isResponse: true)))
            case .ifs:
                guard block.information.count == 1, (1...T1Block.maximumInformationLength).contains(Int(block.information[0])) else {
                    return reject(.other)
                }
                ifsd = Int(block.information[0])
                return send(T1Block(nad: nad, kind: .supervisory(.ifs, isResponse: true), information: block.information))
            case .abort:
                command = []
                pending = nil
                return send(T1Block(nad: nad, kind: .supervisory(.abort, isResponse: true)))
            case .wtx:
                return reject(.other)
            }
        case .supervisory(.wtx, isResponse: true) where awaitingResponse:
            awaitingResponse = false
            return .timeGranted
        case .supervisory(.ifs, isResponse: true) where awaitingResponse:
            awaitingResponse = false
            return .ifsAccepted
        case .supervisory:
            return reject(.other)
        }
    }

    /// The response APDU: its first block (the rest follow R-block acknowledgements).
    public mutating func respond(_ response: [UInt8]) -> [UInt8] {
        if case .send(let b) = sendChunk(ArraySlice(response)) { return b }
        return lastBlock
    }

    public mutating func requestTime(multiplier: UInt8) -> [UInt8] {
        awaitingResponse = true
        return T1Card.unwrap(send(T1Block(nad: nad, kind: .supervisory(.wtx, isResponse: false), information: [max(1, multiplier)])))
    }

    public mutating func requestIFS(_ size: UInt8) -> [UInt8] {
        awaitingResponse = true
        return T1Card.unwrap(send(T1Block(nad: nad, kind: .supervisory(.ifs, isResponse: false), information: [size])))
    }

    public mutating func abortChain() -> [UInt8] {
        pending = nil
        return T1Card.unwrap(send(T1Block(nad: nad, kind: .supervisory(.abort, isResponse: false))))
    }

    private static func unwrap(_ step: Step) -> [UInt8] {
        if case .send(let b) = step { return b }
        return []
    }

    private mutating func sendChunk(_ remaining: ArraySlice<UInt8>) -> Step {
        let chunk = remaining.prefix(ifsd)
        let more = remaining.count > chunk.count
        let block = T1Block(nad: nad, kind: .information(sequence: sendSequence, more: more), information: Array(chunk))
        sendSequence ^= 1
        pending = more ? remaining.dropFirst(chunk.count) : nil
        let step = send(block)
        lastIBlock = lastBlock
        return step
    }

    private mutating func send(_ block: T1Block) -> Step {
        lastBlock = block.encoded(edc: edc)
        return .send(lastBlock)
    }

    private mutating func reject(_ error: T1Block.RBlockError) -> Step {
        // Not remembered as the last block: a retransmission request is answered with what we really sent.
        .send(T1Block(nad: nad, kind: .receiveReady(sequence: receiveSequence, error: error)).encoded(edc: edc))
    }
}
