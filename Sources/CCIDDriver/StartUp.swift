#if canImport(Glibc)
import Glibc
#endif
import CCID
import ReaderQuirks
import ThreadSupport

extension Reader {
    /// The probes' short wait, before a quirk's factor: a reader that takes
    /// longer to say what is in its slot is out of step or broken.
    static let shortProbe: Duration = .milliseconds(100)

    /// The open sequence, as the reference driver's: a firmware too old to use
    /// is refused; a reader that needs time after opening gets it; then one
    /// GetSlotStatus with the full waiting time (only a gone device ends the
    /// open: a reader may first answer a command left from before), and two
    /// with a short one. The open fails only if both short probes fail.
    public func startUp() throws(DriverError) {
        if let refusal = quirks.refusal, case .firmwareRefused(let firstGood) = refusal.behaviour {
            throw .refused("firmware \(DeviceMatch.release(identity.bcdDevice)) is older than \(DeviceMatch.release(firstGood)) (quirk O1: \(refusal.reason)); "
                           + "set ifdDriverOptions quirks-off=O1 or SWIFTCCID_QUIRKS_OFF=O1 to use it anyway")
        }
        for line in quirks.descriptions { log(line) }
        if let delay = quirks.openDelay { Deadline.after(delay).sleepUntil() }
        if let version = identity.iccd { try resetICCD(version) }
        do throws(DriverError) {
            _ = try exchange(.getSlotStatus, slot: 0, waitingTime: controlWaitingTime)
        } catch .noDevice {
            throw .noDevice
        } catch {
            log("first GetSlotStatus at open: \(error)")
        }
        let short = Self.shortProbe * quirks.slotStatusFactor
        var failures: [DriverError] = []
        for _ in 0..<2 {
            do throws(DriverError) {
                _ = try exchange(.getSlotStatus, slot: 0, waitingTime: .zero, cap: .after(short))
                try askFirmwareFeatures()
                try loadDisplayPrompts()
                return
            } catch .noDevice {
                throw .noDevice
            } catch {
                failures.append(error)
            }
        }
        let ms = Int(short / .milliseconds(1))
        throw .refused("no answer to GetSlotStatus within \(ms) ms at open (\(failures.map { "\($0)" }.joined(separator: ", ")))")
    }

    /// Quirk P4: the firmware's own word on its PIN pad, when it gives it exactly;
    /// anything else (refused, another length) leaves the quirks as they are.
    private func askFirmwareFeatures() throws(DriverError) {
        guard let escape = quirks.firmwareFeaturesEscape else { return }
        let reply: Reply
        do throws(DriverError) { reply = try exchange(.escape(data: escape), slot: 0, waitingTime: controlWaitingTime) } catch {
            if error == .noDevice { throw error }
            return
        }
        guard reply.status.command == .processed, case .escape(let answer) = reply.body,
              let features = GemaltoFirmwareFeatures(answer: answer) else { return }
        refineQuirks(by: features)
        log("quirk P4: the firmware reports validation conditions 0x\(hexString([features.validationMask])), PINs of "
            + "\(features.minimumPINSize) to \(features.maximumPINSize) digits, modification fix \(features.modifyFixed ? "present" : "absent")")
    }

    /// What the GemPC Pinpad needs before it may show its prompts.
    static let promptsDelay: Duration = .seconds(1)

    /// Quirk P5: the pad's prompts, in the language of pcscd's LANG. The reference
    /// driver fails the open if the pad refuses them; a pad without prompts still
    /// takes PINs, so here a refusal is only logged.
    private func loadDisplayPrompts() throws(DriverError) {
        guard quirks.loadsDisplayPrompts else { return }
        Deadline.after(Self.promptsDelay).sleepUntil()
        let language = DisplayPrompts.language(fromLocale: getenv("LANG").map { String(cString: $0) })
        do throws(DriverError) {
            let reply = try exchange(.escape(data: DisplayPrompts.command(language: language)), slot: 0, waitingTime: controlWaitingTime)
            try check(reply)
            log("quirk P5: display prompts loaded (\(language))")
        } catch {
            if error == .noDevice { throw error }
            log("quirk P5: the pad refused its display prompts (\(error))")
        }
    }

    /// G3: an ICCD token's chip is powered off, on and off again at open (its
    /// state machine may be mid-command from an earlier host); failures are logged, not fatal.
    private func resetICCD(_ version: ICCDVersion) throws(DriverError) {
        log("\(version): power off, on, off at open")
        let steps: [Command.Body] = [.iccPowerOff, .iccPowerOn(voltage: .automatic), .iccPowerOff]
        for body in steps {
            do throws(DriverError) {
                _ = try exchange(body, slot: 0, waitingTime: controlWaitingTime)
            } catch .noDevice {
                throw .noDevice
            } catch {
                log("\(version) at open: \(body): \(error)")
            }
        }
    }

}
