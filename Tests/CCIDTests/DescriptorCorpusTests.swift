import Foundation
import Testing
@testable import CCID

/// The 773 real readers of data/ccid-readers: every class
/// descriptor parses, re-encodes to the same bytes, and decodes to what the
/// text dump beside it says.
struct DescriptorCorpusTests {
    static let corpus: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("data/ccid-readers")

    struct Entry { let file: String; let hex: String }

    static func entries() throws -> [Entry] {
        let data = try Data(contentsOf: corpus.appendingPathComponent("descriptors.json"))
        let list = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        return list.compactMap { e in
            guard let f = e["file"] as? String, let h = e["descriptor_hex"] as? String else { return nil }
            return Entry(file: f, hex: h)
        }
    }

    /// One "CCID Class Descriptor" block of a text dump: "key: value" and the lines under each key.
    struct DumpBlock {
        var values: [String: String] = [:]
        var details: [String: [String]] = [:]
    }

    static func blocks(_ text: String) -> [DumpBlock] {
        var blocks: [DumpBlock] = []
        var current: DumpBlock? = nil
        var lastKey = ""
        // Some dumps have CRLF line ends, which Swift reads as one Character.
        for line in text.split(whereSeparator: \.isNewline).map(String.init) {
            if line.trimmingCharacters(in: .whitespaces) == "CCID Class Descriptor" {
                if let c = current { blocks.append(c) }
                current = DumpBlock()
                continue
            }
            guard current != nil else { continue }
            if line.hasPrefix("   ") {
                current?.details[lastKey, default: []].append(line.trimmingCharacters(in: .whitespaces))
            } else if line.hasPrefix("  "), let colon = line.firstIndex(of: ":") {
                lastKey = line[..<colon].trimmingCharacters(in: .whitespaces)
                current?.values[lastKey] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            } else if line.hasPrefix(" ") {
                // A one-space field (" idVendor: …") starts the next interface.
                if let c = current { blocks.append(c) }
                current = nil
            }
            // Unindented lines are wrapped text of the line before (one dump wraps "params").
        }
        if let c = current { blocks.append(c) }
        return blocks
    }

    static func number(_ text: String?) -> UInt64? {
        guard let first = text?.split(separator: " ").first else { return nil }
        if first.hasPrefix("0x") { return UInt64(first.dropFirst(2), radix: 16) }
        return UInt64(first)
    }

    @Test func everyDescriptorParsesAndRoundTrips() throws {
        let entries = try Self.entries()
        #expect(entries.count == 773)
        for e in entries {
            let bytes = try #require(bytesFromHex(e.hex), "\(e.file)")
            let d = try ClassDescriptor(decoding: bytes)
            #expect(d.encoded() == bytes, "\(e.file)")
        }
    }

    @Test func decodedValuesAgreeWithTheTextDumps() throws {
        var seen: [String: Int] = [:]
        var compared = 0
        for e in try Self.entries() {
            let text = try String(contentsOf: Self.corpus.appendingPathComponent("txt/\(e.file)"), encoding: .utf8)
            let index = seen[e.file, default: 0]
            seen[e.file] = index + 1
            let blocks = Self.blocks(text)
            let block = try #require(blocks.indices.contains(index) ? blocks[index] : nil, "\(e.file) block \(index)")
            let raw = try #require(bytesFromHex(e.hex))
            let d = try ClassDescriptor(decoding: raw)
            let v = block.values
            let ctx = "\(e.file)#\(index)"

            let bcdText = try #require(v["bcdCCID"])
            let bcd = bcdText.split(separator: ".")
            // The dumps print the major version in decimal and the minor in hex ("10.01" is 0x0A01).
            #expect(d.bcdCCID == UInt16(bcd[0])! << 8 | UInt16(bcd[1], radix: 16)!, "\(ctx) bcdCCID")
            #expect(UInt64(d.maxSlotIndex) == Self.number(v["bMaxSlotIndex"]), "\(ctx)")
            #expect(UInt64(d.voltageSupport.rawValue) == Self.number(v["bVoltageSupport"]), "\(ctx)")
            let voltages = Set(block.details["bVoltageSupport"] ?? [])
            #expect(voltages.contains("5.0V") == d.voltageSupport.contains(.v5), "\(ctx) 5V")
            #expect(voltages.contains("3.0V") == d.voltageSupport.contains(.v3), "\(ctx) 3V")
            #expect(voltages.contains("1.8V") == d.voltageSupport.contains(.v1_8), "\(ctx) 1.8V")

            let protocolText = try #require(v["dwProtocols"])
            let words = protocolText.split(separator: " ").compactMap { UInt32($0.dropFirst(2), radix: 16) }
            #expect(words.count == 2 && d.protocols.rawValue == words[0] << 16 | words[1], "\(ctx) dwProtocols")
            let protocols = Set(block.details["dwProtocols"] ?? [])
            #expect(protocols.contains("T=0") == d.protocols.contains(.t0), "\(ctx) T=0")
            #expect(protocols.contains("T=1") == d.protocols.contains(.t1), "\(ctx) T=1")

            for (key, kHz) in [("dwDefaultClock", d.defaultClock), ("dwMaximumClock", d.maximumClock)] {
                let clockText = try #require(v[key])
                let mhz = try #require(Double(clockText.split(separator: " ")[0]), "\(ctx) \(key)")
                #expect(UInt32((mhz * 1000).rounded()) == kHz, "\(ctx) \(key)")
            }
            #expect(UInt64(d.numClockSupported) == Self.number(v["bNumClockSupported"]), "\(ctx)")
            #expect(UInt64(d.dataRate) == Self.number(v["dwDataRate"]), "\(ctx)")
            #expect(UInt64(d.maxDataRate) == Self.number(v["dwMaxDataRate"]), "\(ctx)")
            #expect(UInt64(d.numDataRatesSupported) == Self.number(v["bNumDataRatesSupported"]), "\(ctx)")
            #expect(UInt64(d.maxIFSD) == Self.number(v["dwMaxIFSD"]), "\(ctx)")
            #expect(UInt64(d.synchProtocols) == Self.number(v["dwSynchProtocols"]), "\(ctx)")
            #expect(UInt64(d.mechanical.rawValue) == Self.number(v["dwMechanical"]), "\(ctx)")
            #expect(UInt64(d.features.rawValue) == Self.number(v["dwFeatures"]), "\(ctx)")
            #expect(UInt64(d.maxCCIDMessageLength) == Self.number(v["dwMaxCCIDMessageLength"]), "\(ctx)")
            #expect(UInt64(d.classGetResponse) == Self.number(v["bClassGetResponse"]), "\(ctx)")
            #expect(UInt64(d.classEnvelope) == Self.number(v["bClassEnvelope"]), "\(ctx)")
            #expect(UInt64(d.lcdLayout) == Self.number(v["wLcdLayout"]), "\(ctx)")
            #expect(UInt64(d.pinSupport.rawValue) == Self.number(v["bPINSupport"]), "\(ctx)")
            #expect(UInt64(d.maxCCIDBusySlots) == Self.number(v["bMaxCCIDBusySlots"]), "\(ctx)")

            // The decoded feature lines: exchange level and automatic behaviours.
            let features = (block.details["dwFeatures"] ?? []).map { $0.trimmingCharacters(in: .whitespaces) }
            let levelText: String = switch d.exchangeLevel {
            case .character: "Character level exchange"
            case .tpdu: "TPDU level exchange"
            case .shortAPDU: "Short APDU level exchange"
            case .extendedAPDU: "Short and Extended APDU level exchange"
            case .unknown: "?"
            }
            #expect(features.contains { $0.hasSuffix(levelText) || $0 == levelText }, "\(ctx) level \(d.exchangeLevel)")
            // Matched by wording: older dumps omit the "....02" bit prefixes.
            let named: [(String, ClassDescriptor.Features)] = [
                ("Automatic parameter configuration based on ATR", .automaticParameterConfigurationFromATR),
                ("Automatic activation of ICC on inserting", .automaticActivationOnInsert),
                ("Automatic ICC voltage selection", .automaticVoltageSelection),
                ("Automatic ICC clock frequency change", .automaticClockChange),
                ("Automatic baud rate change", .automaticBaudRateChange),
                ("Automatic parameters negotiation", .automaticParameterNegotiation),
                ("Automatic PPS", .automaticPPS),
            ]
            for (wording, flag) in named {
                #expect(features.contains { $0.contains(wording) } == d.features.contains(flag), "\(ctx) \(wording)")
            }
            let pin = block.details["bPINSupport"] ?? []
            #expect(pin.contains("PIN Verification supported") == d.pinSupport.contains(.verification), "\(ctx) PIN verify")
            #expect(pin.contains("PIN Modification supported") == d.pinSupport.contains(.modification), "\(ctx) PIN modify")
            compared += 1
        }
        #expect(compared == 773)
    }

    @Test func corpusMixMatchesTheReadme() throws {
        var levels: [ExchangeLevel: Int] = [:]
        var multiSlot = 0, pinPads = 0
        for e in try Self.entries() {
            let raw = try #require(bytesFromHex(e.hex))
            let d = try ClassDescriptor(decoding: raw)
            levels[d.exchangeLevel, default: 0] += 1
            if d.slotCount > 1 { multiSlot += 1 }
            if !d.pinSupport.isEmpty { pinPads += 1 }
        }
        #expect(levels[.tpdu] == 278 && levels[.shortAPDU] == 194 && levels[.extendedAPDU] == 295 && levels[.character] == 6)
        #expect(multiSlot == 49)
        #expect(pinPads == 98)
    }

    @Test func malformedDescriptorsAreTypedErrors() {
        #expect(throws: ClassDescriptorError.wrongLength(53)) { try ClassDescriptor(decoding: [UInt8](repeating: 0x36, count: 53)) }
        var bytes = [UInt8](repeating: 0, count: 54)
        bytes[0] = 54
        bytes[1] = 0x04
        #expect(throws: ClassDescriptorError.wrongType(0x04)) { try ClassDescriptor(decoding: bytes) }
    }
}
