import CCID
import ISO7816
import ThreadSupport

/// Where a simulated ICCD token stands between class requests.
struct ICCDDeviceState: Sendable {
    /// Version A: the T=0 command in progress, as the status byte tells it.
    enum Command: Sendable, Equatable {
        case idle
        /// The header asked for P3 bytes of data; these came so far.
        case dataExpected(header: [UInt8], received: [UInt8])
        /// The card's data, then its status word.
        case dataToSend([UInt8], statusWord: [UInt8])
        case statusToSend([UInt8])
        /// The card said nothing.
        case mute
    }
    var command = Command.idle
    /// Until when the card works on the last command (A: busy; B: poll again).
    var readyAt: Deadline? = nil
    /// Version B: what the next DATA_BLOCK answers, the command chain being
    /// built, and the rest of a response that goes out in pieces.
    var answer: ICCDBAnswer? = nil
    var commandChain: [UInt8]? = nil
    var pendingResponse: [UInt8] = []
}

/// The token side of USB ICCD (`ICCD.swift` has the wire): class requests
/// on the control pipe, no bulk pipes. The token holds one chip, slot 0 of
/// the model; its card works as in any reader (a busy card makes version A
/// report busy and version B ask the host to poll later).
extension ReaderModel {
    public var iccdVersion: ICCDVersion? { profile.usbLayout.iccd }

    /// Version B asks a host to come back after at most this long, however long the card works.
    static let iccdLongestPoll: Duration = .milliseconds(100)

    /// An ICCD class request; nil stalls (a request out of turn, or no card to power).
    mutating func iccdControl(_ request: ControlRequest, now: Deadline) -> [UInt8]? {
        guard let version = iccdVersion, let kind = request.iccdRequest, !slots.isEmpty else { return nil }
        let toDevice = request.requestType & 0x80 == 0
        switch (kind, toDevice) {
        case (.iccPowerOff, true):
            if slots[0].powered { slots[0].card?.powerDown() }
            slots[0].poweredOff()
            iccd = ICCDDeviceState()
            return []
        case (.iccPowerOn, false) where version == .a:
            iccd = ICCDDeviceState()
            guard let atr = slots[0].card?.powerUp() else { return nil }
            slots[0].poweredOn()
            return Array(atr.prefix(Int(request.length)))
        case (.iccPowerOn, true) where version == .b:
            iccd = ICCDDeviceState()
            guard let atr = slots[0].card?.powerUp() else {
                iccd.answer = .status(SlotStatus(icc: .absent, command: .failed), error: SlotError.iccMute.rawValue)
                return []
            }
            slots[0].poweredOn()
            iccd.answer = .data(chain: 0, atr)
            return []
        case (.getICCStatus, false) where version == .a:
            return [iccdAStatus(now: now).byte]
        case (.slotStatus, false) where version == .b:
            return Array(ICCDBAnswer.status(SlotStatus(icc: slots[0].icc), error: 0).encoded().prefix(Int(request.length)))
        case (.xfrBlock, true):
            return version == .a ? iccdAXfr(request.data, now: now) : iccdBXfr(request, now: now)
        case (.dataBlock, false):
            return version == .a ? iccdADataBlock(length: Int(request.length), now: now)
                                 : iccdBDataBlock(length: Int(request.length), now: now)
        default:
            return nil
        }
    }

    // MARK: Version A: T=0, a status byte to poll

    private func iccdAStatus(now: Deadline) -> ICCDAStatus {
        guard slots[0].card != nil else { return .mute }
        if let ready = iccd.readyAt, now < ready { return .busy }
        switch iccd.command {
        case .idle: return .idle
        case .dataExpected, .dataToSend: return .dataReady
        case .statusToSend: return .statusReady
        case .mute: return .mute
        }
    }

    private mutating func iccdAXfr(_ data: [UInt8], now: Deadline) -> [UInt8]? {
        guard let card = slots[0].card, slots[0].powered, iccdAStatus(now: now) != .busy else { return nil }
        switch iccd.command {
        case .idle:
            guard data.count == 5 else { return nil }
            if card.commandCarriesData(data), data[4] > 0 {
                iccd.command = .dataExpected(header: data, received: [])
                return []
            }
            // The card answers the header alone: data (then SW1 SW2), or SW1 SW2 straight away.
            let answer = card.process(data, protocolType: 0)
            iccdAAnswered(answer, now: now) { response in
                let body = Array(response.dropLast(2)), sw = Array(response.suffix(2))
                return body.isEmpty ? .statusToSend(sw) : .dataToSend(body, statusWord: sw)
            }
            return []
        case .dataExpected(let header, let received):
            let all = received + data
            guard all.count >= Int(header[4]) else {
                iccd.command = .dataExpected(header: header, received: all)
                return []
            }
            // Under T=0 a command that brought data gets only a status word back (61xx announces a response).
            let answer = card.process(header + all.prefix(Int(header[4])), protocolType: 0)
            iccdAAnswered(answer, now: now) { .statusToSend(Array($0.suffix(2))) }
            return []
        case .dataToSend, .statusToSend, .mute:
            return nil
        }
    }

    private mutating func iccdAAnswered(_ answer: CardAnswer, now: Deadline,
                                        next: ([UInt8]) -> ICCDDeviceState.Command) {
        guard !answer.silent, answer.response.count >= 2 else {
            iccd.command = .mute
            return
        }
        iccd.command = next(answer.response)
        iccd.readyAt = answer.busy > .zero ? now.advanced(by: answer.busy) : nil
    }

    private mutating func iccdADataBlock(length: Int, now: Deadline) -> [UInt8]? {
        guard iccdAStatus(now: now) != .busy else { return nil }
        switch iccd.command {
        case .dataToSend(let data, let sw):
            iccd.command = .statusToSend(sw)
            return Array(data.prefix(length))
        case .statusToSend(let sw):
            iccd.command = .idle
            return Array(sw.prefix(length))
        default:
            return nil
        }
    }

    // MARK: Version B: APDUs, chained as CCID's extended level

    private mutating func iccdBXfr(_ request: ControlRequest, now: Deadline) -> [UInt8]? {
        guard let level = request.iccdLevel else { return nil }
        guard let card = slots[0].card, slots[0].powered else {
            iccd.answer = .status(SlotStatus(icc: slots[0].icc, command: .failed), error: SlotError.iccMute.rawValue)
            return []
        }
        let refused = ICCDBAnswer.status(SlotStatus(icc: .presentActive, command: .failed),
                                         error: Self.badLevelParameter.rawValue)
        let data = request.data
        switch level {
        case .beginsAndEnds:
            iccd.commandChain = nil
            iccdBRun(card: card, apdu: data, now: now)
        case .begins:
            iccd.commandChain = data
            iccd.answer = .data(chain: LevelParameter.emptyContinuation.rawValue8, [])
        case .continues, .ends:
            guard let chain = iccd.commandChain, chain.count + data.count <= Self.longestChainedAPDU else {
                iccd.commandChain = nil
                iccd.answer = refused
                return []
            }
            if level == .continues {
                iccd.commandChain = chain + data
                iccd.answer = .data(chain: LevelParameter.emptyContinuation.rawValue8, [])
            } else {
                iccd.commandChain = nil
                iccdBRun(card: card, apdu: chain + data, now: now)
            }
        case .emptyContinuation:
            guard !iccd.pendingResponse.isEmpty else {
                iccd.answer = refused
                return []
            }
            let next = Array(iccd.pendingResponse.prefix(iccdBPiece))
            iccd.pendingResponse.removeFirst(next.count)
            iccd.answer = .data(chain: iccd.pendingResponse.isEmpty ? 0x02 : 0x03, next)
        }
        return []
    }

    /// A response piece: what one message of the token's own size carries.
    private var iccdBPiece: Int { max(1, min(descriptor.maxMessageDataLength, ControlRequest.iccdTransferLimit - 1)) }

    private mutating func iccdBRun(card: SimulatedCard, apdu: [UInt8], now: Deadline) {
        let answer = Self.carry(apdu, to: card, protocolType: slots[0].protocolType)
        guard !answer.silent else {
            iccd.answer = .status(SlotStatus(icc: .presentActive, command: .failed), error: SlotError.iccMute.rawValue)
            return
        }
        iccd.readyAt = answer.busy > .zero ? now.advanced(by: answer.busy) : nil
        var response = answer.response
        var chain: UInt8 = 0
        if response.count > iccdBPiece {
            iccd.pendingResponse = Array(response[iccdBPiece...])
            response = Array(response[..<iccdBPiece])
            chain = LevelParameter.begins.rawValue8
        }
        iccd.answer = .data(chain: chain, response)
    }

    private mutating func iccdBDataBlock(length: Int, now: Deadline) -> [UInt8]? {
        if let ready = iccd.readyAt, now < ready {
            let wait = min(ready.nanoseconds &- now.nanoseconds, Self.iccdLongestPoll.nanosecondsClamped)
            return ICCDBAnswer.poll(tens: UInt16(clamping: (wait + 9_999_999) / 10_000_000)).encoded()
        }
        iccd.readyAt = nil
        guard let answer = iccd.answer else {
            return ICCDBAnswer.status(SlotStatus(icc: slots[0].icc, command: .failed),
                                      error: SlotError.commandNotSupported.rawValue).encoded()
        }
        iccd.answer = nil
        return Array(answer.encoded().prefix(length))
    }
}

extension LevelParameter {
    /// CCID's bChainParameter is a byte; the level parameter's values fit it.
    var rawValue8: UInt8 { UInt8(truncatingIfNeeded: rawValue) }
}
