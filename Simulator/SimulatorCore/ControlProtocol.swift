import Foundation
import Relay

/// What `ccid-sim` commands ask a running simulator, over its control
/// socket: one JSON request per connection, one JSON answer.
public enum SimulatorRequest: Codable, Sendable, Equatable {
    /// One line per reader (see `Simulator.listing`).
    case list
    /// One line per reader: CCID messages each way so far (`Simulator.messageCounts`).
    case counts
    /// A new reader of a built-in profile; answers its listing line.
    case plug(profile: String, card: CardSpec?)
    case unplug(reader: String)
    /// A system suspend and resume: handles stale for `staleMilliseconds`, then re-enumerated.
    case suspend(reader: String, staleMilliseconds: Int)
    /// `slot` nil: the slot the reader's PC/SC name names, else 0.
    case insert(reader: String, slot: Int?, card: CardSpec)
    case remove(reader: String, slot: Int?)
    /// What the user does at the reader's PIN pad next time.
    case pinPad(reader: String, action: PINPadAction)
    /// Fault settings (`Faults.table`); answers the slot's faults now.
    case fault(reader: String, slot: Int?, settings: [String])
}

/// A request's answer: lines to print, or what went wrong.
public struct SimulatorAnswer: Codable, Sendable, Equatable {
    public var error: String?
    public var lines: [String]

    public static func ok(_ lines: [String] = []) -> SimulatorAnswer { SimulatorAnswer(error: nil, lines: lines) }
    public static func failed(_ why: String) -> SimulatorAnswer { SimulatorAnswer(error: why, lines: []) }
}


/// The control socket's framing: a JSON document and a newline.
enum ControlWire {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return Array(data) + [0x0A]
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

/// Client side of the control socket, for the CLI.
public enum ControlClient {
    public static func request(directory: String, _ request: SimulatorRequest) throws -> SimulatorAnswer {
        let s = try StreamSocket.connect(path: "\(directory)/\(Simulator.controlSocketName)")
        defer { s.close() }
        try s.writeAll(ControlWire.encode(request))
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while let n = try? s.read(into: &buffer), n > 0 { answer += buffer[0..<n] }
        return try ControlWire.decode(SimulatorAnswer.self, from: answer)
    }
}
