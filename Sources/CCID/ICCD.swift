/// USB ICCD, the CCID class's variant for tokens: the same class descriptor,
/// but no bulk pipes. Every exchange is a class request on the control pipe
/// (bInterfaceProtocol 1: version A, 2: version B). Version A moves a T=0
/// command in pieces (a 5-byte header, then data out or data in, then the
/// status word) and is polled through a one-byte status; version B moves
/// APDUs, chained as at CCID's extended level, and each answer says what it
/// carries or how long to wait before asking again. The requests and answers
/// are encoded and decoded here, for the driver and the simulated device alike.
public enum ICCDVersion: UInt8, Sendable, Equatable, CustomStringConvertible {
    case a = 1
    case b = 2

    public var description: String { self == .a ? "ICCD version A" : "ICCD version B" }
}

/// bRequest of the ICCD class requests.
public enum ICCDRequest: UInt8, Sendable {
    case iccPowerOn = 0x62
    case iccPowerOff = 0x63
    case xfrBlock = 0x65
    case dataBlock = 0x6F
    /// Version A: the one-byte status.
    case getICCStatus = 0xA0
    /// Version B: the slot's status, as a status-information answer.
    case slotStatus = 0x81
}

extension ControlRequest {
    /// A control transfer's data stage is a 16-bit length, and hosts refuse
    /// longer ones than this (the reference driver found it): both versions cap their transfers here.
    public static let iccdTransferLimit = 0x1000
    /// The longest ATR (ISO/IEC 7816-3: 33 bytes).
    static let longestATR: UInt16 = 33

    static func iccdOut(_ request: ICCDRequest, value: UInt16 = 0, interface: UInt16, data: [UInt8] = []) -> ControlRequest {
        ControlRequest(requestType: 0x21, request: request.rawValue, value: value, index: interface,
                       length: UInt16(clamping: data.count), data: data)
    }

    static func iccdIn(_ request: ICCDRequest, interface: UInt16, length: UInt16) -> ControlRequest {
        ControlRequest(requestType: 0xA1, request: request.rawValue, value: 0, index: interface, length: length)
    }

    public static func iccdPowerOff(interface: UInt16) -> ControlRequest { iccdOut(.iccPowerOff, interface: interface) }

    /// Version A: the device powers the card and answers its ATR.
    public static func iccdAPowerOn(interface: UInt16) -> ControlRequest { iccdIn(.iccPowerOn, interface: interface, length: longestATR) }

    /// Version B: the ATR follows as a data block. wValue 1, as the reference driver sends it.
    public static func iccdBPowerOn(interface: UInt16) -> ControlRequest { iccdOut(.iccPowerOn, value: 1, interface: interface) }

    public static func iccdAStatus(interface: UInt16) -> ControlRequest { iccdIn(.getICCStatus, interface: interface, length: 1) }

    public static func iccdBSlotStatus(interface: UInt16) -> ControlRequest { iccdIn(.slotStatus, interface: interface, length: 3) }

    /// Version A: a T=0 header, or the data the card asked for.
    public static func iccdAXfrBlock(_ data: [UInt8], interface: UInt16) -> ControlRequest {
        iccdOut(.xfrBlock, interface: interface, data: data)
    }

    /// Version B: a piece of a command APDU; wValue carries the level
    /// parameter (CCID's 00, 01, 03, 02, 10) in its high byte, as the reference driver sends it.
    public static func iccdBXfrBlock(_ data: [UInt8], level: LevelParameter, interface: UInt16) -> ControlRequest {
        iccdOut(.xfrBlock, value: level.rawValue << 8, interface: interface, data: data)
    }

    public static func iccdDataBlock(interface: UInt16, length: Int) -> ControlRequest {
        iccdIn(.dataBlock, interface: interface, length: UInt16(clamping: min(length, iccdTransferLimit)))
    }

    /// What an ICCD request this is, if it is one (the device's side).
    public var iccdRequest: ICCDRequest? {
        guard requestType & 0x7F == 0x21 else { return nil }
        return ICCDRequest(rawValue: request)
    }

    /// Version B's level parameter from wValue's high byte.
    public var iccdLevel: LevelParameter? { LevelParameter(rawValue: value >> 8) }
}

/// Version A's status byte.
public struct ICCDAStatus: Equatable, Sendable, CustomStringConvertible {
    public let byte: UInt8
    public init(byte: UInt8) { self.byte = byte }

    /// Idle: ready for a header.
    public static let idle = ICCDAStatus(byte: 0x00)
    /// The card waits for data, or has data to give.
    public static let dataReady = ICCDAStatus(byte: 0x10)
    /// SW1 SW2 can be read.
    public static let statusReady = ICCDAStatus(byte: 0x20)
    /// Working: ask again later.
    public static let busy = ICCDAStatus(byte: 0x40)
    /// No card, or it does not answer.
    public static let mute = ICCDAStatus(byte: 0x80)

    public var isBusy: Bool { byte & 0x40 != 0 }
    public var isMute: Bool { byte & 0x80 != 0 }
    public var description: String { "0x" + hexString([byte]) }

    /// How long a host waits before asking a busy device again.
    public static let pollInterval: Duration = .milliseconds(10)
}

/// Version B's answer to DATA_BLOCK and SLOT_STATUS: its first byte, bResponseType, says what follows.
public enum ICCDBAnswer: Equatable, Sendable {
    /// 0x00 (the whole answer) or a chaining step (0x01, 0x02, 0x03, 0x10, as CCID's bChainParameter), with data.
    case data(chain: UInt8, [UInt8])
    /// 0x40: status information, bStatus and bError as in a CCID reply.
    case status(SlotStatus, error: UInt8)
    /// 0x80: not ready; ask again after this many 10 ms (0: the host chooses).
    case poll(tens: UInt16)

    static let chainTypes: Set<UInt8> = [0x00, 0x01, 0x02, 0x03, 0x10]

    public init?(decoding bytes: [UInt8]) {
        guard let type = bytes.first else { return nil }
        switch type {
        case let t where Self.chainTypes.contains(t): self = .data(chain: t, Array(bytes.dropFirst()))
        case 0x40:
            guard bytes.count >= 3 else { return nil }
            self = .status(SlotStatus(byte: bytes[1]), error: bytes[2])
        case 0x80:
            guard bytes.count >= 3 else { return nil }
            self = .poll(tens: UInt16(bytes[1]) | UInt16(bytes[2]) << 8)
        default: return nil
        }
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .data(let chain, let data): [chain] + data
        case .status(let status, let error): [0x40, status.byte, error]
        case .poll(let tens): [0x80, UInt8(tens & 0xFF), UInt8(tens >> 8)]
        }
    }

    /// How long a poll answer asks the host to wait: at least 10 ms.
    public static func pollDelay(tens: UInt16) -> Duration { .milliseconds(10 * Int(max(tens, 1))) }
}
