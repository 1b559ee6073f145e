import Foundation
import Testing
@testable import CCID
@testable import CCIDDriver
@testable import ReaderQuirks
@testable import SimulatorCore

/// The quirk table as data: every entry reachable (its VID:PID in the bundle's
/// reader list), firmware ranges that mean what they say, descriptor rewrites,
/// switching off. Each quirk's effect through pcscd: tests/test_quirks.py.
@Suite struct QuirkTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func listed() throws -> Set<String> {
        let text = try String(contentsOf: root.appendingPathComponent("bundle/readers.txt"), encoding: .utf8)
        return Set(text.split(separator: "\n").filter { $0.hasPrefix("0x") }.map { line in
            line.split(separator: ":").prefix(2).map { $0.dropFirst(2).uppercased() }.joined(separator: ":")
        })
    }

    @Test func everyDeviceOfTheTableIsListedForPcscd() throws {
        let listed = try Self.listed()
        for q in QuirkTable.entries {
            for d in q.devices {
                guard let pid = d.productID else { continue }   // a vendor's every product (P3)
                #expect(listed.contains("\(hex4(d.vendorID)):\(hex4(pid))"), "\(q.id) \(d)")
            }
        }
    }

    /// O7 lives in the udev rule: the rule's exceptions are the table's devices.
    @Test func udevRuleKeepsAutosuspendOffForTheTablesDevices() throws {
        let rules = try String(contentsOf: Self.root.appendingPathComponent("udev/60-swiftccid.rules"), encoding: .utf8)
        func value(_ key: String, in line: Substring) -> String? {
            guard let start = line.range(of: key + "==\"") else { return nil }
            return line[start.upperBound...].prefix(while: { $0 != "\"" }).uppercased()
        }
        let excepted = rules.split(separator: "\n").filter { $0.hasSuffix("ENV{SWIFTCCID_NO_AUTOSUSPEND}=\"1\"") }
            .compactMap { line in value("ATTR{idVendor}", in: line).flatMap { v in value("ATTR{idProduct}", in: line).map { "\(v):\($0)" } } }
        let table = QuirkTable.entries.filter { $0.behaviour == .noAutosuspend }.flatMap(\.devices)
            .map { "\(hex4($0.vendorID)):\($0.productID.map(hex4) ?? "")" }
        #expect(Set(excepted) == Set(table) && !table.isEmpty)
        let persist = try #require(rules.range(of: "ATTR{power/persist}=\"0\""))
        let autosuspend = try #require(rules.range(of: "ATTR{power/control}=\"auto\""))
        #expect(persist.lowerBound < autosuspend.lowerBound)
    }

    @Test func entriesAreWellFormed() {
        // The ids of the facts we collected (device quirks' rows; D10 is two entries here).
        let rows: [(String, ClosedRange<Int>)] = [("T", 1...5), ("D", 1...13), ("U", 1...3), ("P", 1...16), ("R", 1...4),
                                                   ("W", 1...2), ("M", 1...6), ("O", 1...8)]
        let known = Set(rows.flatMap { p, r in r.map { "\(p)\($0)" } } + ["D10a", "D10b"])
        for q in QuirkTable.entries {
            #expect(known.contains(q.id), "\(q.id)")
            #expect((!q.devices.isEmpty || q.messageLength != nil || q.atr != nil) && !q.reason.isEmpty && !q.name.isEmpty, "\(q.id)")
        }
        // One firmware-gate entry per device: the first good release is unambiguous.
        let gates = QuirkTable.entries.filter { $0.id == "O1" }.flatMap(\.devices).map { "\($0.vendorID):\($0.productID ?? 0)" }
        #expect(gates.count == 17 && Set(gates).count == 17)
    }

    @Test func presenceQuirkIsBoundToFirmwareBefore2() {
        #expect(AppliedQuirks(vendorID: 0x08E6, productID: 0x3480, bcdDevice: 0x0100).presenceUnknown)
        #expect(AppliedQuirks(vendorID: 0x08E6, productID: 0x3480, bcdDevice: 0x01FF).presenceUnknown)
        #expect(!AppliedQuirks(vendorID: 0x08E6, productID: 0x3480, bcdDevice: 0x0200).presenceUnknown)
        #expect(!AppliedQuirks(vendorID: 0x08E6, productID: 0x3479, bcdDevice: 0x0100).presenceUnknown)
        #expect(!AppliedQuirks(vendorID: 0x08E6, productID: 0x3480, bcdDevice: 0x0100, off: ["m6"]).presenceUnknown)
    }

    @Test func firmwareGateRefusesBelowTheFirstGoodRelease() {
        for q in QuirkTable.entries {
            guard case .firmwareRefused(let firstGood) = q.behaviour, let d = q.devices.first, let pid = d.productID else { continue }
            let old = AppliedQuirks(vendorID: d.vendorID, productID: pid, bcdDevice: firstGood - 1)
            let good = AppliedQuirks(vendorID: d.vendorID, productID: pid, bcdDevice: firstGood)
            #expect(old.refusal?.id == "O1", "\(d)")
            #expect(good.refusal == nil, "\(d)")
            #expect(AppliedQuirks(vendorID: d.vendorID, productID: pid, bcdDevice: 0, off: ["o1"]).refusal == nil)
        }
    }

    @Test func descriptorRewrites() throws {
        func identity(_ vid: UInt16, _ pid: UInt16, _ bcd: UInt16, features: UInt32, pin: UInt8 = 0) throws -> DeviceIdentity {
            var d = try #require(ReaderProfile.defaultProfile).descriptor
            d.features = .init(rawValue: features)
            d.pinSupport = .init(rawValue: pin)
            return DeviceIdentity(vendorID: vid, productID: pid, bcdDevice: bcd, manufacturer: "", product: "", serialNumber: "",
                                  interfaceNumber: 0, classDescriptor: d,
                                  endpoints: CCIDEndpoints(bulkOut: 1, bulkIn: 0x82, interruptIn: 0x83, bulkInPacketSize: 64))
        }
        // D9: extended → short. D10a + D10b: PIN support cleared, short → extended.
        let tribank = try identity(0x0D46, 0x3010, 0x0040, features: 0x000406BA, pin: 3)
        #expect(AppliedQuirks(for: tribank).adjusted(tribank).classDescriptor.exchangeLevel == .shortAPDU)
        #expect(AppliedQuirks(for: tribank, off: ["D9"]).adjusted(tribank) == tribank)
        let aviator = try identity(0x076B, 0x3A21, 0x0103, features: 0x000207B8, pin: 3)
        let fixed = AppliedQuirks(for: aviator).adjusted(aviator).classDescriptor
        #expect(fixed.exchangeLevel == .extendedAPDU && fixed.pinSupport.isEmpty)
        #expect(fixed.features.rawValue & ~ClassDescriptor.Features.exchangeLevelMask == 0x07B8)
        let onlyPIN = AppliedQuirks(for: aviator, off: ["D10B"]).adjusted(aviator).classDescriptor
        #expect(onlyPIN.exchangeLevel == .shortAPDU && onlyPIN.pinSupport.isEmpty)
        // D12 and R2 are bound to firmware releases.
        for (bcd, level) in [(UInt16(0x0100), ExchangeLevel.extendedAPDU), (0x0101, .shortAPDU)] {
            let kc = try identity(0x046A, 0x00A1, bcd, features: 0x000207BA)
            #expect(AppliedQuirks(for: kc).adjusted(kc).classDescriptor.exchangeLevel == level)
        }
        for (bcd, automatic) in [(UInt16(0x0012), true), (0x0013, true), (0x0014, false), (0x0100, false)] {
            let token = try identity(0x0529, 0x0620, bcd, features: 0x0001023C)
            #expect(AppliedQuirks(for: token).adjusted(token).classDescriptor.features.contains(.automaticIFSDExchange) == automatic)
        }
        // D4, D5: rates capped.
        var oz = try identity(0x0B97, 0x7762, 0x0110, features: 0x30)
        oz.classDescriptor.maxDataRate = 307_200
        #expect(AppliedQuirks(for: oz).adjusted(oz).classDescriptor.maxDataRate == 9600)
        #expect(AppliedQuirks(for: oz).noPPS)
    }

    @Test func switchedOffQuirksAreNamed() {
        let q = AppliedQuirks(vendorID: 0x0D46, productID: 0x301D, bcdDevice: 0x0100, off: ["w2"])
        #expect(q.quirks.map(\.id) == ["O2"])
        #expect(q.switchedOff == ["W2"])
        #expect(q.descriptions.last == "quirk W2 matches this device but is switched off (quirks-off)")
        #expect(!q.powerOffBeforePowerOn)
    }

    static let verify = PINEntry(operation: .verify, timeout: 30, formatString: 0x82, pinBlockString: 0x08, pinLengthFormat: 0,
                                 maxExtraDigit: 0x0408, entryValidationCondition: 0x00, numberMessage: 0x01, languageID: 0x0409,
                                 messageIndexes: [0], teoPrologue: [0, 0, 0], apdu: [0x00, 0x20, 0x00, 0x01, 0x08] + Array(repeating: 0xFF, count: 8))

    @Test func pinFramesAsEachFirmwareTakesThem() {
        var modify = Self.verify
        modify.operation = .modify(insertionOffsetOld: 0, insertionOffsetNew: 8, confirmPIN: 3)
        modify.numberMessage = 1
        modify.entryValidationCondition = 0x09
        // No quirk: only the validation condition no reader can act on becomes "validation key" (P7).
        let plain = AppliedQuirks.none.pinFrame(for: Self.verify)
        #expect(plain.entry.entryValidationCondition == 0x02 && plain.modifyIndexCount == nil)
        // GemPC Pinpad: P1 on verify; P2 and P3 on modify.
        let gempc = AppliedQuirks(vendorID: 0x08E6, productID: 0x3478, bcdDevice: 0x0100)
        #expect(gempc.pinFrame(for: Self.verify).entry.numberMessage == 0x01)
        let m = gempc.pinFrame(for: modify)
        #expect(m.entry.entryValidationCondition == 0x02 && m.entry.numberMessage == 1 && m.modifyIndexCount == 3)
        #expect(m.ccidEncoded().count == modify.ccidEncoded().count + 2)
        // SPR 532: no messages, three zero indexes.
        let spr = AppliedQuirks(vendorID: 0x04E6, productID: 0xE003, bcdDevice: 0x0510).pinFrame(for: modify)
        #expect(spr.entry.numberMessage == 0 && spr.entry.messageIndexes == [0, 0, 0] && spr.modifyIndexCount == 3)
        // Dell SK-3106: bNumberMessage 0 and wPINMaxExtraDigit swapped on verify, nothing on modify; a pause first.
        let dell = AppliedQuirks(vendorID: 0x413C, productID: 0x2100, bcdDevice: 0x0101)
        let v = dell.pinFrame(for: Self.verify).entry
        #expect(v.numberMessage == 0 && v.maxExtraDigit == 0x0804)
        #expect(dell.pinFrame(for: modify).entry.numberMessage == 1)
        #expect(dell.delayBeforeVerify == .milliseconds(250))
        // KC 1000 SC: 0 messages becomes 0xFF; XX44: fewer than 3 becomes 3.
        modify.numberMessage = 0
        #expect(AppliedQuirks(vendorID: 0x046A, productID: 0x00A1, bcdDevice: 0x0102).pinFrame(for: modify).entry.numberMessage == 0xFF)
        #expect(AppliedQuirks(vendorID: 0x046A, productID: 0x0010, bcdDevice: 0x0104).pinFrame(for: modify).entry.numberMessage == 3)
    }

    /// The simulator's U2 firmware: a character-level message of whole 64-byte packets goes unanswered.
    @Test func wholePacketHangIsReproduced() throws {
        var profile = try #require(ReaderProfile.named("o2micro-oz776-char"))
        let applied = profile.firmwareBugs.apply("whole-packet-hang")
        #expect(applied)
        var model = ReaderModel(profile: profile, timing: .quick)
        _ = model.setCard(ComplianceTestCard(.direct), slot: 0)
        let powered = model.respond(to: Command(slot: 0, sequence: 1, body: .iccPowerOn(voltage: .automatic)).encoded())
        #expect(!powered.replies.isEmpty)
        for (n, answered) in [(53, true), (54, false), (55, true), (118, false)] {
            let xfr = Command(slot: 0, sequence: 2, body: .xfrBlock(bwi: 0, levelParameter: 0, data: Array(repeating: 0, count: n)))
            let output = model.respond(to: xfr.encoded())
            #expect(output.replies.isEmpty == !answered, "\(n)")
        }
    }

    @Test func readerInformationAnswers() throws {
        let info = try #require(AppliedQuirks(vendorID: 0x0D46, productID: 0x301D, bcdDevice: 0x0107).readerInformation)
        #expect(info.answer(to: [0xFF, 0x9A, 0x01, 0x06, 0x00], bcdDevice: 0x0107) == Array("1.07".utf8) + [0x90, 0x00])
        #expect(info.answer(to: [0xFF, 0x9A, 0x01, 0x01, 0x00], bcdDevice: 0x0107) == Array("KOBIL systems".utf8) + [0x90, 0x00])
        #expect(info.answer(to: [0xFF, 0x9A, 0x01, 0x02, 0x00], bcdDevice: 0x0107) == nil)
        #expect(info.answer(to: [0xFF, 0x9A, 0x01, 0x01], bcdDevice: 0x0107) == nil)
        #expect(info.answer(to: [0x00, 0x9A, 0x01, 0x01, 0x00], bcdDevice: 0x0107) == nil)
    }
}
