/// The 54-byte CCID class descriptor (CCID 1.1 §5.1, table 5.1-1).
public struct ClassDescriptor: Equatable, Sendable {
    public static let length = 54
    /// 0x21 for CCID; some vendor-class readers use 0xFF.
    public var descriptorType: UInt8
    public var bcdCCID: UInt16
    public var maxSlotIndex: UInt8
    public var voltageSupport: VoltageSupport
    public var protocols: Protocols
    /// kHz.
    public var defaultClock: UInt32
    /// kHz.
    public var maximumClock: UInt32
    public var numClockSupported: UInt8
    /// bps.
    public var dataRate: UInt32
    /// bps.
    public var maxDataRate: UInt32
    public var numDataRatesSupported: UInt8
    public var maxIFSD: UInt32
    public var synchProtocols: UInt32
    public var mechanical: Mechanical
    public var features: Features
    public var maxCCIDMessageLength: UInt32
    public var classGetResponse: UInt8
    public var classEnvelope: UInt8
    /// High byte: lines, low byte: characters per line; 0 = no LCD.
    public var lcdLayout: UInt16
    public var pinSupport: PINSupport
    public var maxCCIDBusySlots: UInt8

    public var slotCount: Int { Int(maxSlotIndex) + 1 }
    public var exchangeLevel: ExchangeLevel { features.exchangeLevel }

    public struct VoltageSupport: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let v5 = VoltageSupport(rawValue: 0x01)
        public static let v3 = VoltageSupport(rawValue: 0x02)
        public static let v1_8 = VoltageSupport(rawValue: 0x04)
    }

    public struct Protocols: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let t0 = Protocols(rawValue: 0x1)
        public static let t1 = Protocols(rawValue: 0x2)
    }

    public struct Mechanical: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let acceptMechanism = Mechanical(rawValue: 0x1)
        public static let ejectionMechanism = Mechanical(rawValue: 0x2)
        public static let captureMechanism = Mechanical(rawValue: 0x4)
        public static let cardLockUnlock = Mechanical(rawValue: 0x8)
    }

    public struct PINSupport: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let verification = PINSupport(rawValue: 0x1)
        public static let modification = PINSupport(rawValue: 0x2)
    }

    /// dwFeatures (CCID 1.1 table 5.1-1).
    public struct Features: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let automaticParameterConfigurationFromATR = Features(rawValue: 0x2)
        public static let automaticActivationOnInsert = Features(rawValue: 0x4)
        public static let automaticVoltageSelection = Features(rawValue: 0x8)
        public static let automaticClockChange = Features(rawValue: 0x10)
        public static let automaticBaudRateChange = Features(rawValue: 0x20)
        public static let automaticParameterNegotiation = Features(rawValue: 0x40)
        public static let automaticPPS = Features(rawValue: 0x80)
        public static let canStopClock = Features(rawValue: 0x100)
        public static let nadOtherThanZero = Features(rawValue: 0x200)
        public static let automaticIFSDExchange = Features(rawValue: 0x400)
        public static let usbWakeUp = Features(rawValue: 0x100000)

        public static let exchangeLevelMask: UInt32 = 0x70000
        public var exchangeLevel: ExchangeLevel { ExchangeLevel(rawValue: rawValue & Self.exchangeLevelMask) ?? .unknown }
    }
}

/// How much of the transmission protocol the reader performs (dwFeatures bits 16-18).
public enum ExchangeLevel: UInt32, Sendable, CustomStringConvertible {
    case character = 0x00000
    case tpdu = 0x10000
    case shortAPDU = 0x20000
    case extendedAPDU = 0x40000
    case unknown = 0xFFFFFFFF

    public var description: String {
        switch self {
        case .character: "character"
        case .tpdu: "TPDU"
        case .shortAPDU: "short APDU"
        case .extendedAPDU: "short and extended APDU"
        case .unknown: "unknown"
        }
    }
}

public enum ClassDescriptorError: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongLength(Int)
    case wrongType(UInt8)

    public var description: String {
        switch self {
        case .wrongLength(let n): "CCID class descriptor has \(n) bytes, expected 54"
        case .wrongType(let t): "descriptor type 0x\(hexString([t])) is neither CCID (0x21) nor vendor (0xFF)"
        }
    }
}

extension ClassDescriptor {
    public init(decoding bytes: some Collection<UInt8>) throws(ClassDescriptorError) {
        var r = ByteReader(bytes)
        guard bytes.count == Self.length, let bLength = r.u8(), bLength == Self.length else {
            throw .wrongLength(bytes.count)
        }
        guard let type = r.u8(), type == 0x21 || type == 0xFF else {
            throw .wrongType(Array(bytes).dropFirst().first ?? 0)
        }
        // Length was checked above, so every read below succeeds; `?? 0` keeps it trap-free regardless.
        descriptorType = type
        bcdCCID = r.u16le() ?? 0
        maxSlotIndex = r.u8() ?? 0
        voltageSupport = VoltageSupport(rawValue: r.u8() ?? 0)
        protocols = Protocols(rawValue: r.u32le() ?? 0)
        defaultClock = r.u32le() ?? 0
        maximumClock = r.u32le() ?? 0
        numClockSupported = r.u8() ?? 0
        dataRate = r.u32le() ?? 0
        maxDataRate = r.u32le() ?? 0
        numDataRatesSupported = r.u8() ?? 0
        maxIFSD = r.u32le() ?? 0
        synchProtocols = r.u32le() ?? 0
        mechanical = Mechanical(rawValue: r.u32le() ?? 0)
        features = Features(rawValue: r.u32le() ?? 0)
        maxCCIDMessageLength = r.u32le() ?? 0
        classGetResponse = r.u8() ?? 0
        classEnvelope = r.u8() ?? 0
        lcdLayout = r.u16le() ?? 0
        pinSupport = PINSupport(rawValue: r.u8() ?? 0)
        maxCCIDBusySlots = r.u8() ?? 0
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = [UInt8(Self.length), descriptorType]
        out.appendLE(bcdCCID)
        out.append(maxSlotIndex)
        out.append(voltageSupport.rawValue)
        out.appendLE(protocols.rawValue)
        out.appendLE(defaultClock)
        out.appendLE(maximumClock)
        out.append(numClockSupported)
        out.appendLE(dataRate)
        out.appendLE(maxDataRate)
        out.append(numDataRatesSupported)
        out.appendLE(maxIFSD)
        out.appendLE(synchProtocols)
        out.appendLE(mechanical.rawValue)
        out.appendLE(features.rawValue)
        out.appendLE(maxCCIDMessageLength)
        out.append(classGetResponse)
        out.append(classEnvelope)
        out.appendLE(lcdLayout)
        out.append(pinSupport.rawValue)
        out.append(maxCCIDBusySlots)
        return out
    }

    /// Largest abData a single message may carry, given dwMaxCCIDMessageLength.
    public var maxMessageDataLength: Int {
        max(0, Int(maxCCIDMessageLength) - ccidHeaderLength)
    }
}
