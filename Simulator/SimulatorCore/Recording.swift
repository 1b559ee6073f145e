#if canImport(Glibc)
import Glibc
#endif
import CCID
import Foundation
import ThreadSupport

/// One line of a `--record` file: what happened in a slot, when. APDUs are
/// those the card saw (under T=0, the TPDUs its reader sent it).
public struct RecordEntry: Codable, Equatable, Sendable {
    public enum Event: String, Codable, Sendable {
        case insert, remove, powerOn = "power-on", powerOff = "power-off", apdu
    }
    /// Seconds since the recording began.
    public var time: Double
    public var reader: String
    public var slot: Int
    public var event: Event
    /// insert: the card's name.
    public var card: String? = nil
    /// power-on: the ATR, hex; absent if the card did not answer.
    public var atr: String? = nil
    /// apdu: the command and the card's response, hex; no response: the card was silent.
    public var command: String? = nil
    public var response: String? = nil
}

/// Writes every slot's card events and exchanges as JSON lines, in the order
/// they happen, for `--record FILE`.
public final class Recorder: Sendable {
    private let fd: Int32
    private let start = Deadline.now()
    private let lock = Lock()

    public init(path: String) throws(SimulatorError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .config("cannot write the recording \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
    }

    deinit { close(fd) }

    func record(reader: String, slot: Int, _ event: RecordEntry.Event, card: String? = nil,
                atr: [UInt8]? = nil, command: [UInt8]? = nil, response: [UInt8]? = nil) {
        let elapsed = Double(Deadline.now().nanoseconds &- start.nanoseconds) / 1e9
        let entry = RecordEntry(time: (elapsed * 1e6).rounded() / 1e6, reader: reader, slot: slot, event: event, card: card,
                                atr: atr.map { hexString($0, separator: "") }, command: command.map { hexString($0, separator: "") },
                                response: response.map { hexString($0, separator: "") })
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let data = try? encoder.encode(entry) else { return }
        let line = Array(data) + [0x0A]
        lock.withLock {
            _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
    }
}

/// A card whose power and exchanges go to a recorder as they happen.
final class RecordedCard: SimulatedCard, Sendable {
    let inner: SimulatedCard
    private let recorder: Recorder
    private let reader: String
    private let slot: Int

    init(_ inner: SimulatedCard, recorder: Recorder, reader: String, slot: Int) {
        self.inner = inner
        self.recorder = recorder
        self.reader = reader
        self.slot = slot
    }

    var name: String { inner.name }
    var atr: [UInt8] { inner.atr }
    var identity: ObjectIdentifier { inner.identity }
    var uid: [UInt8]? { inner.uid }
    func reset() { inner.reset() }

    func powerUp() -> [UInt8]? {
        let atr = inner.powerUp()
        recorder.record(reader: reader, slot: slot, .powerOn, atr: atr)
        return atr
    }

    func powerDown() {
        inner.powerDown()
        recorder.record(reader: reader, slot: slot, .powerOff)
    }

    func process(_ apdu: [UInt8], protocolType: UInt8) -> CardAnswer {
        let answer = inner.process(apdu, protocolType: protocolType)
        recorder.record(reader: reader, slot: slot, .apdu, command: apdu, response: answer.silent ? nil : answer.response)
        return answer
    }

    func commandCarriesData(_ header: [UInt8]) -> Bool { inner.commandCarriesData(header) }
}
