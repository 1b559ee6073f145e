/// A message on the interrupt-in pipe (CCID 1.1 §6.3).
public enum InterruptMessage: Equatable, Sendable {
    /// One entry per slot, slot 0 first (bmSlotICCState, two bits per slot).
    case notifySlotChange([SlotChange])
    case hardwareError(slot: UInt8, sequence: UInt8, code: UInt8)

    public static let notifySlotChangeType: UInt8 = 0x50
    public static let hardwareErrorType: UInt8 = 0x51

    public struct SlotChange: Equatable, Sendable {
        public var present: Bool
        public var changed: Bool
        public init(present: Bool, changed: Bool) {
            self.present = present
            self.changed = changed
        }
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .notifySlotChange(let slots):
            var out: [UInt8] = [Self.notifySlotChangeType]
            out += [UInt8](repeating: 0, count: (slots.count * 2 + 7) / 8)
            for (i, s) in slots.enumerated() {
                let bits: UInt8 = (s.present ? 1 : 0) | (s.changed ? 2 : 0)
                out[1 + i / 4] |= bits << UInt8((i % 4) * 2)
            }
            return out
        case .hardwareError(let slot, let seq, let code):
            return [Self.hardwareErrorType, slot, seq, code]
        }
    }

    public init(decoding bytes: some Collection<UInt8>) throws(CCIDDecodingError) {
        let b = Array(bytes)
        guard let type = b.first else { throw .truncatedHeader(count: 0) }
        switch type {
        case Self.notifySlotChangeType:
            guard b.count >= 2 else { throw .lengthMismatch(declared: 1, actual: b.count - 1) }
            var slots: [SlotChange] = []
            for byte in b.dropFirst() {
                for k in 0..<4 {
                    let bits = byte >> UInt8(k * 2)
                    slots.append(SlotChange(present: bits & 1 != 0, changed: bits & 2 != 0))
                }
            }
            self = .notifySlotChange(slots)
        case Self.hardwareErrorType:
            guard b.count == 4 else { throw .lengthMismatch(declared: 3, actual: b.count - 1) }
            self = .hardwareError(slot: b[1], sequence: b[2], code: b[3])
        default:
            throw .unknownMessageType(type)
        }
    }
}

/// Class-specific control requests (CCID 1.1 §5.3).
public enum ClassRequest: UInt8, Sendable {
    case abort = 0x01
    case getClockFrequencies = 0x02
    case getDataRates = 0x03
}

/// A USB control transfer as the relay carries it.
public struct ControlRequest: Equatable, Sendable {
    public var requestType: UInt8
    public var request: UInt8
    public var value: UInt16
    public var index: UInt16
    /// wLength for IN transfers; the data itself for OUT transfers.
    public var length: UInt16
    public var data: [UInt8]

    public init(requestType: UInt8, request: UInt8, value: UInt16, index: UInt16, length: UInt16, data: [UInt8] = []) {
        self.requestType = requestType
        self.request = request
        self.value = value
        self.index = index
        self.length = length
        self.data = data
    }

    public var isDeviceToHost: Bool { requestType & 0x80 != 0 }

    /// The CCID ABORT class request: wValue = bSeq << 8 | bSlot.
    public static func abort(slot: UInt8, sequence: UInt8, interface: UInt16) -> ControlRequest {
        ControlRequest(requestType: 0x21, request: ClassRequest.abort.rawValue,
                       value: UInt16(sequence) << 8 | UInt16(slot), index: interface, length: 0)
    }

    public static func getClockFrequencies(interface: UInt16, count: Int) -> ControlRequest {
        ControlRequest(requestType: 0xA1, request: ClassRequest.getClockFrequencies.rawValue,
                       value: 0, index: interface, length: UInt16(clamping: count * 4))
    }

    public static func getDataRates(interface: UInt16, count: Int) -> ControlRequest {
        ControlRequest(requestType: 0xA1, request: ClassRequest.getDataRates.rawValue,
                       value: 0, index: interface, length: UInt16(clamping: count * 4))
    }
}
