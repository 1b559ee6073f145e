import USBTransport

/// pcscd's DEVICENAME for our readers. `relay:PATH` names a relay socket;
/// `usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD` comes from pcscd's hotplug.
enum DeviceName: Equatable {
    case relay(path: String)
    case usb(USBDeviceName)

    var isUSB: Bool { if case .usb = self { true } else { false } }

    init?(_ text: String) {
        if text.hasPrefix("relay:") {
            let path = String(text.dropFirst("relay:".count))
            guard path.hasPrefix("/"), !path.isEmpty, path.utf8.count < 108 else { return nil }
            self = .relay(path: path)
        } else if let usb = USBDeviceName(text) {
            self = .usb(usb)
        } else {
            return nil
        }
    }

    /// reader.conf entries with only CHANNELID N reach `IFDHCreateChannel`;
    /// channel N is the relay socket `$SWIFTCCID_RELAY_DIR/channel-N.sock`
    /// (default directory /run/swiftccid).
    static func forChannel(_ channel: UInt, directory: String?) -> DeviceName {
        let dir = directory.flatMap { $0.isEmpty ? nil : $0 } ?? "/run/swiftccid"
        return .relay(path: "\(dir)/channel-\(channel).sock")
    }
}
