/// A RDR_to_PC message on the bulk-in pipe (CCID 1.1 §6.2).
public struct Reply: Equatable, Sendable {
    public var slot: UInt8
    public var sequence: UInt8
    public var status: SlotStatus
    /// bError; meaningful when `status.command` is `.failed`, and the
    /// time-extension multiplier when it is `.timeExtension`.
    public var error: UInt8
    public var body: Body

    public init(slot: UInt8, sequence: UInt8, status: SlotStatus, error: UInt8 = 0, body: Body) {
        self.slot = slot
        self.sequence = sequence
        self.status = status
        self.error = error
        self.body = body
    }

    public enum Body: Equatable, Sendable {
        /// bChainParameter: `LevelParameter` raw value for extended APDU exchange.
        case dataBlock(chainParameter: UInt8, data: [UInt8])
        case slotStatus(clockStatus: UInt8)
        case parameters(protocolNumber: UInt8, data: [UInt8])
        case escape(data: [UInt8])
        case dataRateAndClockFrequency(clockFrequency: UInt32, dataRate: UInt32)
    }

    public enum MessageType: UInt8, Sendable {
        case dataBlock = 0x80, slotStatus = 0x81, parameters = 0x82, escape = 0x83
        case dataRateAndClockFrequency = 0x84
    }

    public var messageType: MessageType {
        switch body {
        case .dataBlock: .dataBlock
        case .slotStatus: .slotStatus
        case .parameters: .parameters
        case .escape: .escape
        case .dataRateAndClockFrequency: .dataRateAndClockFrequency
        }
    }

    public var slotError: SlotError { SlotError(rawValue: error) }

    /// The reply a command expects (CCID 1.1 table 6.2-1).
    public static func expectedType(for command: Command.MessageType) -> MessageType {
        switch command {
        case .iccPowerOn, .xfrBlock, .secure: .dataBlock
        case .iccPowerOff, .getSlotStatus, .iccClock, .t0APDU, .mechanical, .abort: .slotStatus
        case .getParameters, .resetParameters, .setParameters: .parameters
        case .escape: .escape
        case .setDataRateAndClockFrequency: .dataRateAndClockFrequency
        }
    }
}

extension Reply {
    public func encoded() -> [UInt8] {
        var specific: UInt8 = 0
        var data: [UInt8] = []
        switch body {
        case .dataBlock(let chain, let d): specific = chain; data = d
        case .slotStatus(let clock): specific = clock
        case .parameters(let p, let d): specific = p; data = d
        case .escape(let d): data = d
        case .dataRateAndClockFrequency(let clock, let rate):
            data.appendLE(clock)
            data.appendLE(rate)
        }
        var out: [UInt8] = [messageType.rawValue]
        out.reserveCapacity(ccidHeaderLength + data.count)
        out.appendLE(UInt32(truncatingIfNeeded: data.count))
        out += [slot, sequence, status.byte, error, specific]
        out += data
        return out
    }

    public init(decoding bytes: some Collection<UInt8>) throws(CCIDDecodingError) {
        var r = ByteReader(bytes)
        guard let type = r.u8(), let length = r.u32le(), let slot = r.u8(), let seq = r.u8(),
              let status = r.u8(), let error = r.u8(), let specific = r.u8()
        else { throw .truncatedHeader(count: bytes.count) }
        guard Int(length) == r.remainingCount else {
            throw .lengthMismatch(declared: length, actual: r.remainingCount)
        }
        let data = Array(r.rest())
        guard let kind = MessageType(rawValue: type) else { throw .unknownMessageType(type) }
        let body: Body
        switch kind {
        case .dataBlock: body = .dataBlock(chainParameter: specific, data: data)
        case .slotStatus: body = .slotStatus(clockStatus: specific)
        case .parameters: body = .parameters(protocolNumber: specific, data: data)
        case .escape: body = .escape(data: data)
        case .dataRateAndClockFrequency:
            var d = ByteReader(data)
            guard data.count == 8, let clock = d.u32le(), let rate = d.u32le() else {
                throw .lengthMismatch(declared: length, actual: data.count)
            }
            body = .dataRateAndClockFrequency(clockFrequency: clock, dataRate: rate)
        }
        self.init(slot: slot, sequence: seq, status: SlotStatus(byte: status), error: error, body: body)
    }
}
