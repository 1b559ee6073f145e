import CCID

/// PC/SC Part 10 (v2.02.09) reader features: the feature list and the TLV
/// properties. (Part 10's PIN structures are decoded by `CCID.PINEntry`.)
public enum PCSCFeature: UInt8, Sendable, CaseIterable {
    case verifyPINDirect = 0x06
    case modifyPINDirect = 0x07
    case ifdPINProperties = 0x0A
    case getTLVProperties = 0x12

    /// The control code for a feature: SCARD_CTL_CODE(0x330000 + tag), as the
    /// incumbent driver numbers them, so existing applications find them.
    public var controlCode: UInt32 { PCSCFeature.scardCtlCode(0x33_0000 + UInt32(rawValue)) }

    public static func scardCtlCode(_ code: UInt32) -> UInt32 { 0x4200_0000 &+ code }
    public static let getFeatureRequest = scardCtlCode(3400)
    /// IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE: a CCID Escape command to the reader.
    public static let vendorIFDExchange = scardCtlCode(1)
    /// The same request as Windows numbers it (FILE_DEVICE_SMARTCARD << 16 | 3400 << 2).
    public static let getFeatureRequestWindows: UInt32 = 0x31_0000 | 3400 << 2

    public static func available(for identity: DeviceIdentity) -> [PCSCFeature] {
        var list: [PCSCFeature] = []
        let pin = identity.classDescriptor.pinSupport
        if pin.contains(.verification) { list.append(.verifyPINDirect) }
        if pin.contains(.modification) { list.append(.modifyPINDirect) }
        if !pin.isEmpty { list.append(.ifdPINProperties) }
        list.append(.getTLVProperties)
        return list
    }

    /// CM_IOCTL_GET_FEATURE_REQUEST answer: tag, 4, control code big-endian.
    public static func featureList(for identity: DeviceIdentity) -> [UInt8] {
        var out: [UInt8] = []
        for f in available(for: identity) {
            out += [f.rawValue, 4]
            out.appendBE(f.controlCode)
        }
        return out
    }

    /// Largest APDU data field the driver carries: 0 means short APDUs only (Part 10 §2.6.14).
    public static func maxAPDUDataSize(for descriptor: ClassDescriptor) -> UInt32 {
        switch descriptor.exchangeLevel {
        case .extendedAPDU, .tpdu, .character: 65535
        default: 0
        }
    }

    /// FEATURE_GET_TLV_PROPERTIES answer (Part 10 §2.6.14): tag, length, little-endian value.
    /// `pinSizes`, `validation`: what the descriptor cannot say (the quirk table's P16).
    public static func tlvProperties(for identity: DeviceIdentity, firmware: String, pinSizes: ClosedRange<UInt8>? = nil,
                                     validation: UInt8 = 0x02) -> [UInt8] {
        let d = identity.classDescriptor
        var out: [UInt8] = []
        func u8(_ tag: UInt8, _ v: UInt8) { out += [tag, 1, v] }
        func u16(_ tag: UInt8, _ v: UInt16) { out += [tag, 2]; out.appendLE(v) }
        func u32(_ tag: UInt8, _ v: UInt32) { out += [tag, 4]; out.appendLE(v) }
        u16(0x01, d.lcdLayout)                       // wLcdLayout
        if !d.pinSupport.isEmpty {
            u8(0x02, validation)                     // bEntryValidationCondition (0x02: validation key)
            u8(0x03, 0x00)                           // bTimeOut2
            if let pinSizes {
                u8(0x06, pinSizes.lowerBound)        // bMinPINSize
                u8(0x07, pinSizes.upperBound)        // bMaxPINSize
            }
        }
        if d.lcdLayout != 0 {
            u16(0x04, d.lcdLayout & 0xFF)            // wLcdMaxCharacters
            u16(0x05, d.lcdLayout >> 8)              // wLcdMaxLines
        }
        let fw = Array(firmware.utf8.prefix(64))
        if !fw.isEmpty { out += [0x08, UInt8(fw.count)] + fw }  // sFirmwareID
        u32(0x0A, maxAPDUDataSize(for: d))           // dwMaxAPDUDataSize
        u16(0x0B, identity.vendorID)                 // wIdVendor
        u16(0x0C, identity.productID)                // wIdProduct
        return out
    }

    /// PIN_PROPERTIES_STRUCTURE: wLcdLayout, bEntryValidationCondition, bTimeOut2.
    public static func pinProperties(for descriptor: ClassDescriptor, validation: UInt8 = 0x02) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLE(descriptor.lcdLayout)
        return out + [validation, 0x00]
    }
}
