import CCID

/// What can go wrong in one driver call; the IFD handler maps these to IFD codes.
public enum DriverError: Error, Equatable, Sendable, CustomStringConvertible {
    case noDevice
    case noCard
    case timeout
    case cardMute
    case invalidSlot(Int)
    case commandFailed(SlotError)
    case protocolViolation(String)
    /// The reader cannot carry this (e.g. an extended APDU at short-APDU level).
    case notSupported(String)
    case protocolNotSupported(String)
    case invalidAPDU(String)
    case insufficientBuffer(needed: Int)
    /// The transmission protocol with the card failed (T=1 recovery exhausted, S(ABORT), …).
    case cardProtocol(String)
    /// The device is not used: firmware too old, or it does not answer at open.
    case refused(String)

    public var description: String {
        switch self {
        case .noDevice: "device gone"
        case .noCard: "no card in the slot"
        case .timeout: "exchange deadline passed"
        case .cardMute: "card does not answer (ICC_MUTE)"
        case .invalidSlot(let s): "no slot \(s) on this reader"
        case .commandFailed(let e): "reader reports \(e)"
        case .protocolViolation(let why): "reader broke the CCID protocol: \(why)"
        case .notSupported(let why): why
        case .protocolNotSupported(let why): why
        case .invalidAPDU(let why): "invalid APDU: \(why)"
        case .insufficientBuffer(let n): "answer of \(n) bytes does not fit the caller's buffer"
        case .cardProtocol(let why): why
        case .refused(let why): why
        }
    }

    init(_ error: TransportError) {
        switch error {
        case .noDevice: self = .noDevice
        case .timeout: self = .timeout
        case .cancelled: self = .timeout
        case .stalled: self = .protocolViolation("endpoint stalled")
        case .protocolViolation(let why): self = .protocolViolation(why)
        }
    }
}
