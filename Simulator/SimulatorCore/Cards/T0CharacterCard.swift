/// The card's side of T=0 at character level (ISO/IEC 7816-3 §10.3): it reads
/// a header, then answers with procedure bytes — ACK to receive the data, or
/// ACK, data and SW1 SW2 for a command that returns some.
struct T0CharacterCard: Sendable {
    private var input: [UInt8] = []
    private var header: [UInt8]? = nil

    /// Takes bytes from the reader; returns what the card sends back and how
    /// long it is busy first (NULL procedure bytes meanwhile).
    mutating func feed(_ bytes: [UInt8], card: SimulatedCard) -> (output: [UInt8], busy: Duration) {
        input += bytes
        guard let h = header else {
            guard input.count >= 5 else { return ([], .zero) }
            let h = Array(input.prefix(5))
            input.removeFirst(5)
            if card.commandCarriesData(h), h[4] > 0 {
                header = h
                return ([h[1]], .zero)      // ACK: send all the data
            }
            let answer = card.process(h, protocolType: 0)
            if answer.silent { return ([], .zero) }
            let data = answer.response.dropLast(2), status = Array(answer.response.suffix(2))
            return ((data.isEmpty ? [] : [h[1]] + data) + status, answer.busy)
        }
        let need = Int(h[4])
        guard input.count >= need else { return ([], .zero) }
        let data = Array(input.prefix(need))
        input.removeFirst(need)
        header = nil
        // A command that brought data gets no data back under T=0: only the status (61xx announces a response).
        let answer = card.process(h + data, protocolType: 0)
        if answer.silent { return ([], .zero) }
        return (Array(answer.response.suffix(2)), answer.busy)
    }

    mutating func reset() { self = T0CharacterCard() }
}
