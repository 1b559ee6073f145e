#if canImport(Glibc)
import Glibc
#endif
import CCID
import Relay
import RelayServer
import ThreadSupport

/// The simulator's control socket: one `SimulatorRequest` per connection,
/// one `SimulatorAnswer` back (ControlProtocol.swift).
final class ControlServer: Sendable {
    private let socket: StreamSocket
    private let path: String
    private unowned let simulator: Simulator

    init(path: String, simulator: Simulator, log: @escaping @Sendable (String) -> Void) throws(SocketError) {
        self.path = path
        self.simulator = simulator
        socket = try StreamSocket.listen(path: path, mode: 0o660)
        guard startThread({ [self] in loop(log: log) }) else { throw SocketError(operation: "pthread_create", errno: 0) }
    }

    /// Requests are small; a peer that sends more, or nothing for 2 s, is answered with an error.
    static let requestLimit = 65536

    private func loop(log: @Sendable (String) -> Void) {
        while let client = try? socket.accept() {
            guard let peer = client.peerCredentials(), RelayListener.sameUserOrRoot(peer) else {
                client.close()
                continue
            }
            var request: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while request.last != 0x0A, request.count < Self.requestLimit,
                  client.waitReadable(until: .after(.seconds(2))),
                  let n = try? client.read(into: &buffer), n > 0 {
                request += buffer[0..<n]
            }
            let answer: SimulatorAnswer
            do { answer = handle(try ControlWire.decode(SimulatorRequest.self, from: request)) } catch {
                log("control: unreadable request (\(error))")
                answer = .failed("unreadable request: \(error)")
            }
            try? client.writeAll(ControlWire.encode(answer))
            client.close()
        }
    }

    func handle(_ request: SimulatorRequest) -> SimulatorAnswer {
        switch request {
        case .list:
            return .ok(simulator.listing())
        case .counts:
            return .ok(simulator.messageCounts())
        case .plug(let name, let card):
            guard let profile = ReaderProfile.named(name) else { return .failed("no profile '\(name)' (see `ccid-sim profiles`)") }
            do throws(SimulatorError) {
                let index = try simulator.plug(ReaderSetup(profile: profile, cards: [card]))
                return .ok([simulator.listing()[index]])
            } catch {
                return .failed("\(error)")
            }
        case .unplug(let name):
            guard let (index, _) = simulator.resolve(name) else { return noReader(name) }
            return simulator.unplug(index) ? .ok() : .failed("reader \(index) is not plugged in")
        case .suspend(let name, let stale):
            guard let (index, _) = simulator.resolve(name) else { return noReader(name) }
            do throws(SimulatorError) {
                try simulator.suspendAndResume(index, stale: .milliseconds(max(0, min(stale, 60_000))))
                return .ok([simulator.listing()[index]])
            } catch {
                return .failed("\(error)")
            }
        case .pinPad(let name, let action):
            guard let (index, _) = simulator.resolve(name) else { return noReader(name) }
            simulator.readers[index].setPINPad(action)
            return .ok()
        case .fault(let name, let slot, let settings):
            guard let (index, implied) = simulator.resolve(name) else { return noReader(name) }
            let reader = simulator.readers[index], slot = slot ?? implied ?? 0
            do throws(SimulatedReader.SlotActionError) {
                guard try reader.setFaults(slot: slot, settings) else {
                    return .failed("fault settings are \(Faults.names.joined(separator: ", ")) (name=N)")
                }
                return .ok([reader.faults(slot: slot)?.summary ?? ""])
            } catch {
                return .failed("\(error)")
            }
        case .insert(let name, let slot, let card):
            guard let (index, implied) = simulator.resolve(name) else { return noReader(name) }
            do throws(SimulatorError) {
                try simulator.insert(card, reader: index, slot: slot ?? implied ?? 0)
                return .ok()
            } catch {
                return .failed("\(error)")
            }
        case .remove(let name, let slot):
            guard let (index, implied) = simulator.resolve(name) else { return noReader(name) }
            do throws(SimulatorError) {
                try simulator.remove(reader: index, slot: slot ?? implied ?? 0)
                return .ok()
            } catch {
                return .failed("\(error)")
            }
        }
    }

    private func noReader(_ name: String) -> SimulatorAnswer { .failed("no reader '\(name)' (see `ccid-sim list`)") }

    func stop() {
        socket.shutdown()
        socket.close()
        unlink(path)
    }
}
