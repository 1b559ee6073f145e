import CCID

/// What a simulated reader looks like on the bus: identity, strings and the
/// CCID class descriptor of a real reader (data/ccid-readers).
public struct ReaderProfile: Equatable, Sendable {
    public var name: String
    public var vendorID: UInt16
    public var productID: UInt16
    public var bcdDevice: UInt16
    public var manufacturer: String
    public var product: String
    public var descriptor: ClassDescriptor
    /// What the modelled reader is, for `ccid-sim profiles`.
    public var summary: String
    /// Interface class, interrupt endpoint, descriptor placement, a composite token's HID interfaces.
    public var usbLayout = USBDescriptorSet.Layout()
    /// A contactless reader: its firmware answers PC/SC Part 3 pseudo-APDUs (FF CA: the card's UID).
    public var contactless = false
    /// What this firmware gets wrong (the defects drivers carry quirks for).
    public var firmwareBugs = FirmwareBugs()

    public init(name: String, vendorID: UInt16, productID: UInt16, bcdDevice: UInt16 = 0x0100,
                manufacturer: String, product: String, descriptor: ClassDescriptor, summary: String) {
        self.name = name
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.manufacturer = manufacturer
        self.product = product
        self.descriptor = descriptor
        self.summary = summary
    }

    /// The level word profile names carry, so a name says how the reader exchanges.
    public static func levelWord(_ level: ExchangeLevel) -> String {
        switch level {
        case .character: "char"
        case .tpdu: "tpdu"
        case .shortAPDU: "short"
        case .extendedAPDU: "extended"
        case .unknown: "unknown"
        }
    }

    private static func builtIn(_ name: String, _ vid: UInt16, _ pid: UInt16, _ manufacturer: String, _ product: String,
                                _ hex: String, _ summary: String, layout: USBDescriptorSet.Layout = .init(),
                                contactless: Bool = false, firmwareBugs: [String] = []) -> ReaderProfile? {
        guard let bytes = bytesFromHex(hex), let d = try? ClassDescriptor(decoding: bytes) else { return nil }
        var p = ReaderProfile(name: name, vendorID: vid, productID: pid, manufacturer: manufacturer, product: product,
                              descriptor: d, summary: summary)
        p.usbLayout = layout
        p.contactless = contactless
        for bug in firmwareBugs { guard p.firmwareBugs.apply(bug) else { return nil } }
        return p
    }

    /// Built-in profiles, modelled on real readers' descriptors; the first is the default.
    public static let builtIns: [ReaderProfile] = [
        builtIn("omnikey-3121-extended", 0x076B, 0x3031, "HID Global", "OMNIKEY 3x21 Smart Card Reader",
                "36211001000703000000c0120000c012000001002a0000e74c06006afe0000000700000000000000ba0704000f010000ffff00000001",
                "HID OMNIKEY 3x21: 1 slot, extended APDU, 271-byte messages (chained extended APDUs)"),
        builtIn("cherry-st-short", 0x046A, 0x0090, "Cherry", "Smart Card Reader USB",
                "36210001000703000000c0120000401f000004002a0000e74c06006afe0000000700000000000000b20702000f010000ffff00000001",
                "Cherry Smart Card Reader USB: 1 slot, short APDU only"),
        builtIn("ezio-pinpad-extended", 0x08E6, 0x34C2, "Gemalto", "Ezio Shield",
                "36211001000303000000a00f0000a00f000000002a000020a1070000fe0000000000000000000000b20404000f010000000011020301",
                "Gemalto Ezio Shield PIN pad: 1 slot, extended APDU, PIN verify and modify, 2x17 LCD; like every Gemalto "
                + "reader it reads three bMsgIndex bytes in a modification", firmwareBugs: ["pin-modify-3-indexes"]),
        builtIn("acr1281u-3slot-extended", 0x072F, 0x2224, "ACS", "ACR1281U",
                "36210001020703000000c0120000c01200000067320000e74c060000000200000000000000000000ba0404000a020000000000000001",
                "ACS ACR1281U: 3 slots, extended APDU, 522-byte messages"),
        builtIn("springcard-e518-2slot-extended", 0x1C34, 0x6112, "SpringCard", "E518",
                "36211001010703000000a00f0000a00f000000002a0000900d030000fe00000000000000000000007e04040012000100ffff00000005",
                "SpringCard E518: 2 slots, extended APDU, 65554-byte messages (no chaining needed)"),
        builtIn("gemalto-ct30-tpdu", 0x08E6, 0x3437, "Gemalto", "USB SmartCard Reader",
                "36210101000703000000c0120000c01200000067320000ce990c0035fe0000000000000000000000300201000f010000000000000001",
                "Gemalto IDBridge CT30: 1 slot, TPDU, IFSD 254, driver negotiates IFSD"),
        builtIn("acr38u-tpdu", 0x072F, 0x90CC, "ACS", "ACR38 USB Reader",
                "36210001000103000000a00f0000a00f000000002a000008f8010000fe0000000000000000000000300001000f010000000000000001",
                "ACS ACR38U: 1 slot, TPDU, 5 V only, 271-byte messages"),
        builtIn("o2micro-oz776-char", 0x0B97, 0x7762, "O2Micro", "O2Micro CCID SC Reader",
                "36210001000303000000a00f0000a00f0000008025000000b0040000fe0000000000000000000000300000000f010000000000000001",
                "O2Micro Oz776S: 1 slot, character level: the driver reads T=0 procedure bytes and T=1 blocks"),
        builtIn("yubikey-neo-composite-extended", 0x1050, 0x0116, "Yubico", "Yubikey NEO OTP+U2F+CCID",
                "36210001000702000000a00f0000a00f00000000b0040000b0040000780500000000000000000000fe00040078050000ffff00000001",
                "Yubico YubiKey NEO OTP+U2F+CCID: a composite token, CCID on interface 2 after two HID interfaces",
                layout: .init(hidInterfacesBefore: 2)),
        builtIn("omnikey-5022-contactless-extended", 0x076B, 0x5022, "HID Global", "OMNIKEY 5022 Smart Card Reader",
                "36211001000703000000c0120000c01200000067320000cf990c0000fe0000000000000000000000ba04040008020000ffff00000001",
                "HID OMNIKEY 5022 CL: contactless, extended APDU, its firmware answers FF CA (the card's UID)", contactless: true),
        builtIn("egate-iccd-a-char", 0x0973, 0x0003, "SchlumbergerSema", "SchlumbergerSema Cyberflex Access",
                "36211001000101000000fc0d0000fc0d0000008025000080250000000000000000000000000000004008000000010000ffff00000001",
                "SchlumbergerSema e-gate: a USB ICCD version A token (control pipe only, T=0 through a status byte)",
                layout: .init(interruptEndpoint: false, iccd: .a)),
        builtIn("gemalto-pdt-iccd-b-short", 0x08E6, 0x1227, "Gemalto", "PDT",
                "36211001000102000000fc0d0000fc0d000000802500008025000000fe00000000000000000000004008020005010000ffff00000001",
                "Gemalto PDT: a USB ICCD version B token (control pipe only, T=1, APDUs chained, busy answers say when to poll)",
                layout: .init(interruptEndpoint: false, iccd: .b)),
    ].compactMap { $0 }

    public static func named(_ name: String) -> ReaderProfile? { builtIns.first { $0.name == name } }
    public static var defaultProfile: ReaderProfile? { builtIns.first }

    /// A profile from any 54-byte class descriptor (e.g. from descriptors.json).
    public static func custom(name: String, vendorID: UInt16, productID: UInt16, manufacturer: String, product: String,
                              descriptorHex: String) throws(ProfileError) -> ReaderProfile {
        guard let bytes = bytesFromHex(descriptorHex) else { throw .badHex(descriptorHex) }
        let d: ClassDescriptor
        do throws(ClassDescriptorError) { d = try ClassDescriptor(decoding: bytes) } catch { throw .badDescriptor(error) }
        return ReaderProfile(name: name, vendorID: vendorID, productID: productID, manufacturer: manufacturer,
                             product: product, descriptor: d, summary: "from a descriptor file")
    }
}

public enum ProfileError: Error, CustomStringConvertible {
    case badHex(String)
    case badDescriptor(ClassDescriptorError)
    case unknown(String)

    public var description: String {
        switch self {
        case .badHex(let h): "descriptor '\(h.prefix(40))' is not hex"
        case .badDescriptor(let e): "\(e)"
        case .unknown(let n): "no built-in profile '\(n)' (see `ccid-sim profiles`)"
        }
    }
}
