/// Cards the simulator can insert, by name.
public enum CardCatalog {
    public static let defaultCard = ComplianceTestCard.Variant.direct.rawValue
    public static var names: [String] { ComplianceTestCard.Variant.allCases.map(\.rawValue) }

    public static func make(_ name: String) -> SimulatedCard? {
        ComplianceTestCard.Variant(rawValue: name).map { ComplianceTestCard($0) }
    }
}
