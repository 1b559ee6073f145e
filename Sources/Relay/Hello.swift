import CCID

/// The first frame of every connection, server to client: protocol version
/// and the device's USB descriptors.
public struct RelayHello: Equatable, Sendable {
    public static let magic: [UInt8] = Array("SCCR".utf8)
    public static let versionMajor: UInt8 = 1
    public static let versionMinor: UInt8 = 0

    public var versionMajor: UInt8
    public var versionMinor: UInt8
    public var descriptors: USBDescriptorSet

    public init(descriptors: USBDescriptorSet,
                versionMajor: UInt8 = RelayHello.versionMajor, versionMinor: UInt8 = RelayHello.versionMinor) {
        self.descriptors = descriptors
        self.versionMajor = versionMajor
        self.versionMinor = versionMinor
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic + [versionMajor, versionMinor]
        out.appendBE(UInt16(truncatingIfNeeded: descriptors.device.count))
        out += descriptors.device
        out.appendBE(UInt16(truncatingIfNeeded: descriptors.configuration.count))
        out += descriptors.configuration
        let strings = descriptors.strings.sorted { $0.key < $1.key }
        out.append(UInt8(truncatingIfNeeded: strings.count))
        for (index, text) in strings {
            let utf8 = Array(text.utf8.prefix(Int(UInt16.max)))
            out.append(index)
            out.appendBE(UInt16(utf8.count))
            out += utf8
        }
        return out
    }

    public init(decoding payload: [UInt8]) throws(RelayError) {
        var r = ByteReader(payload)
        guard let magic = r.take(4), Array(magic) == Self.magic else { throw .badMagic }
        guard let major = r.u8(), let minor = r.u8() else { throw .malformed("hello") }
        guard major == Self.versionMajor else { throw .unsupportedVersion(major: major, minor: minor) }
        guard let dl = r.u16be(), let device = r.take(Int(dl)),
              let cl = r.u16be(), let config = r.take(Int(cl)),
              let count = r.u8() else { throw .malformed("hello descriptors") }
        var strings: [UInt8: String] = [:]
        for _ in 0..<count {
            guard let index = r.u8(), let len = r.u16be(), let utf8 = r.take(Int(len)) else {
                throw .malformed("hello strings")
            }
            strings[index] = String(decoding: utf8, as: UTF8.self)
        }
        guard r.remainingCount == 0 else { throw .malformed("hello: \(r.remainingCount) trailing bytes") }
        self.init(descriptors: USBDescriptorSet(device: Array(device), configuration: Array(config), strings: strings),
                  versionMajor: major, versionMinor: minor)
    }
}
