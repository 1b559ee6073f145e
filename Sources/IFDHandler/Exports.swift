import CCID
import CCIDDriver
import CPCSCLite
import PCSCSupport

// The IFD Handler API v3 entry points pcscd resolves by name. Nothing here
// traps: every pointer is checked, every length clamped, every error mapped.

private func code(_ c: Int32) -> RESPONSECODE { RESPONSECODE(c) }

/// IFD_NO_SUCH_DEVICE makes pcscd signal itself to rescan (SendHotplugSignal:
/// SIGUSR1). That is how it learns a reader.conf (relay) reader went. A USB
/// reader's going reaches pcscd as a udev event anyway, and the VM test's quick
/// plug/unplug in worker mode saw those signals, arriving while pcscd's hotplug
/// thread removed the reader, leave pcscd 1.9.9 stuck: the reader stayed
/// listed and no later reader was added. So USB readers, and any reader pcscd
/// has marked removed, report their absence as `otherwise`.
private func gone(_ lun: DWORD, otherwise: Int32) -> RESPONSECODE {
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    return entry.removed || entry.hotplugged ? code(otherwise) : code(IFD_NO_SUCH_DEVICE)
}

private func map(_ error: DriverError, context: String, lun: DWORD) -> RESPONSECODE {
    Log.error("\(context): \(error)")
    switch error {
    case .noDevice: return gone(lun, otherwise: IFD_COMMUNICATION_ERROR)
    case .noCard: return code(IFD_ICC_NOT_PRESENT)
    case .timeout, .cardMute: return code(IFD_RESPONSE_TIMEOUT)
    case .protocolNotSupported: return code(IFD_PROTOCOL_NOT_SUPPORTED)
    case .insufficientBuffer: return code(IFD_ERROR_INSUFFICIENT_BUFFER)
    case .notSupported: return code(IFD_COMMUNICATION_ERROR)
    case .invalidSlot, .commandFailed, .protocolViolation, .invalidAPDU, .cardProtocol, .refused: return code(IFD_COMMUNICATION_ERROR)
    }
}

private func open(_ lun: DWORD, _ name: DeviceName, _ text: String) -> RESPONSECODE {
    do throws(Registry.OpenError) {
        let entry = try registry.open(lun: UInt(lun), name: name, displayName: text, timeouts: Settings.timeouts) {
            () throws(Registry.OpenError) in try Transports.open(name)
        }
        let id = entry.reader.identity
        Log.info("LUN 0x\(String(lun, radix: 16)): \(id.manufacturer) \(id.product) (\(id.classDescriptor.exchangeLevel), \(entry.reader.slotCount) slot(s)) slot \(entry.slot) via \(text)")
        return code(IFD_SUCCESS)
    } catch {
        switch error {
        case .inUse: Log.error("LUN 0x\(String(lun, radix: 16)) is already open")
        case .badSlot(let s): Log.error("\(text) has no slot \(s)")
        case .connect(let why): Log.error("cannot open \(why)")
        case .gone(let why):
            Log.error("cannot open \(text): \(why)")
            return code(IFD_NO_SUCH_DEVICE)
        }
        return code(IFD_COMMUNICATION_ERROR)
    }
}

@_cdecl("IFDHCreateChannelByName")
public func IFDHCreateChannelByName(_ lun: DWORD, _ deviceName: LPSTR?) -> RESPONSECODE {
    guard let deviceName else { return code(IFD_COMMUNICATION_ERROR) }
    let text = String(cString: deviceName)
    guard let name = DeviceName(text) else {
        Log.error("device name '\(text)' is neither relay:/PATH nor usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD")
        return code(IFD_COMMUNICATION_ERROR)
    }
    return open(lun, name, text)
}

@_cdecl("IFDHCreateChannel")
public func IFDHCreateChannel(_ lun: DWORD, _ channel: DWORD) -> RESPONSECODE {
    let name = DeviceName.forChannel(UInt(channel), directory: Settings.relayDirectory)
    guard case .relay(let path) = name else { return code(IFD_COMMUNICATION_ERROR) }
    return open(lun, name, "relay:\(path)")
}

@_cdecl("IFDHCloseChannel")
public func IFDHCloseChannel(_ lun: DWORD) -> RESPONSECODE {
    // pcscd closes a channel when it gives up, even with a Transmit in flight
    // (~500 ms): power the card down only if the reader is idle, never wait.
    if let entry = registry.lookup(UInt(lun)), entry.reader.state(of: entry.slot)?.powered == true, !entry.removed {
        entry.reader.powerOffIfIdle(slot: entry.slot)
    }
    return registry.close(lun: UInt(lun)) ? code(IFD_SUCCESS) : code(IFD_NO_SUCH_DEVICE)
}

@_cdecl("IFDHGetCapabilities")
public func IFDHGetCapabilities(_ lun: DWORD, _ tag: DWORD, _ length: PDWORD?, _ value: PUCHAR?) -> RESPONSECODE {
    guard let length, let value else { return code(IFD_COMMUNICATION_ERROR) }
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    switch UInt(tag) {
    case UInt(TAG_IFD_POLLING_THREAD_WITH_TIMEOUT), UInt(TAG_IFD_STOP_POLLING_THREAD):
        // Card events need the interrupt pipe; without one pcscd polls IFDHICCPresence.
        guard entry.reader.identity.hasInterruptEndpoint else { return code(IFD_ERROR_TAG) }
        let pointer: UnsafeRawPointer = UInt(tag) == UInt(TAG_IFD_STOP_POLLING_THREAD)
            ? unsafeBitCast(stopPollingFunction, to: UnsafeRawPointer.self)
            : unsafeBitCast(pollingFunction, to: UnsafeRawPointer.self)
        let size = MemoryLayout<UnsafeRawPointer>.size
        guard length.pointee >= DWORD(size) else { return code(IFD_ERROR_INSUFFICIENT_BUFFER) }
        withUnsafeBytes(of: pointer) { raw in
            for i in 0..<size { value[i] = raw[i] }
        }
        length.pointee = DWORD(size)
        return code(IFD_SUCCESS)
    default:
        guard let bytes = capability(UInt(tag), entry: entry) else { return code(IFD_ERROR_TAG) }
        guard length.pointee >= DWORD(bytes.count) else {
            length.pointee = 0
            return code(IFD_ERROR_INSUFFICIENT_BUFFER)
        }
        for (i, b) in bytes.enumerated() { value[i] = b }
        length.pointee = DWORD(bytes.count)
        return code(IFD_SUCCESS)
    }
}

@_cdecl("IFDHSetCapabilities")
public func IFDHSetCapabilities(_ lun: DWORD, _ tag: DWORD, _ length: DWORD, _ value: PUCHAR?) -> RESPONSECODE {
    guard UInt(tag) == UInt(TAG_IFD_DEVICE_REMOVED) else { return code(IFD_ERROR_TAG) }
    // pcscd's hotplug thread, unlocked: mark the device gone so waiting calls end now.
    if let value, length >= 1, value[0] != 0 {
        registry.markRemoved(lun: UInt(lun))
    }
    return code(IFD_SUCCESS)
}

@_cdecl("IFDHSetProtocolParameters")
public func IFDHSetProtocolParameters(_ lun: DWORD, _ protocolMask: DWORD, _ flags: UCHAR,
                                      _ pts1: UCHAR, _ pts2: UCHAR, _ pts3: UCHAR) -> RESPONSECODE {
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    // PC/SC's protocol mask: SCARD_PROTOCOL_T0 and SCARD_PROTOCOL_T1 are the ones a CCID reader carries.
    var requested: ProtocolSet = []
    if UInt32(truncatingIfNeeded: protocolMask) & UInt32(SCARD_PROTOCOL_T0) != 0 { requested.insert(.t0) }
    if UInt32(truncatingIfNeeded: protocolMask) & UInt32(SCARD_PROTOCOL_T1) != 0 { requested.insert(.t1) }
    guard !requested.isEmpty else { return code(IFD_PROTOCOL_NOT_SUPPORTED) }
    do throws(DriverError) {
        let chosen = try entry.reader.selectProtocol(slot: entry.slot, requested: requested)
        Log.info("LUN 0x\(String(lun, radix: 16)): protocol T=\(chosen)")
        return code(IFD_SUCCESS)
    } catch {
        return map(error, context: "SetProtocolParameters", lun: lun)
    }
}

@_cdecl("IFDHPowerICC")
public func IFDHPowerICC(_ lun: DWORD, _ action: DWORD, _ atr: PUCHAR?, _ atrLength: PDWORD?) -> RESPONSECODE {
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    if entry.removed { return code(IFD_ERROR_POWER_ACTION) }
    let capacity = Int(clamping: atrLength?.pointee ?? 0)
    atrLength?.pointee = 0
    do throws(DriverError) {
        switch Int32(truncatingIfNeeded: action) {
        case IFD_POWER_DOWN:
            try entry.reader.powerOff(slot: entry.slot)
            return code(IFD_SUCCESS)
        case IFD_POWER_UP, IFD_RESET:
            let bytes = try entry.reader.powerOn(slot: entry.slot)
            guard let atr, let atrLength else { return code(IFD_SUCCESS) }
            let n = min(bytes.count, capacity, Int(MAX_ATR_SIZE))
            for i in 0..<n { atr[i] = bytes[i] }
            atrLength.pointee = DWORD(n)
            return code(IFD_SUCCESS)
        default:
            return code(IFD_NOT_SUPPORTED)
        }
    } catch {
        if error == .noDevice { return gone(lun, otherwise: IFD_ERROR_POWER_ACTION) }
        Log.error("PowerICC: \(error)")
        return code(IFD_ERROR_POWER_ACTION)
    }
}

@_cdecl("IFDHTransmitToICC")
public func IFDHTransmitToICC(_ lun: DWORD, _ sendPci: SCARD_IO_HEADER, _ tx: PUCHAR?, _ txLength: DWORD,
                              _ rx: PUCHAR?, _ rxLength: PDWORD?, _ recvPci: PSCARD_IO_HEADER?) -> RESPONSECODE {
    guard let rx, let rxLength else { return code(IFD_COMMUNICATION_ERROR) }
    let capacity = Int(clamping: rxLength.pointee)
    rxLength.pointee = 0
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    if entry.removed { return code(IFD_COMMUNICATION_ERROR) }
    guard let tx, txLength > 0, txLength <= 65544 + 16 else { return code(IFD_COMMUNICATION_ERROR) }
    let apdu = Array(UnsafeBufferPointer(start: tx, count: Int(txLength)))
    let started = Log.wants(.communication) ? ContinuousClock.now : nil
    do throws(DriverError) {
        let response = try entry.reader.transmit(slot: entry.slot, apdu: apdu)
        if let started {
            // Lengths and the status word only: APDUs can carry PINs and keys.
            let sw = response.suffix(2).map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            Log.communication("LUN 0x\(String(lun, radix: 16)): \(apdu.count) bytes -> \(response.count) bytes, SW \(sw), \(ContinuousClock.now - started)")
        }
        guard response.count <= capacity else { throw DriverError.insufficientBuffer(needed: response.count) }
        for (i, b) in response.enumerated() { rx[i] = b }
        rxLength.pointee = DWORD(response.count)
        if let recvPci { recvPci.pointee.Protocol = sendPci.Protocol }
        return code(IFD_SUCCESS)
    } catch {
        return map(error, context: "Transmit", lun: lun)
    }
}

@_cdecl("IFDHControl")
public func IFDHControl(_ lun: DWORD, _ controlCode: DWORD, _ tx: PUCHAR?, _ txLength: DWORD,
                        _ rx: PUCHAR?, _ rxLength: DWORD, _ bytesReturned: LPDWORD?) -> RESPONSECODE {
    bytesReturned?.pointee = 0
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    let input = tx.map { Array(UnsafeBufferPointer(start: $0, count: Int(clamping: min(txLength, 65544 + 64)))) } ?? []
    let identity = entry.reader.identity
    let requested = UInt32(truncatingIfNeeded: controlCode)
    let features = PCSCFeature.available(for: identity)
    func reply(_ bytes: [UInt8]) -> RESPONSECODE {
        guard let rx, bytes.count <= Int(clamping: rxLength) else { return code(IFD_ERROR_INSUFFICIENT_BUFFER) }
        for (i, b) in bytes.enumerated() { rx[i] = b }
        bytesReturned?.pointee = DWORD(bytes.count)
        return code(IFD_SUCCESS)
    }
    switch requested {
    case PCSCFeature.vendorIFDExchange:
        guard Configuration.current.escapeAllowed || entry.reader.quirks.allowsEscape(input) else {
            Log.error("Escape refused: applications may send Escape commands only with ifdDriverOptions escape=yes "
                      + "(or SWIFTCCID_ESCAPE=yes)")
            return code(IFD_ERROR_NOT_SUPPORTED)
        }
        do throws(DriverError) {
            return reply(try entry.reader.escape(slot: entry.slot, command: input))
        } catch {
            return map(error, context: "Escape", lun: lun)
        }
    case PCSCFeature.getFeatureRequest, PCSCFeature.getFeatureRequestWindows:
        return reply(PCSCFeature.featureList(for: identity))
    case PCSCFeature.getTLVProperties.controlCode:
        let firmware = "SwiftCCID \(identity.product)"
        let pin = entry.reader.quirks.pinProperties
        return reply(PCSCFeature.tlvProperties(for: identity, firmware: firmware,
                                               pinSizes: pin.map { $0.minimumSize...max($0.minimumSize, $0.maximumSize) },
                                               validation: pin?.validationCondition ?? 0x02))
    case PCSCFeature.ifdPINProperties.controlCode where features.contains(.ifdPINProperties):
        return reply(PCSCFeature.pinProperties(for: identity.classDescriptor,
                                               validation: entry.reader.quirks.pinProperties?.validationCondition ?? 0x02))
    case PCSCFeature.verifyPINDirect.controlCode where features.contains(.verifyPINDirect),
         PCSCFeature.modifyPINDirect.controlCode where features.contains(.modifyPINDirect):
        let isVerify = requested == PCSCFeature.verifyPINDirect.controlCode
        guard let pinEntry = isVerify ? PINEntry(part10Verify: input) : PINEntry(part10Modify: input) else {
            Log.error("malformed PIN \(isVerify ? "verify" : "modify") structure of \(input.count) bytes")
            return code(IFD_COMMUNICATION_ERROR)
        }
        do throws(DriverError) {
            return reply(try entry.reader.secure(slot: entry.slot, entry: pinEntry))
        } catch {
            return map(error, context: "Secure PIN entry", lun: lun)
        }
    default:
        return code(IFD_ERROR_NOT_SUPPORTED)
    }
}

@_cdecl("IFDHICCPresence")
public func IFDHICCPresence(_ lun: DWORD) -> RESPONSECODE {
    guard let entry = registry.lookup(UInt(lun)) else { return code(IFD_NO_SUCH_DEVICE) }
    // A reader that is gone has no card state to report, and must not say
    // "absent": pcscd's polling thread takes that as a card removal and resets
    // its card lock (hLockId) to 0, which is also the flag pcscd's removal of
    // the reader has just set (0xFFFF) to make that thread exit. The thread
    // then runs on and the removal waits for it forever (seen on pcsc-lite
    // 1.9.9 in the VM test: the reader stayed listed). An error leaves the
    // reader's state unknown and the flag alone. See also `gone`.
    if entry.removed { return code(IFD_COMMUNICATION_ERROR) }
    do throws(DriverError) {
        let status = try entry.reader.iccStatus(slot: entry.slot)
        Log.periodic("LUN 0x\(String(lun, radix: 16)): card \(status)")
        switch status {
        case .presentActive, .presentInactive: return code(IFD_ICC_PRESENT)
        case .absent, .reserved: return code(IFD_ICC_NOT_PRESENT)
        }
    } catch {
        if error == .noDevice { return gone(lun, otherwise: IFD_COMMUNICATION_ERROR) }
        Log.error("ICCPresence: \(error)")
        return code(IFD_COMMUNICATION_ERROR)
    }
}

// pcscd's polling thread: TAG_IFD_POLLING_THREAD_WITH_TIMEOUT / TAG_IFD_STOP_POLLING_THREAD.

private let pollingFunction: @convention(c) (DWORD, Int32) -> RESPONSECODE = { lun, timeoutMs in
    guard let entry = registry.lookup(UInt(lun)) else { return RESPONSECODE(IFD_NO_SUCH_DEVICE) }
    let timeout: Duration = timeoutMs > 0 ? .milliseconds(timeoutMs) : .seconds(600)
    switch entry.reader.waitForCardEvent(slot: entry.slot, timeout: timeout) {
    case .changed, .timeout, .stopped: return RESPONSECODE(IFD_SUCCESS)
    case .deviceGone: return RESPONSECODE(IFD_NO_SUCH_DEVICE)
    }
}

private let stopPollingFunction: @convention(c) (DWORD) -> RESPONSECODE = { lun in
    registry.lookup(UInt(lun))?.reader.stopWaitingForCardEvent(slot: Registry.slot(of: UInt(lun)))
    return RESPONSECODE(IFD_SUCCESS)
}
