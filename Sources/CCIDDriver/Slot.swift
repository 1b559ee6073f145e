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
