#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An absolute point on the monotonic clock. Exchanges carry one of these
/// instead of a timeout so that retries and extensions cannot stretch them.
public struct Deadline: Comparable, Sendable, CustomStringConvertible {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public let nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static func now() -> Deadline {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Deadline(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    /// Now plus `duration`, saturating rather than overflowing.
    public static func after(_ duration: Duration) -> Deadline {
        now().advanced(by: duration)
    }

    public static let distantFuture = Deadline(nanoseconds: UInt64.max)

    public func advanced(by duration: Duration) -> Deadline {
        let ns = duration.nanosecondsClamped
        let (sum, overflow) = nanoseconds.addingReportingOverflow(ns)
        return Deadline(nanoseconds: overflow ? UInt64.max : sum)
    }

    /// Time left until the deadline; zero once it has passed.
    public var remaining: Duration {
        let current = Deadline.now().nanoseconds
        return current >= nanoseconds ? .zero : .nanoseconds(Int64(clamping: nanoseconds - current))
    }

    public var hasPassed: Bool { Deadline.now() >= self }

    /// Sleeps until the deadline (through signals: nanosleep is resumed with what is left).
    public func sleepUntil() {
        while true {
            let left = remaining.nanosecondsClamped
            guard left > 0 else { return }
            var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
            _ = nanosleep(&ts, nil)
        }
    }

    public static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.nanoseconds < rhs.nanoseconds }
    public static func min(_ a: Deadline, _ b: Deadline) -> Deadline { a < b ? a : b }
    public static func max(_ a: Deadline, _ b: Deadline) -> Deadline { a < b ? b : a }

    public var description: String { "deadline in \(remaining)" }
}

extension Duration {
    /// Non-negative nanoseconds, clamped to UInt64.
    public var nanosecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (whole, o1) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return UInt64.max }
        let (sum, o2) = whole.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return o2 ? UInt64.max : sum
    }

    public var milliseconds: Int64 { Int64(clamping: nanosecondsClamped / 1_000_000) }
}
