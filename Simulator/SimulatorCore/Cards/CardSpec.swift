/// A card for a slot as users name it, on the command line, in --config and
/// over the control socket: a built-in card ("compliance", …), or a card
/// process on a vpcd socket ("vpcd:PORT": it connects to us, as to vpcd;
/// "vpcd-connect:HOST:PORT": we connect to it, as to vicc --reversed); or a
/// recording answering again ("replay:FILE", from `--record FILE`).
public enum CardSpec: Sendable, Equatable, CustomStringConvertible, Codable {
    case builtIn(ComplianceTestCard.Variant)
    case vpcd(VPCDCardSocket.Mode)
    case replay(path: String)
    /// The card in a reader of another PC/SC stack ("pcsc:READER").
    case pcsc(reader: String)

    public static let defaultCard = CardSpec.builtIn(.direct)
    public static var syntax: [String] {
        ComplianceTestCard.Variant.allCases.map(\.rawValue) + ["vpcd:PORT", "vpcd-connect:HOST:PORT", "replay:FILE", "pcsc:READER"]
    }

    public init?(_ text: String) {
        if let variant = ComplianceTestCard.Variant(rawValue: text) {
            self = .builtIn(variant)
            return
        }
        if text.hasPrefix("replay:") {
            let path = String(text.dropFirst("replay:".count))
            guard !path.isEmpty else { return nil }
            self = .replay(path: path)
            return
        }
        if text.hasPrefix("pcsc:") {
            let reader = String(text.dropFirst("pcsc:".count))
            guard !reader.isEmpty else { return nil }
            self = .pcsc(reader: reader)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch (parts.first, parts.count) {
        case ("vpcd"?, 2):
            guard let port = UInt16(parts[1]) else { return nil }
            self = .vpcd(.listen(port: port))
        case ("vpcd-connect"?, 3):
            guard !parts[1].isEmpty, let port = UInt16(parts[2]), port > 0 else { return nil }
            self = .vpcd(.connect(host: String(parts[1]), port: port))
        default:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .builtIn(let variant): variant.rawValue
        case .vpcd(.listen(let port)): "vpcd:\(port)"
        case .vpcd(.connect(let host, let port)): "vpcd-connect:\(host):\(port)"
        case .replay(let path): "replay:\(path)"
        case .pcsc(let reader): "pcsc:\(reader)"
        }
    }

    /// A built-in card, made fresh.
    var builtInCard: SimulatedCard? {
        if case .builtIn(let variant) = self { ComplianceTestCard(variant) } else { nil }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let spec = CardSpec(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "no card '\(text)' (cards: \(Self.syntax.joined(separator: ", ")))"))
        }
        self = spec
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
