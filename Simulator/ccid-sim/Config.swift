import ArgumentParser
import Foundation
import SimulatorCore

/// The --config file: {"readers": [ {reader}, … ]}, where a reader is
///   {"profile": "NAME", "cards": ["compliance", null, "vpcd:35963", …]}
/// or a descriptor of any real reader:
///   {"descriptor": "3621…" (54 bytes hex), "vendorID": "0x072F", "productID": "0x90CC",
///    "manufacturer": "…", "product": "…", "cards": […]}
///   {"descriptorFile": "descriptors.json", "entry": "ACR38U-CCID.txt", "cards": […]}
/// A file in descriptors.json form (an array of entries) names its reader by `entry`.
/// Any reader may also say how it sits on USB: "interfaceClass": 255 (vendor
/// class), "interruptEndpoint": false, "descriptorAfterEndpoints": true; a
/// composite token's HID interfaces, "hidInterfacesBefore": 2 (the CCID one
/// then is interface 2), "hidInterfacesAfter": 1; "contactless": true for
/// a reader whose firmware answers FF CA (the card's UID); and its firmware
/// release, "bcdDevice": "0x0525"; and what its firmware gets wrong,
/// "firmwareBugs": ["slow-status=350", "emv-mode"] (`FirmwareBugs.table`).
/// An ICCD token, "iccd": "A" or "B": bInterfaceProtocol 1 or 2, no bulk
/// endpoints, class requests on the control pipe (no interrupt endpoint
/// either unless "interruptEndpoint": true).
struct SimulatorConfig: Decodable {
    var readers: [Reader]

    struct Reader: Decodable {
        var profile: String?
        var descriptor: String?
        var descriptorFile: String?
        var entry: String?
        var vendorID: String?
        var productID: String?
        var manufacturer: String?
        var product: String?
        /// The firmware release, "0x0525" (a driver may treat firmware versions apart).
        var bcdDevice: String?
        /// Per slot; null is an empty slot. Missing: the default card in slot 0.
        var cards: [CardSpec?]?
        var interfaceClass: Int?
        var interruptEndpoint: Bool?
        var descriptorAfterEndpoints: Bool?
        var hidInterfacesBefore: Int?
        var hidInterfacesAfter: Int?
        var contactless: Bool?
        var firmwareBugs: [String]?
        var iccd: String?
    }

    /// One entry of a descriptors.json file (the corpus's form).
    struct CorpusEntry: Decodable {
        var file: String
        var descriptorHex: String
        var idVendor: String?
        var idProduct: String?
        var iProduct: String?
        enum CodingKeys: String, CodingKey {
            case file, idVendor, idProduct, iProduct
            case descriptorHex = "descriptor_hex"
        }
    }

    static func load(path: String) throws -> [ReaderSetup] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        let config: SimulatorConfig
        do { config = try JSONDecoder().decode(SimulatorConfig.self, from: data) } catch {
            throw ValidationError("\(path): \(Self.explain(error))")
        }
        // No reader is fine: `plug` adds them later, and `pcscd --reader-conf` may bring pcscd's own (a benchmark's floor).
        let base = (path as NSString).deletingLastPathComponent
        return try config.readers.enumerated().map { i, r in
            var p = try profile(r, index: i, base: base)
            if let c = r.interfaceClass {
                guard c == 0x0B || c == 0xFF else { throw ValidationError("reader \(i): interfaceClass is 11 (0x0B) or 255 (0xFF)") }
                p.usbLayout.interfaceClass = UInt8(c)
            }
            if let v = r.iccd {
                switch v.uppercased() {
                case "A": p.usbLayout.iccd = .a
                case "B": p.usbLayout.iccd = .b
                default: throw ValidationError("reader \(i): iccd is \"A\" or \"B\"")
                }
                p.usbLayout.interruptEndpoint = false
            }
            if let e = r.interruptEndpoint { p.usbLayout.interruptEndpoint = e }
            if let a = r.descriptorAfterEndpoints { p.usbLayout.descriptorAfterEndpoints = a }
            for (key, value) in [("hidInterfacesBefore", r.hidInterfacesBefore), ("hidInterfacesAfter", r.hidInterfacesAfter)] {
                guard let n = value else { continue }
                guard (0...3).contains(n) else { throw ValidationError("reader \(i): \(key) is 0 to 3") }
                if key == "hidInterfacesBefore" { p.usbLayout.hidInterfacesBefore = UInt8(n) } else { p.usbLayout.hidInterfacesAfter = UInt8(n) }
            }
            if let c = r.contactless { p.contactless = c }
            for bug in r.firmwareBugs ?? [] {
                guard p.firmwareBugs.apply(bug) else {
                    throw ValidationError("reader \(i): firmware bug '\(bug)' is not one of:\n\(FirmwareBugs.help)")
                }
            }
            if let text = r.bcdDevice {
                let digits = text.hasPrefix("0x") ? String(text.dropFirst(2)) : text
                guard let v = UInt16(digits, radix: 16) else { throw ValidationError("reader \(i): bcdDevice is hex, as \"0x0525\"") }
                p.bcdDevice = v
            }
            guard p.descriptor.exchangeLevel != .unknown else {
                throw ValidationError("reader \(i): dwFeatures declares no known exchange level")
            }
            return ReaderSetup(profile: p, cards: r.cards ?? [.defaultCard])
        }
    }

    static func profile(_ r: Reader, index: Int, base: String) throws -> ReaderProfile {
        if let name = r.profile {
            guard let p = ReaderProfile.named(name) else { throw ValidationError("reader \(index): no built-in profile '\(name)'") }
            return p
        }
        var r = r
        if let file = r.descriptorFile {
            let full = file.hasPrefix("/") ? file : "\(base)/\(file)"
            guard let data = FileManager.default.contents(atPath: full) else { throw ValidationError("reader \(index): cannot read \(full)") }
            if let entries = try? JSONDecoder().decode([CorpusEntry].self, from: data) {
                guard let wanted = r.entry, let e = entries.first(where: { $0.file == wanted }) else {
                    throw ValidationError("reader \(index): \(full) is a list; name its reader with \"entry\"")
                }
                r.descriptor = e.descriptorHex
                r.vendorID = r.vendorID ?? e.idVendor
                r.productID = r.productID ?? e.idProduct
                r.product = r.product ?? e.iProduct
            } else {
                r.descriptor = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        guard let hex = r.descriptor else {
            throw ValidationError("reader \(index): give \"profile\", \"descriptor\" or \"descriptorFile\"")
        }
        func id(_ s: String?) -> UInt16 {
            guard let s else { return 0 }
            return UInt16(s.hasPrefix("0x") ? String(s.dropFirst(2)) : s, radix: 16) ?? 0
        }
        do {
            return try ReaderProfile.custom(name: "custom-\(index)", vendorID: id(r.vendorID), productID: id(r.productID),
                                            manufacturer: r.manufacturer ?? "Simulated",
                                            product: r.product ?? "CCID Reader", descriptorHex: hex)
        } catch {
            throw ValidationError("reader \(index): \(error)")
        }
    }

    /// A decoding error as a line a user can act on: where, and what was wrong.
    static func explain(_ error: Error) -> String {
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error as? DecodingError {
        case .dataCorrupted(let c)?:
            return c.codingPath.isEmpty ? "not JSON (\(c.debugDescription))" : "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let key, let c)?: return "\(path(c.codingPath)): missing \"\(key.stringValue)\""
        case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?: return "\(path(c.codingPath)): \(c.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
