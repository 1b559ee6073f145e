/// Something that puts cards into one slot and takes them out over time: a
/// vpcd socket (cards connect and go), a reader of another PC/SC stack (its
/// card comes and goes). The simulator stops it when the slot gets another card.
public protocol CardSource: AnyObject, Sendable {
    /// How `list` shows the slot while no card is in.
    var name: String { get }
    func stop()
}

/// What a card source tells its slot.
public struct SlotEvents: Sendable {
    public let insert: @Sendable (SimulatedCard) -> Void
    /// Takes the card out if it is still the slot's card.
    public let remove: @Sendable (SimulatedCard) -> Void
    public let log: @Sendable (String) -> Void
}

/// Makes the card source of `--card pcsc:READER` (ccid-sim's PC/SC client
/// module; the simulator core does not link pcsc-lite).
public typealias PCSCCardSourceMaker = @Sendable (_ reader: String, _ events: SlotEvents) throws(SimulatorError) -> CardSource
