import CCID

/// FunctionFS's ep0 protocol (linux/usb/functionfs.h) as values: the
/// descriptor and string blobs a function writes first, and the events it
/// reads after. The kernel checks a CCID class descriptor only inside a
/// class 0x0B interface, so vendor-class (0xFF) readers cannot be gadgets.
public enum FunctionFS {
    /// The CCID interface at full and high speed, and the endpoint addresses
    /// in declaration order: FunctionFS names their files ep1, ep2, … that way.
    public struct Function: Equatable, Sendable {
        public var fullSpeed: [[UInt8]]
        public var highSpeed: [[UInt8]]
        public var endpointAddresses: [UInt8]
    }

    public enum LayoutError: Error, Equatable, CustomStringConvertible {
        case malformed
        case noCCIDInterface
        case vendorClass

        public var description: String {
            switch self {
            case .malformed: "the configuration descriptor is malformed"
            case .noCCIDInterface: "the configuration has no CCID interface"
            case .vendorClass: "FunctionFS accepts a CCID class descriptor only in a class 0x0B interface, not 0xFF"
            }
        }
    }

    /// The CCID interface of `configuration` (the first of class 0x0B or 0xFF:
    /// a composite token's HID interfaces come from configfs's own hid
    /// function) and what follows it up to the next interface, numbered 0 as
    /// FunctionFS wants (the kernel renumbers it in the configuration), at full
    /// speed as given and at high speed with 512-byte bulk packets and the
    /// interrupt interval in microframes.
    public static func function(fromConfiguration configuration: [UInt8]) throws(LayoutError) -> Function {
        var pieces: [[UInt8]] = []
        var i = configuration.count >= 9 ? Int(configuration[0]) : 0
        guard i == 9 else { throw .malformed }
        while i < configuration.count {
            let length = Int(configuration[i])
            guard length >= 2, i + length <= configuration.count else { throw .malformed }
            let d = Array(configuration[i..<(i + length)])
            if d[1] == 0x04 && !pieces.isEmpty { break }
            if d[1] == 0x04, d.count >= 9, d[5] == 0x0B || d[5] == 0xFF {
                var first = d
                first[2] = 0
                pieces.append(first)
            } else if !pieces.isEmpty {
                pieces.append(d)
            }
            i += length
        }
        guard let interface = pieces.first, interface.count >= 9 else { throw .noCCIDInterface }
        guard interface[5] == 0x0B else { throw interface[5] == 0xFF ? .vendorClass : .noCCIDInterface }
        var high: [[UInt8]] = []
        var addresses: [UInt8] = []
        for d in pieces {
            guard d[1] == 0x05, d.count >= 7 else { high.append(d); continue }
            addresses.append(d[2])
            var h = d
            switch d[3] & 0x03 {
            case 0x02: h[4] = 0x00; h[5] = 0x02
            case 0x03: h[6] = highSpeedInterval(milliseconds: d[6])
            default: break
            }
            high.append(h)
        }
        return Function(fullSpeed: pieces, highSpeed: high, endpointAddresses: addresses)
    }

    /// A high-speed interrupt endpoint polls every 2^(bInterval-1) microframes (125 µs).
    static func highSpeedInterval(milliseconds: UInt8) -> UInt8 {
        var microframes = max(1, Int(milliseconds)) * 8
        var exponent: UInt8 = 1
        while microframes > 1 && exponent < 16 { microframes /= 2; exponent += 1 }
        return exponent
    }

    /// The v2 descriptors blob (FUNCTIONFS_DESCRIPTORS_MAGIC_V2, full and high speed).
    public static func descriptors(_ function: Function) -> [UInt8] {
        let body: [UInt8] = Array(function.fullSpeed.joined()) + Array(function.highSpeed.joined())
        var out: [UInt8] = []
        out.appendLE(UInt32(3))
        out.appendLE(UInt32(20 + body.count))
        out.appendLE(UInt32(0x1 | 0x2))
        out.appendLE(UInt32(function.fullSpeed.count))
        out.appendLE(UInt32(function.highSpeed.count))
        return out + body
    }

    /// No strings: the interface names none (FUNCTIONFS_STRINGS_MAGIC, 0 strings, 0 languages).
    public static let noStrings: [UInt8] = [2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    public enum EventType: UInt8, Sendable {
        case bind = 0, unbind, enable, disable, setup, suspend, resume
    }

    /// struct usb_functionfs_event: the 8-byte setup packet, the type, 3 bytes of padding.
    public struct Event: Equatable, Sendable {
        public var type: EventType
        public var setup: [UInt8]
    }

    public static let eventSize = 12

    /// Events in what one read of ep0 returned; unknown types are skipped.
    public static func events(_ bytes: ArraySlice<UInt8>) -> [Event] {
        var out: [Event] = []
        var i = bytes.startIndex
        while bytes.endIndex - i >= eventSize {
            if let type = EventType(rawValue: bytes[i + 8]) { out.append(Event(type: type, setup: Array(bytes[i..<(i + 8)]))) }
            i += eventSize
        }
        return out
    }
}
