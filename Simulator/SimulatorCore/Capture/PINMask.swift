import CCID

/// What a trace shows of a PIN: VERIFY, CHANGE REFERENCE DATA and RESET
/// RETRY COUNTER carry PINs in their data, which a shared trace must not
/// show (`--pcap-pins` shows them). Found in a PC_to_RDR_XfrBlock as a whole
/// APDU or TPDU, or inside a T=1 I-block; the data bytes become 0x2A ('*').
/// A PIN pad's own digits never cross USB: the reader puts them into the
/// APDU it sends the card.
enum PINMask {
    static let pinINS: Set<UInt8> = [0x20, 0x24, 0x2C]
    static let xfrBlock: UInt8 = 0x6F

    static func masked(_ message: [UInt8]) -> [UInt8] {
        guard message.count > ccidHeaderLength, message[0] == xfrBlock else { return message }
        var out = message
        let data = ccidHeaderLength
        // A T=1 I-block: NAD, PCB (bit 8 clear), LEN, then the APDU.
        if message.count > data + 3, message[data + 1] & 0x80 == 0, Int(message[data + 2]) <= message.count - data - 3,
           maskAPDU(&out, at: data + 3, end: data + 3 + Int(message[data + 2])) {
            return out
        }
        _ = maskAPDU(&out, at: data, end: message.count)
        return out
    }

    /// Masks the data of a short PIN APDU at `start` (header, Lc, data); false if there is none.
    private static func maskAPDU(_ bytes: inout [UInt8], at start: Int, end: Int) -> Bool {
        guard end - start > 5, end <= bytes.count, pinINS.contains(bytes[start + 1]) else { return false }
        let lc = Int(bytes[start + 4])
        guard lc > 0, start + 5 + lc <= end else { return false }
        for i in (start + 5)..<(start + 5 + lc) { bytes[i] = 0x2A }
        return true
    }
}
