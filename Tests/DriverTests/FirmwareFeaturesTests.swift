#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import CCID
@testable import CCIDDriver
@testable import ReaderQuirks
@testable import SimulatorCore

/// Quirk P4: a Gemalto PIN pad says at open (Escape 6A, exactly 21 bytes) which
/// validation conditions it has and its PIN sizes; the driver's PIN frames and
/// properties follow. Any other answer is ignored.
@Suite struct FirmwareFeaturesTests {
    /// PIN_VERIFY_STRUCTURE asking for any validation (0x07: size reached, key, timeout).
    static let verifyAny = PINEntry(part10Verify: [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x07, 0x01, 0x09, 0x04, 0x00,
                                                   0x00, 0x00, 0x00, 13, 0, 0, 0, 0x00, 0x20, 0x00, 0x01, 0x08]
                                                  + [UInt8](repeating: 0xFF, count: 8))

    static func reader(featuresLength: Int, off: Set<String> = []) throws -> (Reader, Lines) {
        var p = try #require(ReaderProfile.named("ezio-pinpad-extended"))
        let applied = p.firmwareBugs.apply("firmware-features=\(featuresLength)")
        #expect(applied)
        let h = try Harness(readerProfile: p, quirksOff: off)
        try h.reader.startUp()
        try h.connect(protocolType: 1)
        return (h.reader, h.log)
    }

    @Test func firmwareAnswerRefinesFrameAndProperties() throws {
        let (reader, log) = try Self.reader(featuresLength: 21)
        #expect(log.contains("quirk P4: the firmware reports validation conditions 0x02, PINs of 4 to 8 digits, modification fix absent"))
        #expect(reader.quirks.pinProperties == PINProperties(minimumSize: 4, maximumSize: 8, validationCondition: 0x02))
        #expect(reader.quirks.pinFrame(for: try #require(Self.verifyAny)).entry.entryValidationCondition == 0x02)
        #expect(try reader.secure(slot: 0, entry: try #require(Self.verifyAny)) == [0x90, 0x00])
        // No modification fix: the three-index rewrite (P3) stays.
        #expect(reader.quirks.quirks.contains { $0.id == "P3" })
    }

    @Test(arguments: [(20, Set<String>()), (21, Set(["P4"]))])
    func otherAnswersOrTheQuirkOffLeaveTheFrameAlone(length: Int, off: Set<String>) throws {
        let (reader, log) = try Self.reader(featuresLength: length, off: off)
        #expect(!log.contains("quirk P4: the firmware reports"))
        #expect(reader.quirks.firmwareFeatures == nil)
        #expect(throws: DriverError.commandFailed(.badParameter(at: 17))) {
            try reader.secure(slot: 0, entry: try #require(Self.verifyAny))
        }
    }

    @Test func answerDecodesOnlyAtItsExactLength() throws {
        var answer = [UInt8](repeating: 0, count: 21)
        (answer[3], answer[8], answer[13], answer[14]) = (0x03, 0x04, 6, 12)
        let f = try #require(GemaltoFirmwareFeatures(answer: answer))
        #expect(f.validationMask == 0x03 && f.modifyFixed && f.minimumPINSize == 6 && f.maximumPINSize == 12)
        #expect(GemaltoFirmwareFeatures(answer: Array(answer.prefix(20))) == nil)
        #expect(GemaltoFirmwareFeatures(answer: answer + [0]) == nil)
        // A firmware with the modification fix needs no three-index rewrite.
        let quirks = AppliedQuirks(vendorID: 0x08E6, productID: 0x34C2, bcdDevice: 0x0100)
        #expect(quirks.quirks.contains { $0.id == "P3" })
        #expect(!quirks.refined(by: f).quirks.contains { $0.id == "P3" })
    }
}

/// Quirk P5: the GemPC Pinpad's display prompts, loaded at open in pcscd's language.
@Suite struct DisplayPromptsTests {
    static let gemPCPinpad = "36210001000703000000a00f0000a00f000000002a000020a1070000fe0000000000000000000000300201000f010000000000000301"

    @Test func promptsGoAsOneEscapeOfTenSixteenCharacterTexts() {
        let en = DisplayPrompts.command(language: "en")
        #expect(en.count == 165 && Array(en.prefix(5)) == [0xB2, 0xA0, 0x00, 0x4D, 0x4C])
        #expect(Array(en[5..<21]) == Array("Enter PIN       ".utf8))
        #expect(DisplayPrompts.language(fromLocale: "fr_FR.UTF-8") == "fr")
        #expect(DisplayPrompts.language(fromLocale: "de_CH") == "de")
        #expect(DisplayPrompts.language(fromLocale: "C.UTF-8") == "en")
        #expect(DisplayPrompts.language(fromLocale: nil) == "en")
        for language in ["en", "fr", "de"] {
            #expect(DisplayPrompts.command(language: language).count == 165, "\(language)")
            #expect(DisplayPrompts.texts[language]?.allSatisfy { $0.utf8.count <= 16 && $0.unicodeScalars.allSatisfy(\.isASCII) } == true)
        }
    }

    static func harness(off: Set<String>) throws -> Harness {
        var p = try ReaderProfile.custom(name: "gempc", vendorID: 0x08E6, productID: 0x3478, manufacturer: "Gemplus",
                                         product: "GemPC Pinpad", descriptorHex: gemPCPinpad)
        let applied = p.firmwareBugs.apply("needs-prompts")
        #expect(applied)
        let h = try Harness(readerProfile: p, quirksOff: off)
        try h.reader.startUp()
        return h
    }

    @Test func loadedAtOpenOrLoggedAsMissing() throws {
        let h = try Self.harness(off: [])
        let language = DisplayPrompts.language(fromLocale: getenv("LANG").map { String(cString: $0) })
        #expect(h.log.contains("quirk P5: display prompts loaded (\(language))"))
        #expect(h.sim.displayPrompts == DisplayPrompts.texts[language])
        #expect(try Self.harness(off: ["P5"]).sim.displayPrompts == nil)
    }
}
