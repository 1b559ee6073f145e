// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "SwiftCCID",
    products: [
        // The IFD handler pcscd loads: build/ifd-swiftccid.bundle/Contents/Linux/libswiftccid.so
        .library(name: "swiftccid", type: .dynamic, targets: ["IFDHandler"]),
        .executable(name: "ccid-sim", targets: ["ccid-sim"]),
        .executable(name: "ccid-attach", targets: ["ccid-attach"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // pcsc-lite's headers only. Its directory is what `pkg-config --cflags libpcsclite`
        // gives on Debian (the Makefile checks); a pkg-config system library would also
        // link libpcsclite, the client library, into pcscd.
        .target(name: "CPCSCLite", cSettings: [.unsafeFlags(["-I/usr/include/PCSC"])]),
        .target(name: "CPCSCLog"),
        .target(name: "CStayLoaded"),
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),
        .target(name: "ThreadSupport"),
        // The driver's settings (Info.plist keys, environment), pure.
        .target(name: "DriverSettings"),
        .target(name: "CCID", dependencies: ["ThreadSupport"]),
        .target(name: "ISO7816"),
        // The relay's client side (in the bundle) and its server side (workers and the simulator only).
        .target(name: "Relay", dependencies: ["CCID", "ThreadSupport"]),
        .target(name: "RelayServer", dependencies: ["Relay", "CCID", "ThreadSupport"]),
        // Real readers' firmware defects and what the driver does about them, as data.
        .target(name: "ReaderQuirks", dependencies: ["CCID"]),
        .target(name: "CCIDDriver", dependencies: ["CCID", "ISO7816", "ReaderQuirks", "ThreadSupport"]),
        // What PC/SC asks of a reader driver beyond CCID: Part 10 features, pure.
        .target(name: "PCSCSupport", dependencies: ["CCID"]),
        .target(name: "USBTransport", dependencies: ["CCID", "CLibUSB", "ThreadSupport"]),
        .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // ccid-attach: one USB reader served as a relay socket, in its own sandboxed process.
        .target(name: "AttachWorker", dependencies: ["USBTransport", "Relay", "RelayServer", "CCID", "CUdev", "CSystemd", "ThreadSupport"]),
        .executableTarget(name: "ccid-attach",
                          dependencies: ["AttachWorker", "USBTransport", "Relay", "RelayServer", "ReaderQuirks", "DriverSettings", "CCID",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "IFDHandler", dependencies: ["CCIDDriver", "ReaderQuirks", "PCSCSupport", "Relay", "USBTransport", "CPCSCLite", "CPCSCLog", "CStayLoaded",
                                                   "ThreadSupport", "DriverSettings"],
                swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]),
        // umockdev's C API, for the simulator's USB mode only (never in the bundle).
        .systemLibrary(name: "CUMockdev", path: "Simulator/CUMockdev", pkgConfig: "umockdev-1.0",
                       providers: [.apt(["libumockdev-dev"])]),
        .target(name: "CUSBMock", dependencies: ["CUMockdev"], path: "Simulator/CUSBMock"),
        .target(name: "SimulatorCore", dependencies: ["CCID", "ISO7816", "Relay", "RelayServer", "ThreadSupport"],
                path: "Simulator/SimulatorCore"),
        .target(name: "SimulatorUSB", dependencies: ["SimulatorCore", "CUSBMock", "CCID", "ThreadSupport"],
                path: "Simulator/SimulatorUSB"),
        // Real USB devices through configfs and FunctionFS (the VM test's gadget readers).
        .target(name: "SimulatorGadget", dependencies: ["SimulatorCore", "CCID", "ThreadSupport"],
                path: "Simulator/SimulatorGadget"),
        // pcsc-lite's client library, for cards in other PC/SC readers (--card pcsc:READER).
        // Headers only: SimulatorPCSC opens libpcsclite when a pcsc: card is asked for.
        .target(name: "CPCSCClient", path: "Simulator/CPCSCClient", cSettings: [.unsafeFlags(["-I/usr/include/PCSC"])]),
        .target(name: "SimulatorPCSC", dependencies: ["SimulatorCore", "CPCSCClient", "CCID", "ThreadSupport"],
                path: "Simulator/SimulatorPCSC", swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])]),
        .executableTarget(name: "ccid-sim",
                          dependencies: ["SimulatorCore", "SimulatorUSB", "SimulatorGadget", "SimulatorPCSC", "Relay",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Simulator/ccid-sim"),
        // Helpers the test targets share.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "CCIDTests", dependencies: ["CCID", "TestSupport"]),
        .testTarget(name: "DriverSettingsTests", dependencies: ["DriverSettings"]),
        .testTarget(name: "ISO7816Tests", dependencies: ["ISO7816", "TestSupport"]),
        .testTarget(name: "USBTransportTests", dependencies: ["USBTransport"]),
        .testTarget(name: "AttachWorkerTests", dependencies: ["AttachWorker"]),
        .testTarget(name: "SimulatorGadgetTests", dependencies: ["SimulatorGadget", "SimulatorCore", "CCID"]),
        .testTarget(name: "RelayTests", dependencies: ["Relay", "RelayServer", "CCID", "SimulatorCore", "ThreadSupport", "TestSupport"]),
        .testTarget(name: "DriverTests", dependencies: ["CCIDDriver", "ReaderQuirks", "PCSCSupport", "SimulatorCore", "Relay", "CCID", "ISO7816", "ThreadSupport", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets exist only for `make fuzz` (swift build --sanitize=fuzzer): the
// binary takes its main from libFuzzer, so an ordinary build could not link it.
if Context.environment["SWIFTCCID_FUZZ"] == "1" {
    package.targets.append(.executableTarget(name: "ccid-fuzz", dependencies: ["CCID", "CCIDDriver", "ISO7816", "Relay", "ThreadSupport"],
                                             path: "Fuzz/ccid-fuzz", swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    package.products.append(.executable(name: "ccid-fuzz", targets: ["ccid-fuzz"]))
}
