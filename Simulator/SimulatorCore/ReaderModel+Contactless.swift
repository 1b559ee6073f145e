import ISO7816

/// A contactless reader's firmware (PC/SC Part 3): pseudo-APDUs of class FF
/// are for the reader, not the card. GET DATA (FF CA) returns the card's UID
/// (P1 00) or its ATS's historical bytes (P1 01), §3.2.2.1.3.
extension ReaderModel {
    static let functionNotSupported: [UInt8] = [0x6A, 0x81]

    /// The firmware's answer, or nil when the APDU is the card's.
    func pseudoAPDU(_ apdu: [UInt8], card: SimulatedCard) -> [UInt8]? {
        guard profile.contactless, apdu.first == 0xFF else { return nil }
        guard apdu.count == 5, apdu[1] == 0xCA, apdu[3] == 0x00, let uid = card.uid else { return Self.functionNotSupported }
        let data: [UInt8]
        switch apdu[2] {
        case 0x00: data = uid
        case 0x01: data = (try? ATR(card.atr))?.historicalBytes ?? []
        default: return Self.functionNotSupported
        }
        // Le 00: all of it; a shorter Le is told the length (6Cxx); a longer one gets all and 6282.
        let le = Int(apdu[4])
        if le == 0 || le == data.count { return data + [0x90, 0x00] }
        if le < data.count { return [0x6C, UInt8(truncatingIfNeeded: data.count)] }
        return data + [0x62, 0x82]
    }
}
