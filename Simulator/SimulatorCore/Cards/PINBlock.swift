import CCID

/// Fills the PIN the "user" typed into the APDU template of a CCID Secure
/// command (CCID 1.1 §6.1.11), as a PIN pad does.
enum PINBlock {
    static func fill(_ entry: PINEntry, digits: String) -> [UInt8]? {
        guard entry.apdu.count >= 5 else { return nil }
        let format = entry.formatString, block = entry.pinBlockString, lengthFormat = entry.pinLengthFormat
        let offsets: [UInt8]
        switch entry.operation {
        case .verify: offsets = [0]
        // bConfirmPIN bit 1: the old PIN is entered too.
        case .modify(let old, let new, let confirm): offsets = confirm & 0x02 != 0 ? [old, new] : [new]
        }
        var apdu = entry.apdu
        let pin = Array(digits.utf8).filter { $0 >= 0x30 && $0 <= 0x39 }.map { $0 - 0x30 }
        let byteUnits = format & 0x80 != 0
        let pinPosition = Int((format >> 3) & 0x0F)
        let type = format & 0x03
        let blockSize = Int(block & 0x0F)
        let lengthBits = Int(block >> 4)
        let lengthPosition = Int(lengthFormat & 0x0F)
        let lengthInBytes = lengthFormat & 0x10 != 0
        for offset in offsets {
            let base = 5 + Int(offset)   // data field of a short APDU, plus the insertion offset
            var bitPosition = (base + pinPosition * (byteUnits ? 1 : 0)) * 8 + (byteUnits ? 0 : pinPosition)
            switch type {
            case 0x02: // ASCII
                for d in pin { write(&apdu, bit: bitPosition, width: 8, value: Int(d) + 0x30); bitPosition += 8 }
            case 0x01: // BCD
                for d in pin { write(&apdu, bit: bitPosition, width: 4, value: Int(d)); bitPosition += 4 }
            default:   // binary
                for d in pin { write(&apdu, bit: bitPosition, width: 8, value: Int(d)); bitPosition += 8 }
            }
            if lengthBits > 0 {
                let at = base * 8 + (lengthInBytes ? lengthPosition * 8 : lengthPosition)
                write(&apdu, bit: at, width: lengthBits, value: pin.count)
            }
            _ = blockSize
        }
        return apdu
    }

    /// Writes `value` into `width` bits at bit offset `bit` (MSB first); ignores what falls outside.
    static func write(_ bytes: inout [UInt8], bit: Int, width: Int, value: Int) {
        for k in 0..<width {
            let position = bit + k
            let index = position / 8
            guard index >= 0, index < bytes.count else { return }
            let mask = UInt8(0x80) >> UInt8(position % 8)
            if value >> (width - 1 - k) & 1 == 1 { bytes[index] |= mask } else { bytes[index] &= ~mask }
        }
    }
}
