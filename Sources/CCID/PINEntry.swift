/// What PC_to_RDR_Secure asks a PIN pad to do (CCID 1.1 §6.1.11.7 and
/// §6.1.11.8): the PIN verification or modification data structure, with
/// bPINOperation first. The one home of its layout: the driver builds it
/// from PC/SC Part 10's structures, the simulator's PIN pad reads it.
public struct PINEntry: Equatable, Sendable {
    public enum Operation: Equatable, Sendable {
        case verify
        /// Where the old and new PIN go in the APDU's data, and bConfirmPIN
        /// (bit 0: enter the new PIN twice; bit 1: the old PIN is entered too).
        case modify(insertionOffsetOld: UInt8, insertionOffsetNew: UInt8, confirmPIN: UInt8)
    }

    public var operation: Operation
    /// bTimeOut: seconds the user has (0: the reader's default).
    public var timeout: UInt8
    /// bmFormatString: units (bit 7), PIN position (bits 6–3), justification (bit 2), type (bits 1–0).
    public var formatString: UInt8
    /// bmPINBlockString: PIN length field size in bits (high nibble), PIN block size in bytes (low nibble).
    public var pinBlockString: UInt8
    /// bmPINLengthFormat: units (bit 4) and position (bits 3–0) of the PIN length field.
    public var pinLengthFormat: UInt8
    public var maxExtraDigit: UInt16
    public var entryValidationCondition: UInt8
    public var numberMessage: UInt8
    public var languageID: UInt16
    /// bMsgIndex (verify), bMsgIndex1…3 (modify: as many as bNumberMessage asks, at least one).
    public var messageIndexes: [UInt8]
    public var teoPrologue: [UInt8]
    /// The command APDU the PIN is written into.
    public var apdu: [UInt8]

    public init(operation: Operation, timeout: UInt8, formatString: UInt8, pinBlockString: UInt8, pinLengthFormat: UInt8,
                maxExtraDigit: UInt16, entryValidationCondition: UInt8, numberMessage: UInt8, languageID: UInt16,
                messageIndexes: [UInt8], teoPrologue: [UInt8], apdu: [UInt8]) {
        self.operation = operation
        self.timeout = timeout
        (self.formatString, self.pinBlockString, self.pinLengthFormat) = (formatString, pinBlockString, pinLengthFormat)
        (self.maxExtraDigit, self.entryValidationCondition) = (maxExtraDigit, entryValidationCondition)
        (self.numberMessage, self.languageID, self.messageIndexes) = (numberMessage, languageID, messageIndexes)
        (self.teoPrologue, self.apdu) = (teoPrologue, apdu)
    }

    /// bMsgIndex2 and 3 of a modification are present only as bNumberMessage asks.
    static func modifyMessageCount(_ numberMessage: UInt8) -> Int { numberMessage >= 3 ? 3 : (numberMessage >= 2 ? 2 : 1) }

    /// The shortest APDU the structures may carry: a header.
    public static let shortestAPDU = 4

    // MARK: CCID

    /// Decodes PC_to_RDR_Secure's abData; nil if it is not a verification or
    /// modification structure, or is cut short. `modifyIndexCount`: as `ccidEncoded`'s.
    public init?(ccid bytes: [UInt8], modifyIndexCount: Int? = nil) {
        var r = ByteReader(bytes[...])
        guard let op = r.u8(), op <= 1, let timeout = r.u8(), let format = r.u8(), let block = r.u8(),
              let lengthFormat = r.u8() else { return nil }
        let operation: Operation
        if op == 1 {
            guard let old = r.u8(), let new = r.u8() else { return nil }
            operation = .modify(insertionOffsetOld: old, insertionOffsetNew: new, confirmPIN: 0)
        } else {
            operation = .verify
        }
        guard let extra = r.u16le() else { return nil }
        var confirm: UInt8 = 0
        if op == 1 { guard let c = r.u8() else { return nil }; confirm = c }
        guard let validation = r.u8(), let messages = r.u8(), let language = r.u16le() else { return nil }
        let indexCount = op == 1 ? min(max(modifyIndexCount ?? Self.modifyMessageCount(messages), 1), 3) : 1
        guard let indexes = r.take(indexCount).map(Array.init), let prologue = r.take(3).map(Array.init) else { return nil }
        let apdu = Array(r.take(r.remainingCount) ?? [])
        guard apdu.count >= Self.shortestAPDU else { return nil }
        if case .modify(let old, let new, _) = operation {
            self.init(operation: .modify(insertionOffsetOld: old, insertionOffsetNew: new, confirmPIN: confirm), timeout: timeout,
                      formatString: format, pinBlockString: block, pinLengthFormat: lengthFormat, maxExtraDigit: extra,
                      entryValidationCondition: validation, numberMessage: messages, languageID: language,
                      messageIndexes: indexes, teoPrologue: prologue, apdu: apdu)
        } else {
            self.init(operation: .verify, timeout: timeout, formatString: format, pinBlockString: block,
                      pinLengthFormat: lengthFormat, maxExtraDigit: extra, entryValidationCondition: validation,
                      numberMessage: messages, languageID: language, messageIndexes: indexes, teoPrologue: prologue, apdu: apdu)
        }
    }

    /// `modifyIndexCount`: for readers whose firmware wants that many bMsgIndex
    /// bytes in a modification whatever bNumberMessage says (missing ones are 0).
    public func ccidEncoded(modifyIndexCount: Int? = nil) -> [UInt8] {
        var out: [UInt8]
        switch operation {
        case .verify:
            out = [0x00, timeout, formatString, pinBlockString, pinLengthFormat]
            out.appendLE(maxExtraDigit)
            out += [entryValidationCondition, numberMessage]
            out.appendLE(languageID)
            out += messageIndexes.prefix(1)
        case .modify(let old, let new, let confirm):
            out = [0x01, timeout, formatString, pinBlockString, pinLengthFormat, old, new]
            out.appendLE(maxExtraDigit)
            out += [confirm, entryValidationCondition, numberMessage]
            out.appendLE(languageID)
            let count = min(max(modifyIndexCount ?? Self.modifyMessageCount(numberMessage), 1), 3)
            out += Array(messageIndexes.prefix(count)) + Array(repeating: 0, count: max(0, count - messageIndexes.count))
        }
        return out + teoPrologue + apdu
    }

    // MARK: PC/SC Part 10

    /// PIN_VERIFY_STRUCTURE (PC/SC Part 10 §2.5.2): as CCID's, with
    /// bTimerOut2 and ulDataLength; nil if malformed.
    public init?(part10Verify s: [UInt8]) {
        var r = ByteReader(s[...])
        guard let timeout = r.u8(), r.u8() != nil, let format = r.u8(), let block = r.u8(), let lengthFormat = r.u8(),
              let extra = r.u16le(), let validation = r.u8(), let messages = r.u8(), let language = r.u16le(),
              let index = r.u8(), let prologue = r.take(3).map(Array.init), let length = r.u32le() else { return nil }
        let apdu = Array(r.take(r.remainingCount) ?? [])
        guard Int(length) == apdu.count, apdu.count >= Self.shortestAPDU else { return nil }
        self.init(operation: .verify, timeout: timeout, formatString: format, pinBlockString: block, pinLengthFormat: lengthFormat,
                  maxExtraDigit: extra, entryValidationCondition: validation, numberMessage: messages, languageID: language,
                  messageIndexes: [index], teoPrologue: prologue, apdu: apdu)
    }

    /// PIN_MODIFY_STRUCTURE (PC/SC Part 10 §2.5.3): all three bMsgIndex
    /// fields always present; nil if malformed.
    public init?(part10Modify s: [UInt8]) {
        var r = ByteReader(s[...])
        guard let timeout = r.u8(), r.u8() != nil, let format = r.u8(), let block = r.u8(), let lengthFormat = r.u8(),
              let old = r.u8(), let new = r.u8(), let extra = r.u16le(), let confirm = r.u8(), let validation = r.u8(),
              let messages = r.u8(), let language = r.u16le(), let indexes = r.take(3).map(Array.init), let prologue = r.take(3).map(Array.init),
              let length = r.u32le() else { return nil }
        let apdu = Array(r.take(r.remainingCount) ?? [])
        guard Int(length) == apdu.count, apdu.count >= Self.shortestAPDU else { return nil }
        self.init(operation: .modify(insertionOffsetOld: old, insertionOffsetNew: new, confirmPIN: confirm), timeout: timeout,
                  formatString: format, pinBlockString: block, pinLengthFormat: lengthFormat, maxExtraDigit: extra,
                  entryValidationCondition: validation, numberMessage: messages, languageID: language,
                  messageIndexes: Array(indexes.prefix(Self.modifyMessageCount(messages))), teoPrologue: prologue, apdu: apdu)
    }
}
