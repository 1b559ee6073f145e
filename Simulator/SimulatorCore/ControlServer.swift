#if canImport(Glibc)
import Glibc
#endif
import CCID
import Relay
import RelayServer
import ThreadSupport

/// The simulator's control socket: one request per connection, fields
/// separated by tabs, one answer ("ok" or "error: …" first, then lines).
///   list
///   insert <reader> <slot or -> <card>
///   remove <reader> <slot or ->
///   pinpad <reader> enter <digits> | cancel | timeout
///   fault <reader> <slot or -> <setting>…   (see `Faults.apply`)
///   plug <profile> [<card>]                  (answers the new reader's line)
///   unplug <reader>
final class ControlServer: Sendable {
    private let socket: UnixSocket
    private let path: String
    private unowned let simulator: Simulator

    init(path: String, simulator: Simulator, log: @escaping @Sendable (String) -> Void) throws(SocketError) {
        self.path = path
        self.simulator = simulator
        socket = try UnixSocket.listen(path: path, mode: 0o660)
        guard startThread({ [self] in loop(log: log) }) else { throw SocketError(operation: "pthread_create", errno: 0) }
    }

    private func loop(log: @Sendable (String) -> Void) {
        while let client = try? socket.accept() {
            guard let peer = client.peerCredentials(), RelayListener.sameUserOrRoot(peer) else {
                client.close()
                continue
            }
            var request: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while request.last != 0x0A, request.count < 65536,
                  client.waitReadable(until: .after(.seconds(2))),
                  let n = try? client.read(into: &buffer), n > 0 {
                request += buffer[0..<n]
            }
            let line = String(decoding: request, as: UTF8.self).trimmingNewline
            let answer = handle(line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init))
            try? client.writeAll(Array((answer.joined(separator: "\n") + "\n").utf8))
            client.close()
        }
    }

    func handle(_ args: [String]) -> [String] {
        guard let verb = args.first else { return ["error: empty request"] }
        switch verb {
        case "list":
            return ["ok"] + simulator.listing()
        case "plug":
            guard args.count >= 2, let profile = ReaderProfile.named(args[1]) else {
                return ["error: no profile '\(args.count > 1 ? args[1] : "")' (see `ccid-sim profiles`)"]
            }
            let card = args.count >= 3 && !args[2].isEmpty && args[2] != "none" ? args[2] : nil
            do throws(SimulatorError) {
                let index = try simulator.plug(ReaderSetup(profile: profile, cards: [card]))
                return ["ok", simulator.listing()[index]]
            } catch {
                return ["error: \(error)"]
            }
        case "unplug":
            guard args.count >= 2, let (index, _) = simulator.resolve(args[1]) else {
                return ["error: no reader '\(args.count > 1 ? args[1] : "")' (see `ccid-sim list`)"]
            }
            return simulator.unplug(index) ? ["ok"] : ["error: reader \(index) is not plugged in"]
        case "insert", "remove", "pinpad", "fault":
            guard args.count >= 3, let (index, impliedSlot) = simulator.resolve(args[1]) else {
                return ["error: no reader '\(args.count > 1 ? args[1] : "")' (see `ccid-sim list`)"]
            }
            let reader = simulator.readers[index]
            if verb == "pinpad" {
                switch args[2] {
                case "enter" where args.count >= 4: reader.setPINPad(.enter(args[3]))
                case "cancel": reader.setPINPad(.cancel)
                case "timeout": reader.setPINPad(.timeout)
                default: return ["error: pinpad wants enter DIGITS, cancel or timeout"]
                }
                return ["ok"]
            }
            let slot = Int(args[2]) ?? impliedSlot ?? 0
            if verb == "fault" {
                do throws(SimulatedReader.SlotActionError) {
                    guard try reader.setFaults(slot: slot, Array(args.dropFirst(3))) else {
                        return ["error: fault settings are \(Faults.names.joined(separator: ", ")) (name=N)"]
                    }
                    return ["ok", reader.faults(slot: slot)?.summary ?? ""]
                } catch {
                    return ["error: \(error)"]
                }
            }
            do throws(SimulatedReader.SlotActionError) {
                if verb == "insert" {
                    let name = args.count >= 4 && !args[3].isEmpty ? args[3] : CardCatalog.defaultCard
                    guard let card = CardCatalog.make(name) else {
                        return ["error: no card named '\(name)' (cards: \(CardCatalog.names.joined(separator: ", ")))"]
                    }
                    try reader.insert(card, slot: slot)
                } else {
                    try reader.remove(slot: slot)
                }
            } catch {
                return ["error: \(error)"]
            }
            return ["ok"]
        default:
            return ["error: unknown request '\(verb)'"]
        }
    }

    func stop() {
        socket.shutdown()
        socket.close()
        unlink(path)
    }
}

extension String {
    var trimmingNewline: String {
        var s = self
        while s.last == "\n" || s.last == "\r" { s.removeLast() }
        return s
    }
}

/// Client side of the control socket, for the CLI.
public enum ControlClient {
    public static func request(directory: String, _ fields: [String]) throws(SocketError) -> (ok: Bool, lines: [String]) {
        let s = try UnixSocket.connect(path: "\(directory)/\(Simulator.controlSocketName)")
        defer { s.close() }
        try s.writeAll(Array((fields.joined(separator: "\t") + "\n").utf8))
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while let n = try? s.read(into: &buffer), n > 0 { answer += buffer[0..<n] }
        let lines = String(decoding: answer, as: UTF8.self).trimmingNewline.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.first, first == "ok" else { return (false, lines) }
        return (true, Array(lines.dropFirst()))
    }
}
