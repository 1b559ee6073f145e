import DriverSettings
#if canImport(Glibc)
import Glibc
#endif
import CPCSCLog
import CStayLoaded

/// The settings pcscd's copy of the driver runs with: its bundle's Info.plist
/// (found beside the loaded library, as pcscd found it) and pcscd's
/// environment. Read once, when first needed; pcscd itself reads Info.plist
/// only when it starts.
enum Configuration {
    static let current: DriverSettings = {
        let plistPath = bundleInfoPlistPath()
        let text = plistPath.flatMap(readSmallFile)
        let settings = DriverSettings(plist: text.map(InfoPlist.strings) ?? [:],
                                      environment: { getenv($0).map { String(cString: $0) } })
        // Straight to the log: Log itself asks for `current`.
        if plistPath != nil && text == nil {
            swiftccid_log(Int32(SWIFTCCID_LOG_ERROR), "cannot read \(plistPath ?? ""): using default settings")
        }
        for problem in settings.problems {
            swiftccid_log(Int32(SWIFTCCID_LOG_ERROR), "setting ignored: \(problem)")
        }
        swiftccid_log(Int32(SWIFTCCID_LOG_INFO), "settings: ifdLogLevel 0x\(String(settings.log.rawValue, radix: 16, uppercase: true)), "
                      + "usb-workers=\(settings.usbWorkers.rawValue) max-exchange-ms=\(settings.maxExchangeMs) "
                      + "(\(plistPath ?? "no Info.plist found"), then the environment)")
        return settings
    }()

    /// BUNDLE/Contents/Linux/libswiftccid.so -> BUNDLE/Contents/Info.plist,
    /// also when pcscd loaded it through a link (a reader.conf LIBPATH).
    private static func bundleInfoPlistPath() -> String? {
        guard let loaded = swiftccid_library_path(), let real = realpath(loaded, nil) else { return nil }
        defer { free(real) }
        let parts = String(cString: real).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[parts.count - 2] == "Linux" else { return nil }
        return (parts.dropLast(2) + ["Info.plist"]).joined(separator: "/")
    }

    /// At most 4 MiB: an Info.plist listing every reader is about 60 KiB.
    private static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[0..<n]
        }
        return nil
    }
}
