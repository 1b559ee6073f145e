import CCID

/// Which devices a quirk is for: a VID:PID (or every product of a vendor)
/// and, when the defect is a firmware's, the bcdDevice releases that have it.
public struct DeviceMatch: Equatable, Sendable, CustomStringConvertible {
    public var vendorID: UInt16
    /// nil: every product of the vendor.
    public var productID: UInt16?
    /// bcdDevice releases the quirk applies to; nil for all of them.
    public var firmware: ClosedRange<UInt16>?

    public init(_ vendorID: UInt16, _ productID: UInt16, firmware: ClosedRange<UInt16>? = nil) {
        self.vendorID = vendorID
        self.productID = productID
        self.firmware = firmware
    }

    /// Every product of `vendorID`.
    public init(vendor vendorID: UInt16) {
        self.vendorID = vendorID
        productID = nil
        firmware = nil
    }

    public func matches(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16) -> Bool {
        vendorID == self.vendorID && (self.productID.map { $0 == productID } ?? true)
            && firmware.map { $0.contains(bcdDevice) } != false
    }

    public var description: String {
        let id = "\(hex4(vendorID)):\(productID.map(hex4) ?? "any product")"
        guard let f = firmware else { return id }
        if f.lowerBound == f.upperBound { return "\(id) bcdDevice \(hex4(f.lowerBound))" }
        if f.lowerBound == 0 { return "\(id) bcdDevice below \(hex4(f.upperBound &+ 1))" }
        return "\(id) bcdDevice \(hex4(f.lowerBound))–\(hex4(f.upperBound))"
    }
}

extension DeviceMatch {
    /// bcdDevice as vendors write a release: 0x0516 → "5.16" (KOBIL's "%X.%02X").
    public static func release(_ bcd: UInt16) -> String {
        let minor = String(bcd & 0xFF, radix: 16, uppercase: true)
        return "\(String(bcd >> 8, radix: 16, uppercase: true)).\(minor.count < 2 ? "0" + minor : minor)"
    }
}

func hex4(_ v: UInt16) -> String {
    let digits = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// What the driver does differently for a device: a small closed set. Each
/// case is carried out in one place of the driver (named beside it).
public enum QuirkBehaviour: Equatable, Sendable {
    /// Wait this long after opening before the first command (Reader.startUp).
    case openDelay(Duration)
    /// The open probes' short timeout is multiplied by this (Reader.startUp):
    /// the reader answers GetSlotStatus slowly.
    case slowSlotStatus(factor: Int)
    /// At T=1 the card may take this much longer than its ATR says, and the reader
    /// sends no time extension meanwhile: every T=1 APDU's deadline, and this
    /// device's cap on one exchange, grow by it (Reader.transmit).
    case longerT1WaitingTime(Duration)
    /// dwMaxCCIDMessageLength as the firmware really takes it (descriptor rewrite).
    case maxMessageLength(UInt32)
    /// The exchange level the driver uses instead of the descriptor's (descriptor rewrite).
    case exchangeLevel(ExchangeLevel)
    /// The reader has no usable PIN pad: no Secure, no PIN features (descriptor rewrite).
    case noPINPad
    /// Rates above this do not work, whatever the descriptor and GET_DATA_RATES say
    /// (descriptor rewrite, and listed rates cut in Reader.supportedDataRates).
    case maxDataRate(UInt32)
    /// Slots after the first run only these rates (bps at the default clock); the first
    /// runs what the descriptor says (Reader.wantedFiDi).
    case secondarySlotRates([UInt32])
    /// Never send S(IFS request): the reader behaves as if it negotiated IFSD itself (descriptor rewrite).
    case automaticIFSD
    /// Never send PPS; the card stays in its default protocol at Fi/Di 0x11 (Reader.selectProtocol).
    case noPPS
    /// The card's T=1 BWI and CWI are these, whatever its ATR says (the ATR as
    /// the driver reads it: SetParameters and the T=1 deadlines; Reader.powerOn).
    case t1WaitingIntegers(UInt8)
    /// A SetParameters the card is mute to (bError 0xFE) is given up: the card is
    /// reset twice and the protocol used as the reader set it from the ATR (Reader.selectProtocol).
    case resetInsteadOfParameters
    /// Power the card off before every power-up (Reader.powerOn).
    case powerOffBeforePowerOn
    /// A power-up failing with this bError means "EMV mode": send Escape 1F 01 (ISO mode) and retry once (Reader.powerOn).
    case isoModeEscape(onError: UInt8)
    /// Firmware below this bcdDevice is refused at open (Reader.startUp), unless the quirk is switched off.
    case firmwareRefused(firstGood: UInt16)
    /// PC_to_RDR_Secure's structure as this firmware accepts it (Reader.secure).
    case pinFrame(PINFrameRewrite)
    /// Wait this long before each PIN verification (Reader.secure).
    case delayBeforeVerify(Duration)
    /// At open, after a second, load the pad's display prompts in the user's
    /// language (`DisplayPrompts`, one Escape); a refusal is logged (Reader.startUp).
    case displayPrompts
    /// At open, ask the firmware what its descriptor cannot say with this Escape
    /// (Gemalto's GET_FIRMWARE_FEATURES); only an exact answer counts, and
    /// refines the PIN frame and properties (`GemaltoFirmwareFeatures`; Reader.startUp).
    case firmwareFeaturesEscape([UInt8])
    /// Before a verification whose APDU is a bare header (case 1) with no PIN
    /// block (bmPINBlockString 0), send this Escape: the firmware then appends
    /// the PIN as typed, with its length as Lc; the Secure follows with a new bSeq (Reader.secure).
    case escapeBeforeUnpaddedPIN([UInt8])
    /// PIN sizes and validation condition to report (IFDHControl's TLV and PIN properties).
    case pinProperties(PINProperties)
    /// Escape commands starting with one of these prefixes ([] for any) are
    /// allowed even where the escape option is off: the vendor's tools need them (IFDHControl).
    case escapeAllowed(prefixes: [[UInt8]])
    /// USB autosuspend stays off for this device: it fails after a resume (the udev
    /// rule, tools/make-udev-rules.py; the driver itself does nothing different).
    case noAutosuspend
    /// The driver answers the vendor's "reader information" APDUs itself (Reader.transmit).
    case readerInformation(ReaderInformation)
    /// The reader cannot tell whether a card is in: its status always says one is.
    /// A slot counts as holding a card until a power-up finds it mute, then as
    /// empty until the reader is opened again (Reader.powerOn, Reader.iccStatus).
    case presenceUnknown
}

/// The answers to KOBIL's reader-information APDUs (FF 9A 01 P2 00), for middleware that asks.
public struct ReaderInformation: Equatable, Sendable {
    public var manufacturer: String
    public var product: String
    public var firmwareDate: String
}

/// One entry of the quirk table: an id from our facts file, the devices, what
/// the driver does, and why.
public struct Quirk: Equatable, Sendable {
    /// The facts file's id ("T3"); several entries may share one (O1's firmware gate).
    public var id: String
    public var name: String
    public var devices: [DeviceMatch]
    public var behaviour: QuirkBehaviour
    public var reason: String
    /// For a defect of every device whose descriptor says this, whoever made it (`devices` empty).
    public var messageLength: UInt32?
    /// For a card's defect, in any reader: its ATR (`devices` empty).
    public var atr: [UInt8]?

    public init(_ id: String, _ name: String, _ devices: [DeviceMatch], _ behaviour: QuirkBehaviour, _ reason: String) {
        self.id = id
        self.name = name
        self.devices = devices
        self.behaviour = behaviour
        self.reason = reason
    }

    /// An entry for every device whose dwMaxCCIDMessageLength is `messageLength`.
    public init(_ id: String, _ name: String, messageLength: UInt32, _ behaviour: QuirkBehaviour, _ reason: String) {
        self.init(id, name, [], behaviour, reason)
        self.messageLength = messageLength
    }

    /// An entry for a card with this ATR, in any reader.
    public init(_ id: String, _ name: String, atr: [UInt8], _ behaviour: QuirkBehaviour, _ reason: String) {
        self.init(id, name, [], behaviour, reason)
        self.atr = atr
    }

    /// `messageLength`: the descriptor's dwMaxCCIDMessageLength, where known. A card's entry applies to no device.
    public func applies(vendorID: UInt16, productID: UInt16, bcdDevice: UInt16, messageLength: UInt32? = nil) -> Bool {
        if atr != nil { return false }
        if let wanted = self.messageLength { return messageLength == wanted }
        return devices.contains { $0.matches(vendorID: vendorID, productID: productID, bcdDevice: bcdDevice) }
    }
}

extension ReaderInformation {
    /// The answer to FF 9A 01 P2 00 (P2: 01 manufacturer, 03 product, 06
    /// firmware release from bcdDevice, 07 firmware date), each with 90 00;
    /// nil for any other APDU, which goes to the reader.
    public func answer(to apdu: [UInt8], bcdDevice: UInt16) -> [UInt8]? {
        guard apdu.count == 5, apdu[0] == 0xFF, apdu[1] == 0x9A, apdu[2] == 0x01, apdu[4] == 0x00 else { return nil }
        let text: String
        switch apdu[3] {
        case 0x01: text = manufacturer
        case 0x03: text = product
        case 0x06: text = DeviceMatch.release(bcdDevice)
        case 0x07: text = firmwareDate
        default: return nil
        }
        return Array(text.utf8) + [0x90, 0x00]
    }
}
