import CCID
import ISO7816
import ThreadSupport

extension Reader {
    /// Sends a command APDU and returns the response APDU, at the reader's exchange level.
    public func transmit(slot: Int, apdu: [UInt8]) throws(DriverError) -> [UInt8] {
        try serialised(slot: slot) { s throws(DriverError) in try transmitLocked(slot: s, apdu: apdu) }
    }

    private func transmitLocked(slot s: UInt8, apdu: [UInt8]) throws(DriverError) -> [UInt8] {
        let slot = Int(s)
        guard let state = state(of: slot), state.powered else { throw .noCard }
        // Quirk O2: the vendor's reader-information APDUs are answered here, not by the card.
        if let answer = quirks.readerInformation?.answer(to: apdu, bcdDevice: identity.bcdDevice) { return answer }
        let shape: CommandAPDU
        do throws(APDUError) { shape = try CommandAPDU(apdu) } catch { throw .invalidAPDU(error.description) }
        var waitingTime = ExchangeTimeouts.cardWaitingTime(atr: state.parsedATR, protocolType: state.protocolType,
                                                           clockKHz: descriptor.defaultClock)
        var maximum = timeouts.maximum
        if state.protocolType == 1, quirks.longerT1WaitingTime > .zero {
            // Quirk T4: a card that works for minutes with no time extension; this device's cap makes room for it.
            waitingTime += quirks.longerT1WaitingTime
            maximum = max(maximum, waitingTime + timeouts.transportMargin)
        }
        // One cap for the whole APDU at every level, however many pieces,
        // blocks, time extensions and retries it takes.
        let cap = Deadline.after(maximum)
        switch descriptor.exchangeLevel {
        case .shortAPDU:
            guard !shape.isExtended else {
                throw .notSupported("reader exchanges short APDUs only; this APDU is extended (Nc \(shape.dataLength), Ne \(shape.expectedLength))")
            }
            guard apdu.count <= descriptor.maxMessageDataLength else {
                throw .notSupported("APDU of \(apdu.count) bytes exceeds the reader's message size \(descriptor.maxCCIDMessageLength)")
            }
            return try xfrBlock(slot: s, data: apdu, level: .beginsAndEnds, waitingTime: waitingTime, cap: cap)
        case .extendedAPDU:
            return try chainedExchange(slot: s, apdu: apdu, waitingTime: waitingTime, cap: cap)
        case .tpdu, .character:
            let protocolType = state.protocolType ?? state.parsedATR?.defaultProtocol ?? 0
            if protocolType == 1 { return try t1Exchange(slot: s, apdu: apdu, state: state, cap: cap) }
            return try t0Exchange(slot: s, shape: shape, waitingTime: waitingTime, cap: cap)
        case .unknown:
            throw .notSupported("reader declares no known exchange level (dwFeatures 0x\(String(descriptor.features.rawValue, radix: 16)))")
        }
    }

    /// T=1 at TPDU level: the reader moves blocks, the driver runs the protocol.
    func t1Exchange(slot: UInt8, apdu: [UInt8], state: SlotState, cap: Deadline) throws(DriverError) -> [UInt8] {
        let bwt = ExchangeTimeouts.cardWaitingTime(atr: state.parsedATR, protocolType: 1, clockKHz: descriptor.defaultClock)
            + quirks.longerT1WaitingTime
        var engine = state.t1 ?? t1Engine(atr: state.parsedATR)
        defer { update(Int(slot)) { $0.t1 = engine } }
        return try runT1(engine.transmit(apdu), engine: &engine, slot: slot, bwt: bwt, cap: cap)
    }

    /// Carries the T=1 exchange on from `action` until the engine has the response.
    /// `neverResend`: a block the driver cannot send again (the PIN pad's, which holds the PIN).
    func runT1(_ action: T1Host.Action, engine: inout T1Host, slot: UInt8, bwt: Duration, cap: Deadline,
               neverResend: [UInt8]? = nil) throws(DriverError) -> [UInt8] {
        var action = action
        while true {
            switch action {
            case .complete(let response):
                return response
            case .failed(let error):
                throw .cardProtocol(error.description)
            case .send(let block, let multiplier):
                if block == neverResend { throw .cardProtocol("the card asks for the PIN block again; only the PIN pad has it") }
                action = try t1Round(slot: slot, block: block, multiplier: multiplier, engine: &engine, bwt: bwt, cap: cap)
            }
        }
    }

    enum T1Transfer { case block([UInt8]), parityError, mute }

    /// One block out, and the card's answer (or the reader's word that none came, or garbled) into `engine`.
    func t1Round(slot: UInt8, block: [UInt8], multiplier: UInt8, engine: inout T1Host, bwt: Duration,
                 cap: Deadline) throws(DriverError) -> T1Host.Action {
        switch try t1Transfer(slot: slot, block: block, multiplier: multiplier, bwt: bwt, edc: engine.edc, cap: cap) {
        case .block(let data): return engine.received(data)
        case .parityError: return engine.receiveFailed(.parityError)
        case .mute: return engine.receiveFailed(.timeout)
        }
    }

    /// One T=1 block out and the card's next block in. At TPDU level the reader
    /// frames blocks; at character level the driver reads the prologue, then LEN + EDC bytes.
    /// bBWI: the block waiting time of this transfer is that many BWTs (a granted WTX).
    func t1Transfer(slot: UInt8, block: [UInt8], multiplier: UInt8, bwt: Duration, edc: EDC, cap: Deadline) throws(DriverError) -> T1Transfer {
        let bwi = multiplier > 1 ? multiplier : 0
        let wait = bwt * Int(max(multiplier, 1))
        let character = descriptor.exchangeLevel == .character
        func xfr(_ data: [UInt8], expect: Int) throws(DriverError) -> T1Transfer {
            let reply = character
                ? try characterXfr(slot: slot, data: data, expect: expect, bwi: bwi, waitingTime: wait, cap: cap)
                : try exchange(.xfrBlock(bwi: bwi, levelParameter: 0, data: data), slot: slot, waitingTime: wait, cap: cap)
            if reply.status.command == .failed {
                if reply.status.icc == .absent { throw .noCard }
                switch reply.slotError {
                case .transferParityError: return .parityError
                case .iccMute: return .mute
                default: throw .commandFailed(reply.slotError)
                }
            }
            guard case .dataBlock(_, let bytes) = reply.body else { throw .protocolViolation("XfrBlock answered with \(reply.messageType)") }
            return .block(bytes)
        }
        guard character else { return try xfr(block, expect: 0) }
        let first = try xfr(block, expect: 3)
        guard case .block(let prologue) = first else { return first }
        guard prologue.count == 3, prologue[2] <= UInt8(T1Block.maximumInformationLength) else { return .block(prologue) }
        switch try xfr([], expect: Int(prologue[2]) + edc.length) {
        case .block(let rest): return .block(prologue + rest)
        case let other: return other
        }
    }

    /// One T=0 TPDU: framed by the reader at TPDU level; at character level
    /// the driver reads the procedure bytes itself.
    func t0TPDU(slot: UInt8, _ bytes: [UInt8], waitingTime: Duration, cap: Deadline) throws(DriverError) -> [UInt8] {
        guard descriptor.exchangeLevel == .character else {
            let reply = try exchange(.xfrBlock(bwi: 0, levelParameter: 0, data: bytes), slot: slot,
                                     waitingTime: waitingTime, cap: cap)
            try check(reply)
            guard case .dataBlock(_, let data) = reply.body, data.count >= 2 else {
                throw .protocolViolation("T=0 answer without a status word")
            }
            return data
        }
        guard var engine = T0CharacterExchange(tpdu: bytes) else { throw .invalidAPDU("not a T=0 TPDU") }
        var action = engine.start()
        while true {
            switch action {
            case .complete(let answer): return answer
            case .failed(let why): throw .cardProtocol(why)
            case .transfer(let out, let expect):
                let reply = try characterXfr(slot: slot, data: out, expect: expect, bwi: 0, waitingTime: waitingTime, cap: cap,
                                             avoidWholePackets: true)
                try check(reply)
                guard case .dataBlock(_, let data) = reply.body else { throw .protocolViolation("XfrBlock answered with \(reply.messageType)") }
                action = engine.received(data)
            }
        }
    }

    /// Character-level readers have been seen to mishandle a bulk transfer of
    /// a whole number of 64-byte packets (the reference driver found it on
    /// the O2 Micro Oz776): under T=0 no XfrBlock is sent that long.
    static let wholePacketMultiple = 64

    /// At character level the reader only moves characters: data longer than
    /// one message (dwMaxCCIDMessageLength) goes in several XfrBlocks, and only
    /// the last one waits for `expect` characters from the card.
    /// `avoidWholePackets`: a message that would be a multiple of 64 bytes goes
    /// as two (the characters still reach the card in order).
    func characterXfr(slot: UInt8, data: [UInt8], expect: Int, bwi: UInt8, waitingTime: Duration,
                      cap: Deadline, avoidWholePackets: Bool = false) throws(DriverError) -> Reply {
        let room = max(1, Int(descriptor.maxCCIDMessageLength) - ccidHeaderLength)
        var rest = data[...]
        while true {
            var piece = min(rest.count, room)
            if avoidWholePackets, piece > 1, (piece + ccidHeaderLength) % Self.wholePacketMultiple == 0 { piece -= 1 }
            let last = piece == rest.count
            let reply = try exchange(.xfrBlock(bwi: bwi, levelParameter: last ? UInt16(clamping: expect) : 0,
                                               data: Array(rest.prefix(piece))), slot: slot, waitingTime: waitingTime, cap: cap)
            if last || reply.status.command == .failed { return reply }
            rest = rest.dropFirst(piece)
        }
    }

    /// T=0 at TPDU level: a short APDU is one TPDU (61xx and 6Cxx go back to
    /// the application); an extended one goes in ENVELOPE and comes back by GET RESPONSE.
    func t0Exchange(slot: UInt8, shape: CommandAPDU, waitingTime: Duration, cap: Deadline) throws(DriverError) -> [UInt8] {
        func tpdu(_ bytes: [UInt8]) throws(DriverError) -> [UInt8] {
            try t0TPDU(slot: slot, bytes, waitingTime: waitingTime, cap: cap)
        }
        guard shape.isExtended else { return try tpdu(T0Transport.tpdu(for: shape)) }
        var envelope = T0EnvelopeExchange(apdu: shape.bytes, classByte: shape.header.cla)
        var action = envelope.start()
        while true {
            switch action {
            case .send(let bytes): action = envelope.received(try tpdu(bytes))
            case .complete(let response): return response
            }
        }
    }

    /// Extended APDU exchange (CCID 1.1 §6.1.4): the command goes in pieces of at
    /// most dwMaxCCIDMessageLength - 10 bytes with wLevelParameter saying where
    /// each piece stands; the response comes back the same way.
    func chainedExchange(slot: UInt8, apdu: [UInt8], waitingTime: Duration, cap: Deadline) throws(DriverError) -> [UInt8] {
        let piece = descriptor.maxMessageDataLength
        guard piece > 0 else { throw .protocolViolation("dwMaxCCIDMessageLength \(descriptor.maxCCIDMessageLength) leaves no room for data") }
        var offset = 0
        var response: [UInt8] = []
        var chain: UInt8 = 0
        repeat {
            let end = min(apdu.count, offset + piece)
            let level: LevelParameter = switch (offset == 0, end == apdu.count) {
            case (true, true): .beginsAndEnds
            case (true, false): .begins
            case (false, true): .ends
            case (false, false): .continues
            }
            (response, chain) = try xfrBlockRaw(slot: slot, data: Array(apdu[offset..<end]), level: level,
                                                waitingTime: waitingTime, cap: cap)
            offset = end
            if level == .begins || level == .continues {
                guard chain == UInt8(LevelParameter.emptyContinuation.rawValue), response.isEmpty else {
                    throw .protocolViolation("reader answered a command piece with chain 0x\(hexString([chain])) and \(response.count) bytes")
                }
            }
        } while offset < apdu.count
        // The response: 0x00 complete, 0x01 begins, 0x03 continues, 0x02 ends.
        guard chain == 0x00 || chain == 0x01 else {
            throw .protocolViolation("response chaining starts with 0x\(hexString([chain]))")
        }
        let limit = 65538
        while chain == 0x01 || chain == 0x03 {
            let (more, next) = try xfrBlockRaw(slot: slot, data: [], level: .emptyContinuation, waitingTime: waitingTime,
                                               cap: cap)
            response += more
            guard response.count <= limit else { throw .protocolViolation("chained response exceeds \(limit) bytes") }
            guard next == 0x02 || next == 0x03 else {
                throw .protocolViolation("response chaining continues with 0x\(hexString([next]))")
            }
            chain = next
        }
        return response
    }

    func xfrBlock(slot: UInt8, data: [UInt8], level: LevelParameter, waitingTime: Duration,
                  cap: Deadline) throws(DriverError) -> [UInt8] {
        let (response, chain) = try xfrBlockRaw(slot: slot, data: data, level: level, waitingTime: waitingTime, cap: cap)
        guard chain == 0 else { throw .protocolViolation("unexpected response chaining 0x\(hexString([chain]))") }
        return response
    }

    func xfrBlockRaw(slot: UInt8, data: [UInt8], level: LevelParameter, waitingTime: Duration,
                     cap: Deadline) throws(DriverError) -> ([UInt8], UInt8) {
        let reply = try exchange(.xfrBlock(bwi: 0, levelParameter: level.rawValue, data: data), slot: slot,
                                 waitingTime: waitingTime, cap: cap)
        try check(reply)
        guard case .dataBlock(let chain, let response) = reply.body else {
            throw .protocolViolation("XfrBlock answered with \(reply.messageType)")
        }
        return (response, chain)
    }

    /// How long the host waits for a PIN entry: the pad's own timeout (bTimeOut, 0 for its
    /// default) plus 10 s, and at least 90 s, as the reference driver waits. One deadline
    /// for the whole entry, its own cap: a person is typing, not a card working.
    static func pinEntryWaitingTime(timeout: UInt8) -> Duration { .seconds(max(90, Int(timeout) + 10)) }

    /// SW1 SW2 for a PIN entry the user cancelled (64 01) or let time out (64 00).
    static let pinEntryStatus: [SlotError: [UInt8]] = [.pinCancelled: [0x64, 0x01], .pinTimeout: [0x64, 0x00]]

    /// PC_to_RDR_Secure: PIN entry on the reader's keypad.
    public func secure(slot: Int, entry: PINEntry) throws(DriverError) -> [UInt8] {
        try serialised(slot: slot) { s throws(DriverError) in try secureLocked(slot: s, entry: entry) }
    }

    private func secureLocked(slot s: UInt8, entry: PINEntry) throws(DriverError) -> [UInt8] {
        let slot = Int(s)
        guard let state = state(of: slot), state.powered else { throw .noCard }
        // The user types: the pad ends the entry at bTimeOut; the host's deadline lies beyond it (G12).
        let waitingTime = Self.pinEntryWaitingTime(timeout: entry.timeout)
        let cap = Deadline.after(waitingTime + timeouts.transportMargin)
        // The structure as this reader's firmware takes it (quirks P1–P13, and the validation sanity check).
        let frame = quirks.pinFrame(for: entry)
        if entry.operation == .verify, frame.entry.apdu.count == 4, frame.entry.pinBlockString == 0,
           let escape = quirks.escapeBeforeUnpaddedPIN {
            // Quirk P14: the firmware appends an unpadded PIN to a bare header only when told so first.
            try check(try exchange(.escape(data: escape), slot: s, waitingTime: controlWaitingTime))
        }
        if entry.operation == .verify, quirks.delayBeforeVerify > .zero {
            Deadline.after(quirks.delayBeforeVerify).sleepUntil()   // quirk P12: the user's Enter key must be up
        }
        if descriptor.exchangeLevel == .tpdu, state.protocolType == 1 {
            return try secureT1(slot: s, state: state, frame: frame, waitingTime: waitingTime, cap: cap)
        }
        let reply = try exchange(.secure(bwi: 0, levelParameter: 0, data: frame.ccidEncoded()), slot: s,
                                 waitingTime: waitingTime, cap: cap)
        // The user's cancel and timeout are answers, as PC/SC Part 10 and the reference driver give them: a status word.
        if reply.status.command == .failed, let sw = Self.pinEntryStatus[reply.slotError] { return sw }
        try check(reply)
        guard case .dataBlock(_, let response) = reply.body else {
            throw .protocolViolation("Secure answered with \(reply.messageType)")
        }
        return response
    }
}
