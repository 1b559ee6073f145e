/// Spin-then-block for a wait that is usually short: spin for at most
/// `budget`, and only while recent waits ended within it, so a peer that
/// answers fast never pays a thread wake-up and a slow one costs no CPU.
public struct AdaptiveSpin: Sendable {
    public let budget: Duration
    /// Recent waits, smoothed (exponential average, weight 1/4), in nanoseconds.
    private var typicalNanoseconds: UInt64 = 0

    public init(budget: Duration) { self.budget = budget }

    public var isWorthSpinning: Bool {
        budget > .zero && typicalNanoseconds <= budget.nanosecondsClamped
    }

    public mutating func record(_ waited: Duration) {
        let ns = waited.nanosecondsClamped
        typicalNanoseconds = typicalNanoseconds == 0 ? ns : (typicalNanoseconds / 4 * 3) &+ ns / 4
    }
}
