import ISO7816
import ThreadSupport

/// How long one exchange may take. The initial deadline comes from the card's
/// waiting time; a time extension moves it forward by what it asks for, never
/// past `maximum` from the start of the exchange.
public struct ExchangeTimeouts: Sendable, Equatable {
    /// Hard cap on one exchange, whatever the card or reader asks.
    public var maximum: Duration
    /// Added to the card's waiting time for USB and reader latency.
    public var transportMargin: Duration

    public init(maximum: Duration = .seconds(30), transportMargin: Duration = .seconds(1)) {
        self.maximum = maximum
        self.transportMargin = transportMargin
    }

    /// Waiting time of the card at the reader's default clock: WWT for T=0
    /// (960 · WI · Fi / f), BWT for T=1 (11 etu + 2^BWI · 960 · 372 / f), ISO/IEC 7816-3 §10.2, §11.4.3.
    public static func cardWaitingTime(atr: ATR?, protocolType: UInt8?, clockKHz: UInt32) -> Duration {
        let f = Double(max(clockKHz, 1000)) * 1000
        guard let atr else { return .seconds(1) }
        let seconds: Double
        if protocolType == 1 {
            let bwi = min(Int(atr.t1BWI), 9)
            seconds = Double(1 << bwi) * 960 * 372 / f + 11 * Double(atr.fi ?? 372) / Double(atr.di ?? 1) / f
        } else {
            seconds = 960 * Double(atr.t0WaitingTimeInteger) * Double(atr.fi ?? 372) / f
        }
        return .microseconds(Int64(min(seconds, 3600) * 1_000_000))
    }
}

/// The deadline of one exchange and its cap, moved only forward.
struct ExchangeDeadline {
    let cap: Deadline
    let waitingTime: Duration
    let margin: Duration
    private(set) var current: Deadline

    /// `cap`: the deadline of the whole APDU when this command is one block of it.
    init(waitingTime: Duration, timeouts: ExchangeTimeouts, cap apduCap: Deadline? = nil) {
        let start = Deadline.now()
        cap = Deadline.min(start.advanced(by: timeouts.maximum), apduCap ?? .distantFuture)
        self.waitingTime = waitingTime
        margin = timeouts.transportMargin
        current = Deadline.min(start.advanced(by: waitingTime + margin), cap)
    }

    /// A time extension of `multiplier` waiting times, counted from now.
    mutating func extend(multiplier: UInt8) {
        let asked = Deadline.now().advanced(by: waitingTime * Int(max(multiplier, 1)) + margin)
        current = Deadline.min(max(current, asked), cap)
    }
}
