import ArgumentParser
import CCID
import ReaderQuirks

/// The driver's quirk table, for packagers and for owners of odd readers.
struct Quirks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the readers and cards the driver treats apart (its quirk table): id, name, devices, why.",
        discussion: "A quirk is switched off with ifdDriverOptions quirks-off=ID in the bundle's Info.plist, or "
            + "SWIFTCCID_QUIRKS_OFF=ID in pcscd's environment (several: ID+ID). `doctor` names those a device gets.")

    @Option(help: "Only the entries for this VID:PID (hex, as 08e6:3437).") var device: String?

    func validate() throws {
        if let device, Self.ids(device) == nil { throw ValidationError("--device is VID:PID in hex, as 08e6:3437") }
    }

    func run() {
        let wanted = device.flatMap(Self.ids)
        for q in QuirkTable.entries {
            if let (vid, pid) = wanted, !q.devices.contains(where: { $0.vendorID == vid && ($0.productID == nil || $0.productID == pid) }) {
                continue
            }
            let key = q.atr.map { "card ATR " + hexString($0) }
                ?? q.messageLength.map { "any device with dwMaxCCIDMessageLength \($0)" }
                ?? q.devices.map(\.description).joined(separator: ", ")
            print("\(q.id)\t\(q.name)\t\(key)\t\(q.reason)")
        }
    }

    static func ids(_ text: String) -> (UInt16, UInt16)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let v = UInt16(parts[0], radix: 16), let p = UInt16(parts[1], radix: 16) else { return nil }
        return (v, p)
    }
}
