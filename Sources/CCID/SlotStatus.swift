/// bmICCStatus: bits 0-1 of bStatus (CCID 1.1 §6.2.6).
public enum ICCStatus: UInt8, Sendable, Equatable {
    case presentActive = 0
    case presentInactive = 1
    case absent = 2
    case reserved = 3
}

/// bmCommandStatus: bits 6-7 of bStatus.
public enum CommandStatus: UInt8, Sendable, Equatable {
    case processed = 0
    case failed = 1
    case timeExtension = 2
    case reserved = 3
}

/// The bStatus byte of every RDR_to_PC message.
public struct SlotStatus: Equatable, Sendable, CustomStringConvertible {
    public var icc: ICCStatus
    public var command: CommandStatus

    public init(icc: ICCStatus, command: CommandStatus = .processed) {
        self.icc = icc
        self.command = command
    }

    public init(byte: UInt8) {
        icc = ICCStatus(rawValue: byte & 0x03) ?? .reserved
        command = CommandStatus(rawValue: (byte >> 6) & 0x03) ?? .reserved
    }

    public var byte: UInt8 { icc.rawValue | command.rawValue << 6 }

    public var description: String { "icc=\(icc) command=\(command)" }
}

/// bError of RDR_to_PC messages when bmCommandStatus is `failed` (CCID 1.1 §6.2.6, table 6.2-2).
public struct SlotError: RawRepresentable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let commandAborted = SlotError(rawValue: 0xFF)
    public static let iccMute = SlotError(rawValue: 0xFE)
    public static let transferParityError = SlotError(rawValue: 0xFD)
    public static let transferOverrun = SlotError(rawValue: 0xFC)
    public static let hardwareError = SlotError(rawValue: 0xFB)
    public static let badATRTS = SlotError(rawValue: 0xF8)
    public static let badATRTCK = SlotError(rawValue: 0xF7)
    public static let iccProtocolNotSupported = SlotError(rawValue: 0xF6)
    public static let iccClassNotSupported = SlotError(rawValue: 0xF5)
    public static let procedureByteConflict = SlotError(rawValue: 0xF4)
    public static let deactivatedProtocol = SlotError(rawValue: 0xF3)
    public static let busyWithAutoSequence = SlotError(rawValue: 0xF2)
    public static let pinTimeout = SlotError(rawValue: 0xF0)
    public static let pinCancelled = SlotError(rawValue: 0xEF)
    public static let commandSlotBusy = SlotError(rawValue: 0xE0)
    public static let commandNotSupported = SlotError(rawValue: 0x00)
    /// 0x01–0x7F: the command's field at this byte offset is not acceptable.
    public static func badParameter(at offset: UInt8) -> SlotError { SlotError(rawValue: offset & 0x7F) }
    /// dwLength (offset 1) does not fit the message or the reader.
    public static let badLength = badParameter(at: 1)
    /// bSlot (offset 5) names no slot of the reader.
    public static let badSlot = badParameter(at: 5)

    public var description: String {
        switch self {
        case .commandAborted: return "CMD_ABORTED"
        case .iccMute: return "ICC_MUTE"
        case .transferParityError: return "XFR_PARITY_ERROR"
        case .transferOverrun: return "XFR_OVERRUN"
        case .hardwareError: return "HW_ERROR"
        case .badATRTS: return "BAD_ATR_TS"
        case .badATRTCK: return "BAD_ATR_TCK"
        case .iccProtocolNotSupported: return "ICC_PROTOCOL_NOT_SUPPORTED"
        case .iccClassNotSupported: return "ICC_CLASS_NOT_SUPPORTED"
        case .procedureByteConflict: return "PROCEDURE_BYTE_CONFLICT"
        case .deactivatedProtocol: return "DEACTIVATED_PROTOCOL"
        case .busyWithAutoSequence: return "BUSY_WITH_AUTO_SEQUENCE"
        case .pinTimeout: return "PIN_TIMEOUT"
        case .pinCancelled: return "PIN_CANCELLED"
        case .commandSlotBusy: return "CMD_SLOT_BUSY"
        case .commandNotSupported: return "CMD_NOT_SUPPORTED"
        default:
            if rawValue < 0x80 { return "bad parameter at offset \(rawValue)" }
            return "user-defined error 0x\(hexString([rawValue]))"
        }
    }
}
