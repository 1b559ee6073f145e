import RelayServer
import Foundation
import Testing
@testable import CCID
@testable import Relay
@testable import SimulatorCore
import ThreadSupport

/// The relay over real UNIX sockets: a simulated reader behind a listener,
/// the driver's client transport in front; and servers that misbehave.
@Suite(.serialized) struct RelaySocketTests {
    static func tempPath(_ name: String) -> String {
        let dir = "/tmp/sccid-test-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return "\(dir)/\(name).sock"
    }

    static func reader(_ profile: String = "omnikey-3121-extended") -> SimulatedReader {
        let r = SimulatedReader(name: "sim0", profile: ReaderProfile.named(profile)!, serialNumber: "S1")
        try? r.insert(ComplianceTestCard(), slot: 0)
        return r
    }

    @Test func clientAndServerExchangeMessages() throws {
        let path = Self.tempPath("loop")
        let sim = Self.reader()
        let listener = try RelayListener(path: path, device: sim, log: { _ in })
        defer { listener.stop() }
        let client = try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in })
        defer { client.close() }
        #expect(client.identity.product == "OMNIKEY 3x21 Smart Card Reader")

        try client.sendBulk(Command(slot: 0, sequence: 1, body: .iccPowerOn(voltage: .automatic)).encoded(), deadline: .after(.seconds(2)))
        let reply = try Reply(decoding: try client.receiveBulk(deadline: .after(.seconds(2))))
        #expect(reply.body == .dataBlock(chainParameter: 0, data: ComplianceTestCard.Variant.direct.atr))

        #expect(try client.control(.abort(slot: 0, sequence: 1, interface: 0), deadline: .after(.seconds(2))) == [])
        #expect(throws: TransportError.stalled) {
            try client.control(ControlRequest(requestType: 0xC0, request: 0x42, value: 0, index: 0, length: 4), deadline: .after(.seconds(2)))
        }

        try sim.remove(slot: 0)
        let notification = try InterruptMessage(decoding: try client.receiveInterrupt(deadline: .after(.seconds(2))))
        guard case .notifySlotChange(let slots) = notification else { Issue.record("not a NotifySlotChange"); return }
        #expect(slots.first == .init(present: false, changed: true))

        // Cancel before wait: the next wait returns at once.
        client.cancelInterruptWait()
        #expect(throws: TransportError.cancelled) { try client.receiveInterrupt(deadline: .after(.seconds(5))) }
        #expect(throws: TransportError.timeout) { try client.receiveBulk(deadline: .after(.milliseconds(100))) }
    }

    /// Frames of every size, back to back, written header and payload in
    /// one sendmsg and read straight into the decoder's buffer, which must
    /// keep frames whole across reads and reuse its room.
    @Test func framesOfEverySizeCrossTheSocketInOrder() throws {
        let path = Self.tempPath("frames")
        let server = try StreamSocket.listen(path: path, mode: 0o600)
        defer { server.close() }
        let client = try StreamSocket.connect(path: path)
        defer { client.close() }
        let peer = try server.accept()
        defer { peer.close() }
        let sizes = [0, 1, 4, 5, 271, 4096, 65535, 65554, 3, RelayFrame.maximumPayloadLength, 7, 65554, 65554, 65554, 2]
        let frames = sizes.enumerated().map { i, n in
            RelayFrame.bulkIn((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) })
        }
        let writer = FrameStream(socket: client)
        let sent = Mutex<SocketError?>(nil)
        #expect(startThread {
            do throws(SocketError) { for f in frames { try writer.send(f) } } catch { sent.withLock { $0 = error } }
        })
        let reader = FrameStream(socket: peer)
        for (i, expected) in frames.enumerated() {
            let got = try reader.receive(until: .after(.seconds(5)), spin: i % 2 == 0 ? .zero : .microseconds(50))
            #expect(got == expected, "frame \(i) of \(sizes[i]) bytes")
        }
        #expect(sent.withLock { $0 } == nil)
    }

    @Test func unplugEndsTheConnection() throws {
        let path = Self.tempPath("unplug")
        let listener = try RelayListener(path: path, device: Self.reader(), log: { _ in })
        let client = try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in })
        listener.stop()
        #expect(throws: TransportError.noDevice) { try client.receiveBulk(deadline: .after(.seconds(3))) }
        #expect(throws: TransportError.noDevice) { try client.sendBulk([0x65, 0, 0, 0, 0, 0, 1, 0, 0, 0], deadline: .after(.seconds(1))) }
    }

    @Test func secondClientIsRefused() throws {
        let path = Self.tempPath("busy")
        let listener = try RelayListener(path: path, device: Self.reader(), log: { _ in })
        defer { listener.stop() }
        let first = try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in })
        defer { first.close() }
        #expect(throws: (any Error).self) { try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in }) }
    }

    /// A server that sends `script` after accepting, then closes.
    static func hostileServer(_ name: String, _ script: [UInt8]) throws -> (String, StreamSocket) {
        let path = tempPath(name)
        let server = try StreamSocket.listen(path: path, mode: 0o600)
        _ = startThread {
            guard let c = try? server.accept() else { return }
            try? c.writeAll(script)
            usleep(200_000)
            c.close()
        }
        return (path, server)
    }

    @Test func garbageInsteadOfHelloIsRefused() throws {
        let (path, server) = try Self.hostileServer("garbage", Array("HTTP/1.1 200 OK\r\n\r\n".utf8))
        defer { server.close() }
        #expect(throws: (any Error).self) { try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in }) }
    }

    @Test func truncatedHelloIsRefused() throws {
        let hello = RelayFrame.hello(RelayVectorTests.cherryHello).encoded()
        let (path, server) = try Self.hostileServer("truncated", Array(hello.prefix(40)))
        defer { server.close() }
        #expect(throws: (any Error).self) { try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in }) }
    }

    @Test func oversizedFrameAfterHelloDropsTheDevice() throws {
        let hello = RelayFrame.hello(RelayVectorTests.cherryHello).encoded()
        let (path, server) = try Self.hostileServer("oversized", hello + [0x11, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        defer { server.close() }
        let lines = LogLines()
        let client = try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { lines.append($0) })
        #expect(throws: TransportError.noDevice) { try client.receiveBulk(deadline: .after(.seconds(3))) }
        #expect(lines.all.contains { $0.contains("exceeds") })
    }

    @Test func serverSendingClientFramesIsDropped() throws {
        let hello = RelayFrame.hello(RelayVectorTests.cherryHello).encoded()
        let (path, server) = try Self.hostileServer("direction", hello + RelayFrame.bulkOut([1, 2, 3]).encoded())
        defer { server.close() }
        let client = try RelayClientTransport(path: path, deadline: .after(.seconds(2)), log: { _ in })
        #expect(throws: TransportError.noDevice) { try client.receiveBulk(deadline: .after(.seconds(3))) }
    }
}

final class LogLines: @unchecked Sendable {
    private let lock = Lock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}
