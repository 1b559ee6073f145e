/// Where an attach worker (`ccid-attach`) serves the device it owns: the
/// driver in worker mode and the worker must agree on it.
public enum WorkerSocket {
    public static let defaultDirectory = "/run/swiftccid"

    /// DIR/usb-BBB-DDD.sock
    public static func path(bus: UInt8, address: UInt8, directory: String = defaultDirectory) -> String {
        "\(directory)/\(baseName(bus: bus, address: address)).sock"
    }

    public static func baseName(bus: UInt8, address: UInt8) -> String {
        "usb-\(USBDeviceName.threeDigits(bus))-\(USBDeviceName.threeDigits(address))"
    }
}
