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

    /// Waiting time of the card at the reader's default clock, from its ATR
    /// (before any parameters are set), clamped to sane bounds.
    public static func cardWaitingTime(atr: ATR?, protocolType: UInt8?, clockKHz: UInt32) -> Duration {
        guard let atr else { return .seconds(1) }
        let t1 = protocolType == 1
        let times = waitingTimes(protocolType: t1 ? 1 : 0, fi: atr.fi ?? 372, di: atr.di ?? 1,
                                 waitingIntegers: t1 ? atr.t1BWI << 4 | atr.t1CWI : atr.t0WaitingTimeInteger,
                                 clockKHz: max(clockKHz, 1000))
        return min(times.block, .seconds(3600))
    }

    /// ISO/IEC 7816-3 §10.2, §11.4.3: T=0 WWT = 960 · WI · Fi / f; T=1 BWT =
    /// 11 etu + 2^BWI · 960 · 372 / f and CWT = (11 + 2^CWI) etu.
    /// `waitingIntegers`: WI for T=0, BWI (high nibble) and CWI (low nibble) for T=1.
    public static func waitingTimes(protocolType: UInt8, fi: Int, di: Int, waitingIntegers: UInt8,
                                    clockKHz: UInt32) -> (block: Duration, character: Duration) {
        let f = Double(max(clockKHz, 1)) * 1000
        let etu = Double(fi) / Double(max(di, 1)) / f
        if protocolType == 1 {
            let bwt = 11 * etu + Double(1 << min(Int(waitingIntegers >> 4), 9)) * 960 * 372 / f
            let cwt = Double(11 + (1 << Int(waitingIntegers & 0x0F))) * etu
            return (.microseconds(Int64(bwt * 1e6)), .microseconds(Int64(cwt * 1e6)))
        }
        return (.microseconds(Int64(960 * Double(waitingIntegers) * Double(fi) / f * 1e6)), .zero)
    }
}

/// The deadline of one exchange and its cap, moved only forward.
struct ExchangeDeadline {
    let cap: Deadline
    let waitingTime: Duration
    let margin: Duration
    private(set) var current: Deadline

    /// `cap`: the deadline of the whole APDU when this command is one block of
    /// it (already within the cap on one exchange); else the cap from now.
    init(waitingTime: Duration, timeouts: ExchangeTimeouts, cap apduCap: Deadline? = nil) {
        let start = Deadline.now()
        cap = apduCap ?? start.advanced(by: timeouts.maximum)
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
