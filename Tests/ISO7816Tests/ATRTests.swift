import Foundation
import Testing
import TestSupport
@testable import ISO7816

struct ATRTests {
    static func hex(_ s: String) -> [UInt8] {
        s.split(separator: " ").compactMap { UInt8($0, radix: 16) }
    }

    @Test func complianceCardNo1() throws {
        let atr = try ATR(Self.hex("3B D6 18 00 80 B1 80 6D 1F 03 80 51 00 61 10 30 9E"))
        #expect(atr.convention == .direct)
        #expect(atr.fi == 372 && atr.di == 12 && atr.fmaxKHz == 5000)
        #expect(atr.extraGuardTime == 0)
        #expect(atr.offeredProtocols == [0, 1])
        #expect(atr.defaultProtocol == 0)
        #expect(atr.specificMode == nil)
        #expect(atr.t1IFSC == 128 && atr.t1BWI == 6 && atr.t1CWI == 13 && atr.t1EDC == .lrc)
        #expect(atr.historicalBytes == Self.hex("80 51 00 61 10 30"))
        #expect(atr.tck == 0x9E)
        #expect(atr.groups.count == 4 && atr.groups[3].ta == 0x03 && atr.groups[3].protocolType == 15)
    }

    @Test func complianceCardNo2InverseConvention() throws {
        let atr = try ATR(Self.hex("3F 96 18 80 01 80 51 00 61 10 30 9F"))
        #expect(atr.convention == .inverse)
        #expect(atr.offeredProtocols == [0, 1])
        #expect(atr.fi == 372 && atr.di == 12)
        #expect(atr.t1IFSC == 32 && atr.t1BWI == 4 && atr.t1CWI == 13)
        #expect(atr.historicalBytes.count == 6)
    }

    /// The line bytes of an inverse-convention card read as direct: TS arrives as 0x03.
    @Test func rawInverseLineBytesAreDecoded() throws {
        let logical = Self.hex("3F 96 18 80 01 80 51 00 61 10 30 9F")
        let line = logical.map { ~$0.bitReversed }
        #expect(line[0] == 0x03)
        let atr = try ATR(line)
        #expect(atr.convention == .inverse && atr.bytes == logical)
    }

    @Test func cryptoCardIsT1Only() throws {
        let atr = try ATR(Self.hex("3B D6 18 00 81 B1 80 7D 1F 03 80 51 00 61 10 30 8F"))
        #expect(atr.offeredProtocols == [1])
        #expect(atr.defaultProtocol == 1)
        #expect(atr.t1BWI == 7)
    }

    @Test func t0OnlyHasNoTCK() throws {
        // A classic T=0 card: TA1 = 95, TC2 = 0x64 (WI 100).
        let atr = try ATR(Self.hex("3B 95 95 40 FF AE 01 03 00 00"))
        #expect(atr.tck == nil)
        #expect(atr.offeredProtocols == [0])
        #expect(atr.fi == 512 && atr.di == 16)
        let both = try ATR(Self.hex("3B 80 80 01 01"))   // TD1 = T=0, TD2 = T=1
        #expect(both.offeredProtocols == [0, 1] && both.tck == 0x01)
        let tc2 = try ATR(Self.hex("3B A0 00 40 64"))   // T0=A0: TB1, TD1=40 → TC2 = 0x64
        #expect(tc2.t0WaitingTimeInteger == 0x64)
    }

    @Test func specificModeFromTA2() throws {
        // TD1 = 0x91: TA2 present (0x81: T=1, cannot change, Fi/Di from TA1), T=1.
        var bytes = Self.hex("3B 90 11 91 81 31 FE 45")   // TD2 = 31: TA3 (IFSC), TB3 for T=1
        bytes.append(bytes[1...].reduce(0, ^))
        let atr = try ATR(bytes)
        let specific = try #require(atr.specificMode)
        #expect(specific.protocolType == 1 && !specific.canChange && !specific.parametersImplicit)
        #expect(atr.defaultProtocol == 1)
        #expect(atr.t1IFSC == 254)
    }

    @Test func crcFromFirstT1TC() throws {
        var bytes = Self.hex("3B 80 81 41 01")   // TD1=81 (T=1), TD2=41: TC3 = 01 (CRC), T=1
        bytes.append(bytes[1...].reduce(0, ^))
        #expect(try ATR(bytes).t1EDC == .crc)
    }

    @Test func malformedATRsAreTypedErrors() {
        #expect(throws: ATRError.empty) { try ATR([]) }
        #expect(throws: ATRError.invalidTS(0x3A)) { try ATR([0x3A, 0x00]) }
        #expect(throws: ATRError.truncated(expected: "T0")) { try ATR([0x3B]) }
        #expect(throws: ATRError.truncated(expected: "TD1")) { try ATR([0x3B, 0x80]) }
        #expect(throws: ATRError.truncated(expected: "2 historical bytes")) { try ATR([0x3B, 0x02, 0x01]) }
        #expect(throws: ATRError.checksumMismatch(expected: 0x9E, found: 0x9F)) {
            try ATR(Self.hex("3B D6 18 00 80 B1 80 6D 1F 03 80 51 00 61 10 30 9F"))
        }
        #expect(throws: ATRError.trailingBytes(1)) { try ATR([0x3B, 0x00, 0x00]) }
        #expect(throws: ATRError.tooLong(34)) { try ATR([0x3B] + [UInt8](repeating: 0, count: 33)) }
    }

    /// Property: random bytes after a valid TS never trap, and what parses
    /// parses the same again and has every derived value in its range.
    @Test func randomATRsParseWithinRangesOrAreRefused() throws {
        var rng = TestRandom(seed: 0xA7A1)
        var parsed = 0
        let starts: [UInt8] = [0x3B, 0x3F, 0x03]
        for _ in 0..<50_000 {
            let n = Int.random(in: 1...40, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes[0] = starts[Int.random(in: 0..<starts.count, using: &rng)]
            guard let atr = try? ATR(bytes) else { continue }
            parsed += 1
            let again = try ATR(atr.bytes)
            #expect(again.bytes == atr.bytes && again.historicalBytes == atr.historicalBytes && again.tck == atr.tck)
            #expect(atr.historicalBytes.count <= 15 && !atr.groups.isEmpty)
            #expect((1...254).contains(atr.t1IFSC) && atr.t1BWI <= 15 && atr.t1CWI <= 15, "\(bytes)")
            #expect(atr.offeredProtocols.allSatisfy { $0 <= 15 } && atr.defaultProtocol <= 15)
            #expect(atr.fi.map { $0 > 0 } ?? true && atr.di.map { $0 > 0 } ?? true)
        }
        #expect(parsed > 300, "only \(parsed) ATRs parsed: the property was barely tested")
    }
}

/// Independent oracles from pcsc-tools: the ATR list and ATR_analysis.
struct ATROracleTests {
    static let listPath = "/usr/share/pcsc/smartcard_list.txt"

    /// Concrete ATRs of the list (lines without ".." wildcards or ranges).
    static func concreteATRs() throws -> [[UInt8]] {
        let text = try String(contentsOfFile: listPath, encoding: .isoLatin1)
        return text.split(whereSeparator: \.isNewline).compactMap { line -> [UInt8]? in
            guard line.first == "3" else { return nil }
            let fields = line.split(separator: " ")
            let bytes = fields.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
            return bytes.count == fields.count ? bytes : nil
        }
    }

    @Test func everyConcreteATRInTheListParsesWithoutATrap() throws {
        let atrs = try Self.concreteATRs()
        #expect(atrs.count > 3000)
        var parsed = 0
        for a in atrs {
            if let atr = try? ATR(a) {
                parsed += 1
                _ = (atr.fi, atr.di, atr.offeredProtocols, atr.t1IFSC)
            }
        }
        // Most real ATRs are well formed; the rest must fail with a typed error (no trap).
        #expect(parsed * 100 / atrs.count >= 95)
    }

    struct Analysis {
        var fi: Int?, di: Int?
        var ifsc: Int?
        var bwi: Int?, cwi: Int?
        var protocols: [Int] = []
        var historicalCount: Int?
        var checksumCorrect: Bool?
    }

    static func analyse(_ atr: [UInt8]) throws -> Analysis {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ATR_analysis")
        p.arguments = [atr.map { String(format: "%02X", $0) }.joined(separator: " ")]
        p.environment = ["PATH": "/usr/bin:/bin", "HOME": "/tmp"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
            .replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
        var a = Analysis()
        func int(_ pattern: String) -> Int? {
            guard let r = text.range(of: pattern, options: .regularExpression) else { return nil }
            return Int(text[r].split(whereSeparator: { !$0.isNumber }).last.map(String.init) ?? "")
        }
        if text.contains("TA(1) =") { a.fi = int("Fi=[0-9]+"); a.di = int("Di=[0-9]+") }
        a.ifsc = int("IFSC: [0-9]+")
        a.bwi = int("Block Waiting Integer: [0-9]+")
        a.cwi = int("Character Waiting Integer: [0-9]+")
        a.historicalCount = int("K: [0-9]+")
        for line in text.split(separator: "\n") {
            if let r = line.range(of: "Protocol T = [0-9]+", options: .regularExpression),
               let t = Int(line[r].split(separator: " ").last ?? "") { a.protocols.append(t) }
        }
        if text.contains("(correct checksum)") { a.checksumCorrect = true }
        if text.contains("WRONG CHECKSUM") || text.contains("wrong checksum") { a.checksumCorrect = false }
        return a
    }

    /// Our decoding agrees with ATR_analysis on a broad, deterministic sample.
    @Test func agreesWithATRAnalysis() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ATR_analysis") else {
            Issue.record("ATR_analysis missing: install pcsc-tools (make deps)")
            return
        }
        let atrs = try Self.concreteATRs()
        let step = max(1, atrs.count / 120)
        var compared = 0
        for (i, bytes) in atrs.enumerated() where i % step == 0 {
            guard let atr = try? ATR(bytes) else { continue }
            let a = try Self.analyse(bytes)
            let ctx = atr.bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
            if let fi = a.fi, let ours = atr.fi { #expect(fi == ours, "\(ctx) Fi") }
            if let di = a.di, let ours = atr.di { #expect(di == ours, "\(ctx) Di") }
            if let k = a.historicalCount { #expect(k == atr.historicalBytes.count, "\(ctx) K") }
            if let ifsc = a.ifsc, ifsc != 0, ifsc != 255 { #expect(ifsc == atr.t1IFSC, "\(ctx) IFSC") }
            if let bwi = a.bwi { #expect(bwi == Int(atr.t1BWI), "\(ctx) BWI") }
            if let cwi = a.cwi { #expect(cwi == Int(atr.t1CWI), "\(ctx) CWI") }
            let theirs = a.protocols.filter { $0 != 15 }
            #expect(Set(theirs.isEmpty ? [0] : theirs) == Set(atr.offeredProtocols.map(Int.init)), "\(ctx) protocols")
            if atr.tck != nil { #expect(a.checksumCorrect == true, "\(ctx) TCK") }
            compared += 1
        }
        #expect(compared >= 100)
    }
}
