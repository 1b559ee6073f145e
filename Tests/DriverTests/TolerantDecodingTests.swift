import CCID
import Testing
@testable import CCIDDriver

/// Replies longer than their dwLength (QEMU's usb-ccid Parameters) are read
/// up to it; shorter ones are still refused.
struct TolerantDecodingTests {
    @Test func bytesBeyondDwLengthAreIgnored() throws {
        let qemu: [UInt8] = [0x82, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0x18, 0, 0, 0x0A, 0, 0, 0]
        var logged: [String] = []
        let reply = try Reader.decodeTolerantly(qemu) { logged.append($0) }
        #expect(reply.messageType == .parameters && reply.sequence == 6)
        #expect(reply.body == .parameters(protocolNumber: 0, data: []))
        #expect(logged.count == 1)
    }

    @Test func fewerBytesThanDeclaredIsStillAnError() {
        let short: [UInt8] = [0x80, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0x90]
        #expect(throws: CCIDDecodingError.self) { try Reader.decodeTolerantly(short) { _ in } }
    }

    @Test func exactRepliesDecodeSilently() throws {
        var logged = 0
        let reply = try Reader.decodeTolerantly([0x80, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0x90, 0x00]) { _ in logged += 1 }
        #expect(reply.body == .dataBlock(chainParameter: 0, data: [0x90, 0x00]))
        #expect(logged == 0)
    }
}
