import CCID
import CCIDDriver
import CPCSCLite
import ThreadSupport

/// SCARD_ATTR_VALUE(class, tag) from reader.h: a function-like macro Swift cannot import.
func scardAttribute(_ attributeClass: Int32, _ tag: UInt) -> UInt { UInt(attributeClass) << 16 | tag }

enum Attribute {
    static let vendorName = scardAttribute(SCARD_CLASS_VENDOR_INFO, 0x0100)
    static let vendorIFDVersion = scardAttribute(SCARD_CLASS_VENDOR_INFO, 0x0102)
    static let vendorIFDSerialNo = scardAttribute(SCARD_CLASS_VENDOR_INFO, 0x0103)
    static let channelID = scardAttribute(SCARD_CLASS_COMMUNICATIONS, 0x0110)
    static let currentProtocolType = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0201)
    static let currentClock = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0202)
    static let currentF = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0203)
    static let currentD = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0204)
    static let currentN = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0205)
    static let currentW = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0206)
    static let currentIFSC = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0207)
    static let currentIFSD = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0208)
    static let currentBWT = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x0209)
    static let currentCWT = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x020A)
    static let currentEBCEncoding = scardAttribute(SCARD_CLASS_IFD_PROTOCOL, 0x020B)
    static let parameterAttributes: Set<UInt> = [currentF, currentD, currentN, currentW, currentIFSC, currentIFSD,
                                                 currentBWT, currentCWT, currentEBCEncoding]
    static let iccPresence = scardAttribute(SCARD_CLASS_ICC_STATE, 0x0300)
    static let iccInterfaceStatus = scardAttribute(SCARD_CLASS_ICC_STATE, 0x0301)
    static let atrString = scardAttribute(SCARD_CLASS_ICC_STATE, 0x0303)
    static let maxInput = scardAttribute(SCARD_CLASS_VENDOR_DEFINED, 0xA007)
}

/// The value of a capability or attribute for one LUN, or nil if unknown.
/// DWORD-valued attributes are 32-bit little-endian, as PC/SC defines DWORD.
func capability(_ tag: UInt, entry: Registry.Entry) -> [UInt8]? {
    let reader = entry.reader
    let identity = reader.identity
    let state = reader.state(of: entry.slot)
    func dword(_ v: UInt32) -> [UInt8] { var b: [UInt8] = []; b.appendLE(v); return b }
    func text(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
    switch tag {
    case UInt(TAG_IFD_ATR), Attribute.atrString:
        return state?.atr ?? []
    case UInt(TAG_IFD_SLOTS_NUMBER):
        return [UInt8(clamping: reader.slotCount)]
    case UInt(TAG_IFD_SIMULTANEOUS_ACCESS):
        // Readers this driver can serve at once: no fixed table, so the most the byte holds.
        return [255]
    case UInt(TAG_IFD_THREAD_SAFE), UInt(TAG_IFD_SLOT_THREAD_SAFE):
        // Each reader serialises its own exchanges, so pcscd may call concurrently.
        return [1]
    case UInt(TAG_IFD_DEVICE_REMOVED):
        // pcscd asks before it tells us (IFDHSetCapabilities) that it is removing a
        // hotplugged reader; then waits end at once instead of at their deadlines.
        return [1]
    case UInt(TAG_IFD_POLLING_THREAD_KILLABLE):
        // Never pthread_cancel Swift code: pcscd stops polling with TAG_IFD_STOP_POLLING_THREAD.
        return [0]
    case Attribute.vendorName:
        return text(identity.manufacturer)
    case Attribute.vendorIFDVersion:
        // 0xMMmmbbbb from bcdDevice 0xMMmm.
        return dword(UInt32(identity.bcdDevice) << 16)
    case Attribute.vendorIFDSerialNo:
        return identity.serialNumber.isEmpty ? nil : text(identity.serialNumber)
    case Attribute.channelID:
        // 0xDDDDCCCC: DDDD 0x0020 = USB; relay devices are USB devices behind a socket.
        return dword(0x0020_0000 | UInt32(identity.interfaceNumber))
    case Attribute.currentProtocolType:
        guard let p = state?.protocolType else { return dword(0) }
        return dword(p == 1 ? UInt32(SCARD_PROTOCOL_T1) : UInt32(SCARD_PROTOCOL_T0))
    case Attribute.iccPresence:
        // 0 absent, 1 present (no swallowing mechanism).
        let status = try? reader.iccStatus(slot: entry.slot)
        return [status == .presentActive || status == .presentInactive ? 1 : 0]
    case Attribute.iccInterfaceStatus:
        return [state?.powered == true ? 1 : 0]
    case Attribute.maxInput:
        return dword(UInt32(clamping: maxCommandLength(reader.descriptor)))
    case Attribute.currentClock:
        return dword(reader.descriptor.defaultClock)
    case let tag where Attribute.parameterAttributes.contains(tag):
        // From the reader itself (GetParameters), so they show what is really in force.
        guard state?.powered == true, let p = try? reader.currentParameters(slot: entry.slot) else { return nil }
        let times = p.waitingTimes(clockKHz: reader.descriptor.defaultClock)
        switch tag {
        case Attribute.currentF: return dword(UInt32(p.fi))
        case Attribute.currentD: return dword(UInt32(p.di))
        case Attribute.currentN: return dword(UInt32(p.guardTime))
        case Attribute.currentW: return p.protocolType == 0 ? dword(UInt32(p.waitingIntegers)) : nil
        case Attribute.currentIFSC:
            guard p.protocolType == 1 else { return nil }
            return dword(UInt32(reader.currentIFSC(slot: entry.slot) ?? Int(p.ifsc ?? 32)))
        case Attribute.currentIFSD: return p.protocolType == 1 ? dword(UInt32(reader.ifsd)) : nil
        // Waiting times in microseconds.
        case Attribute.currentBWT: return p.protocolType == 1 ? dword(UInt32(clamping: times.block.nanosecondsClamped / 1000)) : nil
        case Attribute.currentCWT: return p.protocolType == 1 ? dword(UInt32(clamping: times.character.nanosecondsClamped / 1000)) : nil
        case Attribute.currentEBCEncoding: return p.protocolType == 1 ? dword(p.edc == .crc ? 1 : 0) : nil
        default: return nil
        }
    default:
        return nil
    }
}

/// The largest command APDU the driver carries for this reader.
func maxCommandLength(_ d: ClassDescriptor) -> Int {
    switch d.exchangeLevel {
    // At TPDU and character level the driver chains T=1 blocks or envelopes T=0 commands itself.
    case .extendedAPDU, .tpdu, .character: return 4 + 3 + 65535 + 2
    default: return min(d.maxMessageDataLength, 4 + 1 + 255 + 1)
    }
}
