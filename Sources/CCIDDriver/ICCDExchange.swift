import CCID

/// One CCID command done the ICCD way: the class requests that do its work,
/// in order, and the CCID reply a reader would have given. A pure state
/// machine; `ICCDTransport` makes the requests and does the waiting.
///
/// - Power-on: power off first (it resets the token's state machine), wait
///   until version A is not busy, power on; version B's ATR comes as a data block.
/// - XfrBlock, version A (driven at TPDU level, T=0): the header, then as the
///   status byte says, the data out or the data in, then SW1 SW2.
/// - XfrBlock, version B (driven at extended-APDU level): the piece with its
///   level parameter, then the data block and its chaining step.
/// - GetSlotStatus: A's status byte (0x80: no card), B's slot status.
/// - Parameters: the token negotiates with its chip itself; what the driver
///   sets is taken, and the defaults reported.
/// A busy token (A: status 0x40; B: a poll answer) is a `.wait`: the
/// transport reports a time extension, waits, then calls `resume()`.
struct ICCDExchange {
    enum Step: Equatable {
        case request(ControlRequest)
        case wait(Duration)
        case done(Reply)
    }

    /// A T=0 command as version A moves it: header, the data out, the data come in.
    struct TPDU: Equatable {
        var header: [UInt8]
        var dataOut: [UInt8]
        var dataIn: [UInt8] = []
        /// P3 as a length to read: 0 means 256.
        var expected: Int { header[4] == 0 ? 256 : Int(header[4]) }
    }

    private enum Phase: Equatable {
        case notStarted
        case powerOnReset, powerOnReady, powerOnA, powerOnB, atrB
        case powerOff, slotStatus
        case headerA(TPDU), statusA(TPDU, afterData: Bool), dataOutA(TPDU), dataInA(TPDU), statusWordA(TPDU)
        case xfrB, dataBlockB
        case finished
    }

    let command: Command
    let version: ICCDVersion
    let interface: UInt16
    /// Whether the driver last powered the card (version A's status does not say).
    let powered: Bool
    /// The protocol the token's parameters report (B: T=1 if it declares it).
    let protocolNumber: UInt8
    private var phase = Phase.notStarted

    init(command: Command, version: ICCDVersion, interface: UInt16, powered: Bool, protocols: ClassDescriptor.Protocols) {
        self.command = command
        self.version = version
        self.interface = interface
        self.powered = powered
        protocolNumber = version == .b && protocols.contains(.t1) ? 1 : 0
    }

    mutating func start() -> Step {
        guard command.slot == 0 else { return failed(.badSlot) }
        switch command.body {
        case .iccPowerOn:
            return ask(.iccdPowerOff(interface: interface), then: .powerOnReset)
        case .iccPowerOff:
            return ask(.iccdPowerOff(interface: interface), then: .powerOff)
        case .getSlotStatus:
            return ask(version == .a ? .iccdAStatus(interface: interface) : .iccdBSlotStatus(interface: interface), then: .slotStatus)
        case .xfrBlock(_, let level, let data):
            if version == .b {
                guard let l = LevelParameter(rawValue: level) else { return failed(.badParameter(at: 8)) }
                return ask(.iccdBXfrBlock(data, level: l, interface: interface), then: .xfrB)
            }
            // T=0: a case 1 command goes with P3 = 0.
            guard data.count >= 4 else { return failed(.badLength) }
            let header = data.count == 4 ? data + [0] : Array(data.prefix(5))
            let tpdu = TPDU(header: header, dataOut: Array(data.dropFirst(5)))
            return ask(.iccdAXfrBlock(header, interface: interface), then: .headerA(tpdu))
        case .setParameters(let p, let data):
            return finish(.parameters(protocolNumber: p, data: data), icc: .presentActive)
        case .getParameters, .resetParameters:
            return finish(.parameters(protocolNumber: protocolNumber,
                                      data: ProtocolData.defaults(protocolNumber: protocolNumber).encoded()),
                          icc: powered ? .presentActive : .presentInactive)
        case .abort:
            return finish(.slotStatus(clockStatus: 0), icc: powered ? .presentActive : .presentInactive)
        case .escape, .iccClock, .t0APDU, .secure, .mechanical, .setDataRateAndClockFrequency:
            return failed(.commandNotSupported)
        }
    }

    /// The answer to the last request (empty for a request that sends).
    mutating func received(_ answer: [UInt8]) -> Step {
        switch phase {
        case .powerOnReset:
            return version == .a ? ask(.iccdAStatus(interface: interface), then: .powerOnReady)
                                 : ask(.iccdBPowerOn(interface: interface), then: .powerOnB)
        case .powerOnReady:
            guard let byte = answer.first else { return failed(.hardwareError) }
            let status = ICCDAStatus(byte: byte)
            if status.isMute { return failed(.iccMute, icc: .absent) }
            if status.isBusy { return .wait(ICCDAStatus.pollInterval) }
            return ask(.iccdAPowerOn(interface: interface), then: .powerOnA)
        case .powerOnA:
            guard !answer.isEmpty else { return failed(.iccMute, icc: .absent) }
            return finish(.dataBlock(chainParameter: 0, data: answer), icc: .presentActive)
        case .powerOnB:
            return ask(.iccdDataBlock(interface: interface, length: ControlRequest.iccdTransferLimit), then: .atrB)
        case .atrB, .dataBlockB:
            return dataBlockB(answer, atr: phase == .atrB)
        case .xfrB:
            return ask(.iccdDataBlock(interface: interface, length: ControlRequest.iccdTransferLimit), then: .dataBlockB)
        case .powerOff:
            return finish(.slotStatus(clockStatus: 0), icc: .presentInactive)
        case .slotStatus:
            return slotStatus(answer)
        case .headerA(let tpdu):
            return ask(.iccdAStatus(interface: interface), then: .statusA(tpdu, afterData: false))
        case .statusA(let tpdu, let afterData):
            return statusA(answer, tpdu: tpdu, afterData: afterData)
        case .dataOutA(let tpdu):
            return ask(.iccdAStatus(interface: interface), then: .statusA(tpdu, afterData: true))
        case .dataInA(var tpdu):
            tpdu.dataIn = answer
            return ask(.iccdAStatus(interface: interface), then: .statusA(tpdu, afterData: true))
        case .statusWordA(let tpdu):
            guard answer.count == 2 else { return failed(.hardwareError) }
            return finish(.dataBlock(chainParameter: 0, data: tpdu.dataIn + answer), icc: .presentActive)
        case .notStarted, .finished:
            return failed(.hardwareError)
        }
    }

    /// After a wait: ask again what was asked before it.
    mutating func resume() -> Step {
        switch phase {
        case .powerOnReady, .statusA: return .request(.iccdAStatus(interface: interface))
        case .atrB, .dataBlockB: return .request(.iccdDataBlock(interface: interface, length: ControlRequest.iccdTransferLimit))
        default: return failed(.hardwareError)
        }
    }

    /// The token stalled the last request: it refuses the command (at power-on: there is no card that answers).
    mutating func stalled() -> Step {
        switch phase {
        case .powerOnReset, .powerOnReady, .powerOnA, .powerOnB, .atrB: return failed(.iccMute, icc: .absent)
        default: return failed(.hardwareError)
        }
    }

    // MARK: The answers

    private mutating func statusA(_ answer: [UInt8], tpdu: TPDU, afterData: Bool) -> Step {
        guard let byte = answer.first else { return failed(.hardwareError) }
        let status = ICCDAStatus(byte: byte)
        if status.isMute { return failed(.iccMute, icc: .absent) }
        if status.isBusy { return .wait(ICCDAStatus.pollInterval) }
        switch status {
        case .statusReady:
            return ask(.iccdDataBlock(interface: interface, length: 2), then: .statusWordA(tpdu))
        case .dataReady where !afterData:
            if !tpdu.dataOut.isEmpty { return ask(.iccdAXfrBlock(tpdu.dataOut, interface: interface), then: .dataOutA(tpdu)) }
            return ask(.iccdDataBlock(interface: interface, length: tpdu.expected), then: .dataInA(tpdu))
        default:
            // Idle, or data again after the data: the token lost the command.
            return failed(.hardwareError)
        }
    }

    private mutating func dataBlockB(_ answer: [UInt8], atr: Bool) -> Step {
        switch ICCDBAnswer(decoding: answer) {
        case .data(let chain, let data)?:
            if atr && chain != 0 { return failed(.hardwareError) }
            return finish(.dataBlock(chainParameter: chain, data: data), icc: .presentActive)
        case .status(let status, let error)?:
            return failed(SlotError(rawValue: error), icc: status.icc == .reserved ? .absent : status.icc)
        case .poll(let tens)?:
            return .wait(ICCDBAnswer.pollDelay(tens: tens))
        case nil:
            return failed(.hardwareError)
        }
    }

    private mutating func slotStatus(_ answer: [UInt8]) -> Step {
        let inactive: ICCStatus = powered ? .presentActive : .presentInactive
        guard version == .b else {
            guard let byte = answer.first else { return failed(.hardwareError) }
            return finish(.slotStatus(clockStatus: 0), icc: ICCDAStatus(byte: byte).isMute ? .absent : inactive)
        }
        guard case .status(let status, _)? = ICCDBAnswer(decoding: answer) else { return failed(.hardwareError) }
        return finish(.slotStatus(clockStatus: 0), icc: status.icc == .reserved ? .absent : status.icc)
    }

    // MARK: Helpers

    private mutating func ask(_ request: ControlRequest, then next: Phase) -> Step {
        phase = next
        return .request(request)
    }

    private mutating func finish(_ body: Reply.Body, icc: ICCStatus) -> Step {
        phase = .finished
        return .done(Reply(slot: command.slot, sequence: command.sequence, status: SlotStatus(icc: icc), body: body))
    }

    private mutating func failed(_ error: SlotError, icc: ICCStatus? = nil) -> Step {
        phase = .finished
        let body: Reply.Body = switch Reply.expectedType(for: command.messageType) {
        case .dataBlock: .dataBlock(chainParameter: 0, data: [])
        case .slotStatus: .slotStatus(clockStatus: 0)
        case .parameters: .parameters(protocolNumber: protocolNumber, data: [])
        case .escape: .escape(data: [])
        case .dataRateAndClockFrequency: .dataRateAndClockFrequency(clockFrequency: 0, dataRate: 0)
        }
        let status = SlotStatus(icc: icc ?? (powered ? .presentActive : .presentInactive), command: .failed)
        return .done(Reply(slot: command.slot, sequence: command.sequence, status: status, error: error.rawValue, body: body))
    }
}
