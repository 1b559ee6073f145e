import ArgumentParser
import Foundation
import SimulatorCore

/// The --config file: {"readers": [ {reader}, … ]}, where a reader is
///   {"profile": "NAME", "cards": ["compliance", null, …]}
/// or a descriptor of any real reader:
///   {"descriptor": "3621…" (54 bytes hex), "vendorID": "0x072F", "productID": "0x90CC",
///    "manufacturer": "…", "product": "…", "cards": […]}
///   {"descriptorFile": "descriptors.json", "entry": "ACR38U-CCID.txt", "cards": […]}
/// A file in descriptors.json form (an array of entries) names its reader by `entry`.
/// Any reader may also say how it sits on USB: "interfaceClass": 255 (vendor
/// class), "interruptEndpoint": false, "descriptorAfterEndpoints": true.
enum SimulatorConfig {
    static func load(path: String) throws -> [ReaderSetup] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let readers = root["readers"] as? [[String: Any]], !readers.isEmpty else {
            throw ValidationError("\(path): expected {\"readers\": [ … ]} with at least one reader")
        }
        let base = (path as NSString).deletingLastPathComponent
        return try readers.enumerated().map { i, r in
            let cards = (r["cards"] as? [Any] ?? [CardCatalog.defaultCard]).map { $0 as? String }
            var p = try profile(r, index: i, base: base)
            if let c = r["interfaceClass"] as? Int {
                guard c == 0x0B || c == 0xFF else { throw ValidationError("reader \(i): interfaceClass is 11 (0x0B) or 255 (0xFF)") }
                p.usbLayout.interfaceClass = UInt8(c)
            }
            if let e = r["interruptEndpoint"] as? Bool { p.usbLayout.interruptEndpoint = e }
            if let a = r["descriptorAfterEndpoints"] as? Bool { p.usbLayout.descriptorAfterEndpoints = a }
            guard p.descriptor.exchangeLevel != .unknown else {
                throw ValidationError("reader \(i): dwFeatures declares no known exchange level")
            }
            return ReaderSetup(profile: p, cards: cards)
        }
    }

    static func profile(_ r: [String: Any], index: Int, base: String) throws -> ReaderProfile {
        if let name = r["profile"] as? String {
            guard let p = ReaderProfile.named(name) else { throw ValidationError("reader \(index): no built-in profile '\(name)'") }
            return p
        }
        var fields = r
        if let file = r["descriptorFile"] as? String {
            let full = file.hasPrefix("/") ? file : "\(base)/\(file)"
            guard let data = FileManager.default.contents(atPath: full) else { throw ValidationError("reader \(index): cannot read \(full)") }
            if let entries = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] {
                guard let wanted = r["entry"] as? String, let e = entries.first(where: { $0["file"] as? String == wanted }) else {
                    throw ValidationError("reader \(index): \(full) is a list; name its reader with \"entry\"")
                }
                fields["descriptor"] = e["descriptor_hex"]
                fields["vendorID"] = fields["vendorID"] ?? e["idVendor"]
                fields["productID"] = fields["productID"] ?? e["idProduct"]
                fields["product"] = fields["product"] ?? e["iProduct"]
            } else {
                fields["descriptor"] = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        guard let hex = fields["descriptor"] as? String else {
            throw ValidationError("reader \(index): give \"profile\", \"descriptor\" or \"descriptorFile\"")
        }
        func id(_ key: String) -> UInt16 {
            guard let s = fields[key] as? String else { return 0 }
            return UInt16(s.hasPrefix("0x") ? String(s.dropFirst(2)) : s, radix: 16) ?? 0
        }
        do {
            return try ReaderProfile.custom(name: "custom-\(index)", vendorID: id("vendorID"), productID: id("productID"),
                                            manufacturer: fields["manufacturer"] as? String ?? "Simulated",
                                            product: fields["product"] as? String ?? "CCID Reader", descriptorHex: hex)
        } catch {
            throw ValidationError("reader \(index): \(error)")
        }
    }
}
