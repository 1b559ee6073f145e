import ISO7816

/// What the driver knows of one slot.
public struct SlotState: Sendable {
    public var atr: [UInt8] = []
    public var parsedATR: ATR? = nil
    /// 0 or 1 once a protocol was selected since power-up.
    public var protocolType: UInt8? = nil
    /// T=1 state (sequence numbers, IFSC) that lives as long as the protocol does.
    var t1: T1Host? = nil
    public var powered: Bool { !atr.isEmpty }

    public init() {}

    mutating func poweredOff() { self = SlotState() }
}

/// The transmission protocols a caller lets the driver choose from.
public struct ProtocolSet: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let t0 = ProtocolSet(rawValue: 1 << 0)
    public static let t1 = ProtocolSet(rawValue: 1 << 1)
    public static let any: ProtocolSet = [.t0, .t1]

    /// T=`protocolType` alone (nothing for a protocol the driver does not run).
    public init(only protocolType: UInt8) { self = protocolType == 0 ? .t0 : protocolType == 1 ? .t1 : [] }

    public func contains(_ protocolType: UInt8) -> Bool { !intersection(ProtocolSet(only: protocolType)).isEmpty }

    public var description: String {
        [(ProtocolSet.t0, "T=0"), (.t1, "T=1")].filter { contains($0.0) }.map(\.1).joined(separator: " or ").ifEmpty("none")
    }
}

extension String {
    fileprivate func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}
