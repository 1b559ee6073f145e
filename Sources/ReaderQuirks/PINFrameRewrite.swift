import CCID

/// A change to PC_to_RDR_Secure's PIN structure that a reader's firmware
/// needs (the facts' P rows): fields it accepts only with one value, or a
/// layout of its own. Applied by `AppliedQuirks.pinFrame(for:)`.
public enum PINFrameRewrite: Equatable, Sendable {
    /// Verification: bEntryValidationCondition and/or bNumberMessage set to these (nil: left alone).
    case verify(validation: UInt8?, numberMessage: UInt8?)
    /// Modification: bEntryValidationCondition set to this.
    case modifyValidation(UInt8)
    /// Modification: all three bMsgIndex bytes present whatever bNumberMessage says.
    case modifyAllIndexes
    /// Modification: a bNumberMessage in `from` becomes `to`.
    case modifyNumberMessage(from: ClosedRange<UInt8>, to: UInt8)
    /// Modification for a reader without a display: no messages (bNumberMessage 0), all three bMsgIndex bytes, zeroed.
    case modifyNoMessages
    /// Verification: the two bytes of wPINMaxExtraDigit swapped (the firmware reads them reversed).
    case verifySwapMaxExtraDigit
}

/// What a PIN frame goes out as: the structure and how many bMsgIndex bytes a modification carries.
public struct PINFrame: Equatable, Sendable {
    public var entry: PINEntry
    public var modifyIndexCount: Int?

    public func ccidEncoded() -> [UInt8] { entry.ccidEncoded(modifyIndexCount: modifyIndexCount) }
}

extension AppliedQuirks {
    /// bEntryValidationCondition: bit 0 maximum size reached, bit 1 validation key, bit 2 timeout.
    static let validationConditions: ClosedRange<UInt8> = 0x01...0x07

    /// The frame for this reader: a validation condition no reader can act on
    /// (0, or bits beyond 0x07) made "validation key" (0x02), as one reader
    /// crashed on those (Cherry XX44) and none needs them; then this device's rewrites.
    public func pinFrame(for original: PINEntry) -> PINFrame {
        var e = original
        if !Self.validationConditions.contains(e.entryValidationCondition) { e.entryValidationCondition = 0x02 }
        var indexCount: Int? = nil
        let isVerify = e.operation == .verify
        for rewrite in pinFrameRewrites {
            switch rewrite {
            case .verify(let validation, let messages) where isVerify:
                if let validation { e.entryValidationCondition = validation }
                if let messages { e.numberMessage = messages }
            case .verifySwapMaxExtraDigit where isVerify:
                e.maxExtraDigit = e.maxExtraDigit >> 8 | e.maxExtraDigit << 8
            case .modifyValidation(let v) where !isVerify:
                e.entryValidationCondition = v
            case .modifyAllIndexes where !isVerify:
                indexCount = 3
            case .modifyNumberMessage(let from, let to) where !isVerify:
                if from.contains(e.numberMessage) { e.numberMessage = to }
            case .modifyNoMessages where !isVerify:
                e.numberMessage = 0
                e.messageIndexes = [0, 0, 0]
                indexCount = 3
            default:
                break
            }
        }
        if let mask = validationMask {
            // Quirk P4: only the conditions the firmware says it has; none of them asked: its first.
            let kept = e.entryValidationCondition & mask
            e.entryValidationCondition = kept != 0 ? kept : mask & (~mask &+ 1)
        }
        return PINFrame(entry: e, modifyIndexCount: indexCount)
    }

    /// The validation conditions this firmware has (quirk P4's answer), if it said.
    var validationMask: UInt8? { firmwareFeatures.map(\.validationMask).flatMap { $0 != 0 ? $0 : nil } }

    var pinFrameRewrites: [PINFrameRewrite] {
        quirks.compactMap { if case .pinFrame(let r) = $0.behaviour { r } else { nil } }
    }

    /// How long to wait before a PIN verification (the user's Enter key must be up).
    public var delayBeforeVerify: Duration {
        quirks.lazy.compactMap { if case .delayBeforeVerify(let d) = $0.behaviour { d } else { nil } }.max() ?? .zero
    }

    /// Quirk P14: the Escape that goes before a case-1 verification with no PIN block, if this device needs one.
    public var escapeBeforeUnpaddedPIN: [UInt8]? {
        quirks.lazy.compactMap { if case .escapeBeforeUnpaddedPIN(let e) = $0.behaviour { e } else { nil } }.first
    }

    /// PIN sizes and validation condition the descriptor cannot say: the firmware's own word (P4) first.
    public var pinProperties: PINProperties? {
        if let f = firmwareFeatures, f.maximumPINSize > 0 {
            return PINProperties(minimumSize: f.minimumPINSize, maximumSize: f.maximumPINSize, validationCondition: validationMask)
        }
        return quirks.lazy.compactMap { if case .pinProperties(let p) = $0.behaviour { p } else { nil } }.first
    }
}

/// What GET_TLV_PROPERTIES and IFD_PIN_PROPERTIES report of a PIN pad, where the descriptor has no field for it.
public struct PINProperties: Equatable, Sendable {
    public var minimumSize: UInt8
    public var maximumSize: UInt8
    /// bEntryValidationCondition, if the reader has a fixed one.
    public var validationCondition: UInt8?

    public init(minimumSize: UInt8, maximumSize: UInt8, validationCondition: UInt8? = nil) {
        (self.minimumSize, self.maximumSize, self.validationCondition) = (minimumSize, maximumSize, validationCondition)
    }
}
