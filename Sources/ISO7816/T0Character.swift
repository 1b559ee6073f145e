/// T=0 at character level (ISO/IEC 7816-3 §10.3), interface device side:
/// send the header, then act on each procedure byte: NULL (wait on), ACK
/// (all remaining data), complement ACK (one byte), or SW1 (then SW2).
/// The driver moves the bytes; this says how many to send and to expect.
public struct T0CharacterExchange: Sendable {
    public enum Action: Equatable, Sendable {
        /// Send `bytes` (maybe none), then read exactly `thenReceive` bytes from the card.
        case transfer(bytes: [UInt8], thenReceive: Int)
        case complete([UInt8])
        case failed(String)
    }

    private enum Awaiting: Equatable {
        case procedureByte
        case data(count: Int)
        case secondStatusByte(UInt8)
    }

    private let ins: UInt8
    private var outgoing: ArraySlice<UInt8>
    private var incomingLeft: Int
    private var received: [UInt8] = []
    private var awaiting = Awaiting.procedureByte
    private let header: [UInt8]
    /// NULL bytes the card may send in a row before we call it a protocol error (its time is capped anyway).
    private var nullsLeft = 100_000

    /// `tpdu`: CLA INS P1 P2 P3 and, for commands carrying data, P3 data bytes.
    public init?(tpdu: [UInt8]) {
        guard tpdu.count >= 5 else { return nil }
        header = Array(tpdu.prefix(5))
        ins = tpdu[1]
        let p3 = Int(tpdu[4])
        if tpdu.count > 5 {
            guard tpdu.count == 5 + p3 else { return nil }
            outgoing = tpdu[5...]
            incomingLeft = 0
        } else {
            outgoing = []
            incomingLeft = p3 == 0 ? 256 : p3
        }
    }

    public func start() -> Action { .transfer(bytes: header, thenReceive: 1) }

    public mutating func received(_ bytes: [UInt8]) -> Action {
        switch awaiting {
        case .data(let count):
            guard bytes.count == count else { return .failed("T=0: expected \(count) data bytes, got \(bytes.count)") }
            received += bytes
            incomingLeft -= count
            awaiting = .procedureByte
            return .transfer(bytes: [], thenReceive: 1)
        case .secondStatusByte(let sw1):
            guard bytes.count == 1 else { return .failed("T=0: no SW2") }
            return .complete(received + [sw1, bytes[0]])
        case .procedureByte:
            guard bytes.count == 1 else { return .failed("T=0: expected a procedure byte, got \(bytes.count) bytes") }
            return procedureByte(bytes[0])
        }
    }

    private mutating func procedureByte(_ p: UInt8) -> Action {
        switch p {
        case 0x60:
            nullsLeft -= 1
            guard nullsLeft > 0 else { return .failed("T=0: endless NULL procedure bytes") }
            return .transfer(bytes: [], thenReceive: 1)
        case ins:
            if !outgoing.isEmpty {
                let rest = Array(outgoing)
                outgoing = []
                return .transfer(bytes: rest, thenReceive: 1)
            }
            guard incomingLeft > 0 else { return .failed("T=0: ACK with nothing left to transfer") }
            awaiting = .data(count: incomingLeft)
            return .transfer(bytes: [], thenReceive: incomingLeft)
        case ins ^ 0xFF:
            if let next = outgoing.first {
                outgoing = outgoing.dropFirst()
                return .transfer(bytes: [next], thenReceive: 1)
            }
            guard incomingLeft > 0 else { return .failed("T=0: complement ACK with nothing left to transfer") }
            awaiting = .data(count: 1)
            return .transfer(bytes: [], thenReceive: 1)
        case let sw1 where sw1 & 0xF0 == 0x60 || sw1 & 0xF0 == 0x90:
            awaiting = .secondStatusByte(sw1)
            return .transfer(bytes: [], thenReceive: 1)
        default:
            return .failed("T=0: invalid procedure byte 0x\(String(p, radix: 16))")
        }
    }
}
