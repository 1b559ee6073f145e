#if canImport(Glibc)
import Glibc
#endif
import CCID
import Foundation
import ThreadSupport

/// A card that answers from a `--record` file: the ATR and the responses
/// recorded in one slot (the first slot with a power-on), in order. The first
/// command that differs from the recording, and every one after it, is
/// answered 6F 00, with a log line that says which exchange and how.
public final class ReplayCard: SimulatedCard, Sendable {
    public let name: String
    public let atr: [UInt8]
    private let exchanges: [Exchange]
    private struct Exchange: Sendable {
        var command: [UInt8]
        /// nil: the card was silent.
        var response: [UInt8]?
    }
    private struct Position: Sendable {
        var next = 0
        var diverged = false
    }
    private let position = Mutex(Position())
    private let log: @Sendable (String) -> Void

    static let noPreciseDiagnosis: [UInt8] = [0x6F, 0x00]

    public init(path: String, log: @escaping @Sendable (String) -> Void) throws(SimulatorError) {
        guard let data = Self.read(path) else { throw .config("cannot read the recording \(path)") }
        var entries: [RecordEntry] = []
        for (i, line) in data.split(separator: 0x0A).enumerated() {
            guard let entry = try? JSONDecoder().decode(RecordEntry.self, from: Data(line)) else {
                throw .config("\(path) line \(i + 1) is not a recorded event")
            }
            entries.append(entry)
        }
        guard let first = entries.first(where: { $0.event == .powerOn && $0.atr != nil }),
              let atr = first.atr.flatMap(bytesFromHex), !atr.isEmpty else {
            throw .config("\(path) records no card that answered a power-on")
        }
        var exchanges: [Exchange] = []
        for (i, e) in entries.enumerated() where e.reader == first.reader && e.slot == first.slot && e.event == .apdu {
            guard let command = e.command.flatMap(bytesFromHex) else { throw .config("\(path) line \(i + 1): no command") }
            let response = e.response.flatMap(bytesFromHex)
            if e.response != nil && response == nil { throw .config("\(path) line \(i + 1): the response is not hex") }
            exchanges.append(Exchange(command: command, response: response))
        }
        name = "replay:\(path)"
        self.atr = atr
        self.exchanges = exchanges
        self.log = log
    }

    /// The whole file, through stdio: FoundationEssentials' FileManager.contents(atPath:)
    /// leaks its buffer on an empty file (LeakSanitizer in `make sanitize`).
    private static func read(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < recordingLimit {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// A recording is read whole; this much is plenty (a 64 KiB APDU each way is 256 KiB of hex).
    static let recordingLimit = 256 << 20

    public func reset() {}

    public func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        let (expected, n) = position.withLock { p -> (Exchange?, Int) in
            defer { p.next += 1 }
            return (p.diverged ? nil : exchanges.dropFirst(p.next).first, p.next + 1)
        }
        guard let expected else {
            if n == exchanges.count + 1 {
                log("\(name): exchange \(n) \(hexString(apdu)) is past the recording's \(exchanges.count); answering 6F00 from now on")
            }
            position.withLock { $0.diverged = true }
            return CardAnswer(Self.noPreciseDiagnosis)
        }
        guard expected.command == apdu else {
            log("\(name): exchange \(n) differs: recorded \(hexString(expected.command)), received \(hexString(apdu)); answering 6F00 from now on")
            position.withLock { $0.diverged = true }
            return CardAnswer(Self.noPreciseDiagnosis)
        }
        return expected.response.map { CardAnswer($0) } ?? .silent
    }
}
