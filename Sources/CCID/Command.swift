/// A PC_to_RDR message (CCID 1.1 §6.1): 10-byte header, then abData.
public struct Command: Equatable, Sendable {
    public var slot: UInt8
    public var sequence: UInt8
    public var body: Body

    public init(slot: UInt8, sequence: UInt8, body: Body) {
        self.slot = slot
        self.sequence = sequence
        self.body = body
    }

    public enum Body: Equatable, Sendable {
        case iccPowerOn(voltage: VoltageSelection)
        case iccPowerOff
        case getSlotStatus
        /// wLevelParameter: for extended APDU exchange, the chaining state (`LevelParameter`).
        case xfrBlock(bwi: UInt8, levelParameter: UInt16, data: [UInt8])
        case getParameters
        case resetParameters
        case setParameters(protocolNumber: UInt8, data: [UInt8])
        case escape(data: [UInt8])
        case iccClock(command: UInt8)
        case t0APDU(changes: UInt8, classGetResponse: UInt8, classEnvelope: UInt8)
        case secure(bwi: UInt8, levelParameter: UInt16, data: [UInt8])
        case mechanical(function: UInt8)
        case abort
        case setDataRateAndClockFrequency(clockFrequency: UInt32, dataRate: UInt32)
    }

    public enum MessageType: UInt8, Sendable {
        case iccPowerOn = 0x62, iccPowerOff = 0x63, getSlotStatus = 0x65, xfrBlock = 0x6F
        case getParameters = 0x6C, resetParameters = 0x6D, setParameters = 0x61, escape = 0x6B
        case iccClock = 0x6E, t0APDU = 0x6A, secure = 0x69, mechanical = 0x71, abort = 0x72
        case setDataRateAndClockFrequency = 0x73
    }

    public var messageType: MessageType {
        switch body {
        case .iccPowerOn: .iccPowerOn
        case .iccPowerOff: .iccPowerOff
        case .getSlotStatus: .getSlotStatus
        case .xfrBlock: .xfrBlock
        case .getParameters: .getParameters
        case .resetParameters: .resetParameters
        case .setParameters: .setParameters
        case .escape: .escape
        case .iccClock: .iccClock
        case .t0APDU: .t0APDU
        case .secure: .secure
        case .mechanical: .mechanical
        case .abort: .abort
        case .setDataRateAndClockFrequency: .setDataRateAndClockFrequency
        }
    }
}

/// bPowerSelect of PC_to_RDR_IccPowerOn.
public enum VoltageSelection: UInt8, Sendable, Equatable, CustomStringConvertible {
    case automatic = 0, v5 = 1, v3 = 2, v1_8 = 3

    public var description: String {
        switch self {
        case .automatic: "the reader's choice of voltage"
        case .v5: "5 V"
        case .v3: "3 V"
        case .v1_8: "1.8 V"
        }
    }
}

/// wLevelParameter / bChainParameter values for extended APDU exchange (CCID 1.1 §6.1.4).
public enum LevelParameter: UInt16, Sendable, Equatable {
    case beginsAndEnds = 0x00
    case begins = 0x01
    case ends = 0x02
    case continues = 0x03
    case emptyContinuation = 0x10
}

public let ccidHeaderLength = 10

extension Command {
    public func encoded() -> [UInt8] {
        var specific: (UInt8, UInt8, UInt8) = (0, 0, 0)
        var data: [UInt8] = []
        switch body {
        case .iccPowerOn(let v): specific.0 = v.rawValue
        case .iccPowerOff, .getSlotStatus, .getParameters, .resetParameters, .abort: break
        case .xfrBlock(let bwi, let level, let d), .secure(let bwi, let level, let d):
            specific = (bwi, UInt8(level & 0xFF), UInt8(level >> 8))
            data = d
        case .setParameters(let p, let d):
            specific.0 = p
            data = d
        case .escape(let d): data = d
        case .iccClock(let c): specific.0 = c
        case .t0APDU(let c, let g, let e): specific = (c, g, e)
        case .mechanical(let f): specific.0 = f
        case .setDataRateAndClockFrequency(let clock, let rate):
            data.appendLE(clock)
            data.appendLE(rate)
        }
        var out: [UInt8] = [messageType.rawValue]
        out.reserveCapacity(ccidHeaderLength + data.count)
        out.appendLE(UInt32(truncatingIfNeeded: data.count))
        out += [slot, sequence, specific.0, specific.1, specific.2]
        out += data
        return out
    }

    /// Decodes one PC_to_RDR message; the reader side (simulator) uses this.
    public init(decoding bytes: some Collection<UInt8>) throws(CCIDDecodingError) {
        var r = ByteReader(bytes)
        guard let type = r.u8(), let length = r.u32le(), let slot = r.u8(), let seq = r.u8(),
              let s0 = r.u8(), let s1 = r.u8(), let s2 = r.u8()
        else { throw .truncatedHeader(count: bytes.count) }
        guard Int(length) == r.remainingCount else {
            throw .lengthMismatch(declared: length, actual: r.remainingCount)
        }
        let data = Array(r.rest())
        let level = UInt16(s1) | UInt16(s2) << 8
        guard let kind = MessageType(rawValue: type) else { throw .unknownMessageType(type) }
        let body: Body
        switch kind {
        case .iccPowerOn:
            guard let v = VoltageSelection(rawValue: s0) else { throw .invalidField("bPowerSelect", s0) }
            body = .iccPowerOn(voltage: v)
        case .iccPowerOff: body = .iccPowerOff
        case .getSlotStatus: body = .getSlotStatus
        case .xfrBlock: body = .xfrBlock(bwi: s0, levelParameter: level, data: data)
        case .getParameters: body = .getParameters
        case .resetParameters: body = .resetParameters
        case .setParameters: body = .setParameters(protocolNumber: s0, data: data)
        case .escape: body = .escape(data: data)
        case .iccClock: body = .iccClock(command: s0)
        case .t0APDU: body = .t0APDU(changes: s0, classGetResponse: s1, classEnvelope: s2)
        case .secure: body = .secure(bwi: s0, levelParameter: level, data: data)
        case .mechanical: body = .mechanical(function: s0)
        case .abort: body = .abort
        case .setDataRateAndClockFrequency:
            var d = ByteReader(data)
            guard data.count == 8, let clock = d.u32le(), let rate = d.u32le() else {
                throw .lengthMismatch(declared: length, actual: 8)
            }
            body = .setDataRateAndClockFrequency(clockFrequency: clock, dataRate: rate)
        }
        self.init(slot: slot, sequence: seq, body: body)
    }
}

public enum CCIDDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncatedHeader(count: Int)
    case lengthMismatch(declared: UInt32, actual: Int)
    case unknownMessageType(UInt8)
    case invalidField(String, UInt8)

    public var description: String {
        switch self {
        case .truncatedHeader(let n): "CCID message of \(n) bytes is shorter than its 10-byte header"
        case .lengthMismatch(let d, let a): "CCID dwLength says \(d) bytes but \(a) follow"
        case .unknownMessageType(let t): "unknown CCID message type 0x\(hexString([t]))"
        case .invalidField(let name, let v): "invalid \(name) 0x\(hexString([v]))"
        }
    }
}
