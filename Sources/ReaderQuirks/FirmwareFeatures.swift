import CCID

/// Gemalto's GET_FIRMWARE_FEATURES answer (Escape 6A): exactly 21 bytes, of
/// which the driver reads the validation conditions the pad has (byte 3), the
/// modification fix (byte 8, bit 0x04: all three bMsgIndex bytes no longer
/// needed) and the PIN sizes (bytes 13 and 14).
public struct GemaltoFirmwareFeatures: Equatable, Sendable {
    public static let length = 21
    public var validationMask: UInt8
    public var modifyFixed: Bool
    public var minimumPINSize: UInt8
    public var maximumPINSize: UInt8

    public init?(answer: [UInt8]) {
        guard answer.count == Self.length else { return nil }
        validationMask = answer[3]
        modifyFixed = answer[8] & 0x04 != 0
        minimumPINSize = answer[13]
        maximumPINSize = answer[14]
    }
}

extension AppliedQuirks {
    /// Quirk P4: the Escape that asks the firmware for its features at open, if this device has it.
    public var firmwareFeaturesEscape: [UInt8]? {
        quirks.lazy.compactMap { if case .firmwareFeaturesEscape(let e) = $0.behaviour { e } else { nil } }.first
    }

    /// These quirks, told what the firmware says of itself (P4): its validation
    /// keys and PIN sizes; a firmware with the modification fix needs no P3 rewrite.
    public func refined(by features: GemaltoFirmwareFeatures) -> AppliedQuirks {
        AppliedQuirks(quirks: quirks.filter { !(features.modifyFixed && $0.id == "P3") }, switchedOff: switchedOff,
                      cardEntries: cardEntries, firmwareFeatures: features)
    }
}
