import ArgumentParser
import Foundation
import SimulatorCore
import SimulatorGadget
import SimulatorPCSC
import SimulatorUSB

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the simulated readers until SIGTERM.")

    @OptionGroup var directory: DirectoryOption
    @OptionGroup var readers: ReaderOptions

    @Flag(help: """
        Plug the readers into a umockdev testbed (created in $TMPDIR) instead of serving relay sockets; \
        prints UMOCKDEV_DIR=<testbed>: run libusb programs with it and LD_PRELOAD=\(MockUSBBus.preloadLibrary).
        """)
    var usb = false

    @Flag(help: """
        Serve the readers as real USB devices: configfs gadgets with FunctionFS, bound to free UDCs \
        (dummy_hcd in a test VM). Needs root, configfs, libcomposite and usb_f_fs; prints each reader's `list` line.
        """)
    var gadget = false

    func validate() throws {
        if usb && gadget { throw ValidationError("--usb and --gadget exclude each other") }
    }

    func run() throws {
        if usb && !MockUSBBus.underPreload { try UMockdevPreload.reexec() }
        let setups = try readers.setups()
        let mock = usb ? try MockUSBBus(log: { note($0) }) : nil
        let bus: ReaderBus? = gadget ? GadgetBus(mountDirectory: "\(directory.resolved)/ffs", log: { note($0) }) : mock
        let running = try startSimulator(directory: directory.resolved, setups: setups, readers: readers, bus: bus)
        if let mock {
            print("UMOCKDEV_DIR=\(mock.root)")
        } else if gadget {
            for line in running.simulator.listing() { print(line) }
        } else {
            for i in running.simulator.readers.indices {
                print("\(running.simulator.socketPath(i))\t\(running.simulator.friendlyName(i))")
            }
        }
        fflush(nil)
        StopSignal.wait()
        running.stop()
        if let mock { try? FileManager.default.removeItem(atPath: mock.root) }
    }
}

/// A started simulator and what to undo when it stops.
struct RunningSimulator {
    let simulator: Simulator
    let createdDirectory: Bool

    func stop() {
        simulator.stop()
        if createdDirectory { try? FileManager.default.removeItem(atPath: simulator.directory) }
    }
}

func startSimulator(directory: String, setups: [ReaderSetup], readers: ReaderOptions, bus: ReaderBus? = nil) throws -> RunningSimulator {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    let existed = fm.fileExists(atPath: directory, isDirectory: &isDir)
    if !existed { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    if FileManager.default.fileExists(atPath: "\(directory)/\(Simulator.controlSocketName)"),
       (try? ControlClient.request(directory: directory, .list)) != nil {
        throw ValidationError("a simulator is already running in \(directory)")
    }
    let recorder = try readers.record.map { path throws(SimulatorError) in try Recorder(path: path) }
    let capture = try readers.pcap.map { path throws(SimulatorError) in try USBCapture(path: path, showPINs: readers.pcapPins) }
    let simulator = try Simulator(directory: directory, setups: setups, bus: bus, recorder: recorder, capture: capture,
                                  pcscCards: PCSCCardSource.maker, log: { note($0) })
    try simulator.start(spinAfterReply: .microseconds(readers.spinUs))
    return RunningSimulator(simulator: simulator, createdDirectory: !existed)
}

/// SIGTERM, SIGINT and SIGHUP end the simulator. A handler writes to a pipe
/// the main thread waits on; the signals stay unblocked so children (pcscd)
/// inherit a clean mask.
enum StopSignal {
    nonisolated(unsafe) static var pipeFDs: [Int32] = [-1, -1]

    static func install() {
        pipe(&pipeFDs)
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig) { _ in
                var byte: UInt8 = 1
                _ = write(StopSignal.pipeFDs[1], &byte, 1)
            }
        }
    }

    static func wait() {
        if pipeFDs[0] < 0 { install() }
        var byte: UInt8 = 0
        while read(pipeFDs[0], &byte, 1) < 0 && errno == EINTR {}
    }
}
