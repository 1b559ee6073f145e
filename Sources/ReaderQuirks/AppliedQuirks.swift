import CCID

/// The quirks that apply to one device, as the driver needs them: the
/// descriptor as the device really behaves, and the few behaviours that are
/// not descriptor values. Built once at open; a pure value.
public struct AppliedQuirks: Equatable, Sendable {
    /// The table's entries for this device, in table order (switched-off ones excluded).
    public let quirks: [Quirk]
    /// Ids matched but switched off by the user (`quirks-off`).
    public let switchedOff: [String]
    /// The table's entries for cards (by ATR), those not switched off.
    let cardEntries: [Quirk]
    /// What every APDU asks, found once here rather than on each exchange.
    /// How much longer than its ATR says a T=1 card may take (zero: no longer).
    public let longerT1WaitingTime: Duration
    public let readerInformation: ReaderInformation?
    /// What the firmware said of itself at open (quirk P4), if it was asked and answered.
    public let firmwareFeatures: GemaltoFirmwareFeatures?

    public static let none = AppliedQuirks(quirks: [], switchedOff: [], cardEntries: [])

    init(quirks: [Quirk], switchedOff: [String], cardEntries: [Quirk], firmwareFeatures: GemaltoFirmwareFeatures? = nil) {
        self.quirks = quirks
        self.switchedOff = switchedOff
        self.cardEntries = cardEntries
        self.firmwareFeatures = firmwareFeatures
        longerT1WaitingTime = quirks.lazy.compactMap { if case .longerT1WaitingTime(let d) = $0.behaviour { d } else { nil } }
            .max() ?? .zero
        readerInformation = quirks.lazy.compactMap { if case .readerInformation(let i) = $0.behaviour { i } else { nil } }.first
    }

    /// The entries of `table` for this device; `off` lists ids the user switched off ("D9", "O1").
    /// `messageLength`: the descriptor's dwMaxCCIDMessageLength, for the entries keyed on it (unknown: they do not match).
    public init(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16, messageLength: UInt32? = nil, off: Set<String> = [],
                table: [Quirk] = QuirkTable.entries) {
        let matched = table.filter {
            $0.applies(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice, messageLength: messageLength)
        }
        let off = Set(off.map { $0.uppercased() })
        var seen = Set<String>()
        self.init(quirks: matched.filter { !off.contains($0.id.uppercased()) },
                  switchedOff: matched.map(\.id).filter { off.contains($0.uppercased()) && seen.insert($0).inserted },
                  cardEntries: table.filter { $0.atr != nil && !off.contains($0.id.uppercased()) })
    }

    public init(for identity: DeviceIdentity, off: Set<String> = []) {
        self.init(vendorID: identity.vendorID, productID: identity.productID, bcdDevice: identity.bcdDevice,
                  messageLength: identity.classDescriptor.maxCCIDMessageLength, off: off)
    }

    /// The identity with the descriptor the device really has.
    public func adjusted(_ identity: DeviceIdentity) -> DeviceIdentity {
        var out = identity
        var d = identity.classDescriptor
        for q in quirks {
            switch q.behaviour {
            case .exchangeLevel(let level) where level != .unknown:
                d.features = .init(rawValue: d.features.rawValue & ~ClassDescriptor.Features.exchangeLevelMask | level.rawValue)
            case .maxMessageLength(let length):
                d.maxCCIDMessageLength = length
            case .noPINPad:
                d.pinSupport = []
            case .maxDataRate(let rate):
                d.maxDataRate = min(d.maxDataRate == 0 ? rate : d.maxDataRate, rate)
                if d.dataRate > rate { d.dataRate = rate }
            case .automaticIFSD:
                d.features.insert(.automaticIFSDExchange)
            default:
                break
            }
        }
        out.classDescriptor = d
        return out
    }

    /// The entries for the card with this ATR, in any reader.
    public func cardQuirks(atr: [UInt8]) -> [Quirk] { cardEntries.filter { $0.atr == atr } }

    /// The first firmware-gate entry that refuses this device, if any.
    public var refusal: Quirk? {
        quirks.first { if case .firmwareRefused = $0.behaviour { true } else { false } }
    }

    public var openDelay: Duration? {
        quirks.lazy.compactMap { if case .openDelay(let d) = $0.behaviour { d } else { nil } }.max()
    }

    /// How much slower than the norm the reader answers GetSlotStatus (1: not slower).
    public var slotStatusFactor: Int {
        quirks.lazy.compactMap { if case .slowSlotStatus(let f) = $0.behaviour { max(1, f) } else { nil } }.max() ?? 1
    }

    /// Listed data rates above this are not used.
    public var maxDataRate: UInt32? {
        quirks.lazy.compactMap { if case .maxDataRate(let r) = $0.behaviour { r } else { nil } }.min()
    }

    /// Whether this Escape command is one the quirk table lets through without the escape option.
    public func allowsEscape(_ command: [UInt8]) -> Bool {
        quirks.contains { q in
            guard case .escapeAllowed(let prefixes) = q.behaviour else { return false }
            return prefixes.isEmpty || prefixes.contains { !$0.isEmpty && command.starts(with: $0) }
        }
    }

    public var resetInsteadOfParameters: Bool { quirks.contains { $0.behaviour == .resetInsteadOfParameters } }
    public var noPPS: Bool { quirks.contains { $0.behaviour == .noPPS } }
    public var powerOffBeforePowerOn: Bool { quirks.contains { $0.behaviour == .powerOffBeforePowerOn } }
    public var presenceUnknown: Bool { quirks.contains { $0.behaviour == .presenceUnknown } }
    public var loadsDisplayPrompts: Bool { quirks.contains { $0.behaviour == .displayPrompts } }

    /// Quirk M5: the rates slots after the first can run, if this device limits them.
    public var secondarySlotRates: [UInt32]? {
        quirks.lazy.compactMap { if case .secondarySlotRates(let r) = $0.behaviour { r } else { nil } }.first
    }

    public var isoModeEscapeError: UInt8? {
        quirks.lazy.compactMap { if case .isoModeEscape(let e) = $0.behaviour { e } else { nil } }.first
    }

    /// One line per quirk, for logs and `ccid-attach doctor`.
    public var descriptions: [String] {
        quirks.map { "quirk \($0.id) \($0.name): \($0.reason)" }
            + switchedOff.map { "quirk \($0) matches this device but is switched off (quirks-off)" }
    }
}
