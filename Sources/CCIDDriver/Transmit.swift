import CCID
import ISO7816

extension Reader {
    /// Sends a command APDU and returns the response APDU, at the reader's exchange level.
    public func transmit(slot: Int, apdu: [UInt8]) throws(DriverError) -> [UInt8] {
        let s = try checkSlot(slot)
        guard let state = state(of: slot), state.powered else { throw .noCard }
        let shape: CommandAPDU
        do throws(APDUError) { shape = try CommandAPDU(apdu) } catch { throw .invalidAPDU(error.description) }
        let waitingTime = ExchangeTimeouts.cardWaitingTime(atr: state.parsedATR, protocolType: state.protocolType,
                                                           clockKHz: descriptor.defaultClock)
        switch descriptor.exchangeLevel {
        case .shortAPDU:
            guard !shape.isExtended else {
                throw .notSupported("reader exchanges short APDUs only; this APDU is extended (Nc \(shape.dataLength), Ne \(shape.expectedLength))")
            }
            guard apdu.count <= descriptor.maxMessageDataLength else {
                throw .notSupported("APDU of \(apdu.count) bytes exceeds the reader's message size \(descriptor.maxCCIDMessageLength)")
            }
            return try xfrBlock(slot: s, data: apdu, level: .beginsAndEnds, waitingTime: waitingTime)
        case .extendedAPDU:
            return try chainedExchange(slot: s, apdu: apdu, waitingTime: waitingTime)
        case .tpdu, .character, .unknown:
            throw .notSupported("\(descriptor.exchangeLevel) exchange level is not carried yet")
        }
    }

    /// Extended APDU exchange (CCID 1.1 §6.1.4): the command goes in pieces of at
    /// most dwMaxCCIDMessageLength - 10 bytes with wLevelParameter saying where
    /// each piece stands; the response comes back the same way.
    func chainedExchange(slot: UInt8, apdu: [UInt8], waitingTime: Duration) throws(DriverError) -> [UInt8] {
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
            (response, chain) = try xfrBlockRaw(slot: slot, data: Array(apdu[offset..<end]), level: level, waitingTime: waitingTime)
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
            let (more, next) = try xfrBlockRaw(slot: slot, data: [], level: .emptyContinuation, waitingTime: waitingTime)
            response += more
            guard response.count <= limit else { throw .protocolViolation("chained response exceeds \(limit) bytes") }
            guard next == 0x02 || next == 0x03 else {
                throw .protocolViolation("response chaining continues with 0x\(hexString([next]))")
            }
            chain = next
        }
        return response
    }

    func xfrBlock(slot: UInt8, data: [UInt8], level: LevelParameter, waitingTime: Duration) throws(DriverError) -> [UInt8] {
        let (response, chain) = try xfrBlockRaw(slot: slot, data: data, level: level, waitingTime: waitingTime)
        guard chain == 0 else { throw .protocolViolation("unexpected response chaining 0x\(hexString([chain]))") }
        return response
    }

    func xfrBlockRaw(slot: UInt8, data: [UInt8], level: LevelParameter, waitingTime: Duration) throws(DriverError) -> ([UInt8], UInt8) {
        let reply = try exchange(.xfrBlock(bwi: 0, levelParameter: level.rawValue, data: data), slot: slot,
                                 waitingTime: waitingTime)
        try check(reply)
        guard case .dataBlock(let chain, let response) = reply.body else {
            throw .protocolViolation("XfrBlock answered with \(reply.messageType)")
        }
        return (response, chain)
    }

    /// PC_to_RDR_Secure: PIN entry on the reader's keypad; `data` is the CCID
    /// PIN verification or modification structure with bPINOperation first.
    public func secure(slot: Int, data: [UInt8]) throws(DriverError) -> [UInt8] {
        let s = try checkSlot(slot)
        guard let state = state(of: slot), state.powered else { throw .noCard }
        // The user types: allow the timeout the structure asks for (bTimeOut, 0 = reader default).
        let seconds = data.count > 1 && data[1] != 0 ? Int(data[1]) : 30
        let reply = try exchange(.secure(bwi: 0, levelParameter: 0, data: data), slot: s,
                                 waitingTime: .seconds(seconds))
        try check(reply)
        guard case .dataBlock(_, let response) = reply.body else {
            throw .protocolViolation("Secure answered with \(reply.messageType)")
        }
        return response
    }
}
