import CCID
import Relay
import ThreadSupport
import USBTransport

/// How the driver reaches a device pcscd names: a relay socket, an attach
/// worker's socket (worker mode), or libusb inside pcscd.
enum Transports {
    static func open(_ name: DeviceName) throws(Registry.OpenError) -> any CCIDTransport {
        switch name {
        case .relay(let path):
            do throws(RelayConnectError) {
                return try RelayClientTransport(path: path, deadline: .after(.seconds(5)), spinBudget: Settings.relaySpin,
                                                log: { Log.error($0) })
            } catch {
                throw .connect("\(path): \(error)")
            }
        case .usb(let usb) where Settings.usbWorkers:
            return try WorkerConnection.connect(usb)
        case .usb(let usb):
            do throws(USBOpenError) {
                return try USBTransport(name: usb, log: { Log.error($0) })
            } catch {
                if case .notFound = error { throw .gone("\(error)") }
                throw .connect("\(usb): \(error)")
            }
        }
    }
}
