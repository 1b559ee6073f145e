import CCID
import ISO7816
import ThreadSupport

extension Reader {
    /// Powers the card up (cold or warm: a power-on of a powered card is a warm reset) and returns its ATR.
    public func powerOn(slot: Int) throws(DriverError) -> [UInt8] {
        try serialised(slot: slot) { s throws(DriverError) in try powerOnLocked(slot: s) }
    }

    private func powerOnLocked(slot s: UInt8) throws(DriverError) -> [UInt8] {
        let slot = Int(s)
        var lastError: DriverError = .noCard
        var isoModeTried = false
        for voltage in voltageSequence {
            if quirks.powerOffBeforePowerOn {
                // Quirk W2: this reader's card misbehaves unless powered off first.
                _ = try exchange(.iccPowerOff, slot: s, waitingTime: controlWaitingTime)
            }
            var reply = try exchange(.iccPowerOn(voltage: voltage), slot: s, waitingTime: .seconds(2))
            if let emv = quirks.isoModeEscapeError, !isoModeTried, reply.status.command == .failed, reply.error == emv {
                // Quirk W1: the reader is in EMV mode; Escape 1F 01 switches it to ISO mode, then once more.
                isoModeTried = true
                log("slot \(slot): power-up refused in EMV mode (bError 0x\(hexString([emv]))); switching the reader to ISO mode")
                let escape = try exchange(.escape(data: [0x1F, 0x01]), slot: s, waitingTime: controlWaitingTime)
                if escape.status.command == .failed { log("slot \(slot): the ISO-mode escape failed (\(escape.slotError))") }
                reply = try exchange(.iccPowerOn(voltage: voltage), slot: s, waitingTime: .seconds(2))
            }
            do throws(DriverError) {
                try check(reply)
            } catch {
                lastError = error
                if error == .noCard { throw error }
                log("slot \(slot): power-up at \(voltage) failed (\(error))")
                continue
            }
            guard case .dataBlock(_, let atr) = reply.body, !atr.isEmpty else {
                throw .protocolViolation("power-on answered without an ATR")
            }
            guard atr.count <= ATR.maximumLength else {
                throw .protocolViolation("power-on answered with \(atr.count) bytes; an ATR has at most \(ATR.maximumLength)")
            }
            var parsed: ATR?
            do throws(ATRError) { parsed = try ATR(atr) } catch {
                log("slot \(slot): ATR \(hexString(atr)) does not parse (\(error)); keeping defaults")
                parsed = nil
            }
            for q in quirks.cardQuirks(atr: atr) {
                guard case .t1WaitingIntegers(let tb) = q.behaviour else { continue }
                // Quirk T5: the card needs longer than its TB3 says.
                parsed?.correctT1WaitingIntegers(tb)
                log("slot \(slot): quirk \(q.id) \(q.name): T=1 waiting integers 0x\(hexString([tb]))")
            }
            update(slot) {
                $0.atr = atr
                $0.parsedATR = parsed
                $0.protocolType = nil
                $0.t1 = nil
            }
            return atr
        }
        if quirks.presenceUnknown, lastError == .cardMute {
            // Quirk M6: the reader said a card is in; the power-up says otherwise.
            log("slot \(slot): no card answers the power-up; reporting the slot empty until the reader is reopened")
            noCardFound.withLock { _ = $0.insert(slot) }
        }
        throw lastError
    }

    /// A T=1 engine for a card with this ATR on this reader. At TPDU level a
    /// block travels in one message, so what we send must fit dwMaxCCIDMessageLength
    /// (at character level the driver splits characters itself).
    func t1Engine(atr: ATR?) -> T1Host {
        let edc = atr?.t1EDC ?? .lrc
        var engine = T1Host(ifsc: atr?.t1IFSC ?? T1Host.defaultIFS, ifsd: ifsd, edc: edc,
                            negotiateIFSD: !descriptor.features.contains(.automaticIFSDExchange))
        if descriptor.exchangeLevel == .tpdu {
            engine.sendLimit = Int(descriptor.maxCCIDMessageLength) - ccidHeaderLength - 3 - edc.length
        }
        return engine
    }

    /// The IFSD we offer: the reader's dwMaxIFSD, within what a block can carry.
    public var ifsd: Int {
        let max = Int(descriptor.maxIFSD)
        return (1...T1Block.maximumInformationLength).contains(max) ? max : T1Block.maximumInformationLength
    }

    /// Automatic when the reader selects the voltage; otherwise class A, B, C in turn (ISO 7816-3 §6.2.4).
    /// G6: the reader's own choice if it makes one (automatic voltage selection or
    /// activation); else 5 V, 3 V, 1.8 V (classes A, B, C), those it supports.
    var voltageSequence: [VoltageSelection] {
        if !descriptor.features.isDisjoint(with: [.automaticVoltageSelection, .automaticActivationOnInsert]) { return [.automatic] }
        var order: [VoltageSelection] = []
        if descriptor.voltageSupport.contains(.v5) { order.append(.v5) }
        if descriptor.voltageSupport.contains(.v3) { order.append(.v3) }
        if descriptor.voltageSupport.contains(.v1_8) { order.append(.v1_8) }
        return order.isEmpty ? [.automatic] : order
    }

    public func powerOff(slot: Int) throws(DriverError) {
        try serialised(slot: slot) { s throws(DriverError) in try powerOffLocked(slot: s) }
    }

    /// Powers the card down only if nothing is in progress on the slot and no
    /// command is in flight on the reader: for pcscd closing a channel, which it
    /// may do with a Transmit still running and must not wait for.
    public func powerOffIfIdle(slot: Int) {
        guard let s = try? checkSlot(slot) else { return }
        slotGates[slot].lock.withLockIfAvailable {
            if !isExchanging { _ = try? powerOffLocked(slot: s) }
        }
    }

    private func powerOffLocked(slot s: UInt8) throws(DriverError) {
        let slot = Int(s)
        update(slot) { $0.poweredOff() }
        let reply = try exchange(.iccPowerOff, slot: s, waitingTime: controlWaitingTime)
        if reply.status.command == .failed, reply.status.icc != .absent { throw .commandFailed(reply.slotError) }
    }

    /// The card's presence as the reader sees it now.
    public func iccStatus(slot: Int) throws(DriverError) -> ICCStatus {
        let s = try checkSlot(slot)
        let reply = try exchange(.getSlotStatus, slot: s, waitingTime: controlWaitingTime)
        var icc = noCardFound.withLock { $0.contains(slot) } ? .absent : reply.status.icc
        if icc == .presentInactive, state(of: slot)?.powered == true {
            // G14: a card the driver powered is now unpowered: it was swapped between two polls.
            // Reported absent once, so that its users see a removal; the next poll finds the new card.
            log("slot \(slot): the powered card is now unpowered (swapped between polls); reporting a removal")
            icc = .absent
        }
        if icc == .absent { update(slot) { $0.poweredOff() } }
        return icc
    }

    /// Chooses a protocol from those `requested`, the
    /// card offers and the reader supports, and sets the reader's parameters.
    public func selectProtocol(slot: Int, requested: ProtocolSet) throws(DriverError) -> UInt8 {
        try serialised(slot: slot) { s throws(DriverError) in try selectProtocolLocked(slot: s, requested: requested) }
    }

    private func selectProtocolLocked(slot s: UInt8, requested: ProtocolSet) throws(DriverError) -> UInt8 {
        let slot = Int(s)
        guard let state = state(of: slot), state.powered else { throw .noCard }
        let atr = state.parsedATR
        let offered = atr?.offeredProtocols ?? [0]
        let readerProtocols = descriptor.protocols
        let usable = offered.filter { p in
            (p == 0 && readerProtocols.contains(.t0) || p == 1 && readerProtocols.contains(.t1))
                && requested.contains(p)
        }
        if let specific = atr?.specificMode, !specific.canChange, !usable.contains(specific.protocolType) {
            throw .protocolNotSupported("card is fixed to T=\(specific.protocolType)")
        }
        guard let chosen = atr?.specificMode.map({ $0.protocolType }).flatMap({ usable.contains($0) ? $0 : nil })
                ?? usable.first else {
            throw .protocolNotSupported("no common protocol: card offers \(offered.map { "T=\($0)" }), asked for \(requested)")
        }
        // Quirk R3: a reader that cannot send PPS leaves the card in its default protocol.
        if quirks.noPPS, atr?.specificMode == nil, chosen != (atr?.defaultProtocol ?? 0) {
            throw .protocolNotSupported("this reader cannot switch the card from T=\(atr?.defaultProtocol ?? 0) (no PPS)")
        }
        let readerNegotiates = descriptor.features.contains(.automaticPPS)
            || descriptor.features.contains(.automaticParameterNegotiation)
        var parameters = ProtocolParameters(atr: atr, protocolType: chosen, readerNegotiates: readerNegotiates)
        if readerNegotiates, atr?.specificMode == nil {
            // The reader runs PPS at the rate SetParameters names: one it can run (TA1 with Di lowered if need be).
            parameters.fiDi = wantedFiDi(atr, slot: slot)
        }
        // At TPDU and character level the driver negotiates, unless the reader does or the card is in specific mode.
        if !readerNegotiates, !quirks.noPPS, atr?.specificMode == nil,
           descriptor.exchangeLevel == .tpdu || descriptor.exchangeLevel == .character {
            parameters.fiDi = try negotiatePPS(slot: s, atr: atr, protocolType: chosen)
        }
        let reply = try exchange(.setParameters(protocolNumber: chosen, data: parameters.protocolData.encoded()),
                                 slot: s, waitingTime: controlWaitingTime)
        if reply.status.command == .failed, reply.slotError == .iccMute, quirks.resetInsteadOfParameters {
            // Quirk R4: the reader cannot lower the card's speed; two resets bring the card back, as the reader set it from the ATR.
            log("slot \(slot): SetParameters left the card mute; resetting it and going on with the reader's own parameters")
            _ = try powerOnLocked(slot: s)
            _ = try powerOnLocked(slot: s)
        } else if reply.status.command == .failed, reply.status.icc != .absent, (1...0x7F).contains(reply.error) {
            // G9: bError 01–7F names a field the reader would not change; it took the rest, and the protocol holds.
            log("slot \(slot): reader kept its own value of SetParameters' byte \(reply.error); the protocol holds")
        } else if reply.status.command == .failed {
            // Readers that configure themselves from the ATR may refuse SetParameters; the protocol still holds.
            guard descriptor.features.contains(.automaticParameterConfigurationFromATR) else {
                try check(reply)
                return chosen
            }
            log("slot \(slot): reader refused SetParameters (\(reply.slotError)); it configures itself from the ATR")
        }
        update(slot) {
            $0.protocolType = chosen
            $0.t1 = chosen == 1 ? self.t1Engine(atr: atr) : nil
        }
        return chosen
    }
}

extension Reader {
    /// The reader's data rates (GET_DATA_RATES), when it lists them (bNumDataRatesSupported > 0).
    func supportedDataRates() -> [UInt32] {
        let count = Int(descriptor.numDataRatesSupported)
        guard count > 0, let raw = try? transport.control(.getDataRates(interface: UInt16(identity.interfaceNumber), count: count),
                                                          deadline: .after(.seconds(1))) else { return [] }
        var r = ByteReader(raw)
        return (0..<count).compactMap { _ in r.u32le() }
    }

    /// Fi/Di to ask for: the card's TA1, with Di lowered until the reader can
    /// run the resulting rate at its default clock: within dwMaxDataRate and,
    /// if the reader lists its rates, one of them (±2 %, as readers round).
    /// Quirk M5: a slot after the first may have rates of its own.
    /// Never slower than the default 372/1: then the default it is.
    func wantedFiDi(_ atr: ATR?, slot: Int) -> UInt8 {
        guard let atr, let fi = atr.fi, let di = atr.di else { return 0x11 }
        let listed = slot > 0 ? quirks.secondarySlotRates ?? supportedDataRates() : supportedDataRates()
        let fiIndex = atr.ta1 >> 4
        // Integer bps, rounded down as readers state their rates (4 MHz × 12 / 372 = 129 032).
        let clockHz = UInt64(descriptor.defaultClock) * 1000
        let candidates = (1...9).compactMap { i -> (UInt8, Int)? in
            guard let d = BitRateAdjustment.di(index: UInt8(i)), d <= di else { return nil }
            return (UInt8(i), d)
        }.sorted { $0.1 > $1.1 }
        for (index, d) in candidates {
            let rate = clockHz * UInt64(d) / UInt64(max(fi, 1))
            guard rate <= UInt64(descriptor.maxDataRate), rate > clockHz / 372 else { continue }
            if !listed.isEmpty, !listed.contains(where: { abs(Double($0) - Double(rate)) <= Double(rate) * 0.02 }) { continue }
            return fiIndex << 4 | index
        }
        return 0x11
    }

    /// PPS exchange (ISO/IEC 7816-3 §9) when the protocol or Fi/Di differ from
    /// the defaults. A refused or failed PPS resets the card and keeps the defaults.
    func negotiatePPS(slot: UInt8, atr: ATR?, protocolType: UInt8) throws(DriverError) -> UInt8 {
        let fiDi = wantedFiDi(atr, slot: Int(slot))
        guard fiDi != 0x11 || protocolType != (atr?.defaultProtocol ?? 0) else { return 0x11 }
        let request = PPS(protocolType: protocolType, fiDi: fiDi == 0x11 ? nil : fiDi)
        let character = descriptor.exchangeLevel == .character
        // At character level wLevelParameter says how many bytes to read: PPSS and PPS0 first, then what PPS0 announces.
        var reply = try exchange(.xfrBlock(bwi: 0, levelParameter: character ? 2 : 0, data: request.encoded()), slot: slot,
                                 waitingTime: .seconds(1))
        if character, reply.status.command != .failed, case .dataBlock(_, let head) = reply.body, head.count == 2 {
            let more = (head[1] & 0x70).nonzeroBitCount + 1
            let rest = try exchange(.xfrBlock(bwi: 0, levelParameter: UInt16(more), data: []), slot: slot, waitingTime: .seconds(1))
            if rest.status.command == .failed {
                reply = rest
            } else if case .dataBlock(_, let tail) = rest.body {
                reply.body = .dataBlock(chainParameter: 0, data: head + tail)
            }
        }
        if reply.status.command != .failed, case .dataBlock(_, let answer) = reply.body {
            do throws(PPSError) {
                let agreed = try request.negotiated(by: answer).effectiveFiDi
                log("slot \(slot): PPS T=\(protocolType) Fi/Di 0x\(hexString([agreed]))")
                return agreed
            } catch {
                log("slot \(slot): \(error); resetting the card and keeping the defaults")
            }
        } else {
            log("slot \(slot): no answer to PPS (\(reply.slotError)); resetting the card and keeping the defaults")
        }
        // ISO/IEC 7816-3 §9.2: after a failed PPS the card must be reset.
        _ = try powerOnLocked(slot: slot)
        guard protocolType == (atr?.defaultProtocol ?? 0) else {
            throw .protocolNotSupported("card refused PPS to T=\(protocolType)")
        }
        return 0x11
    }
}

/// abProtocolDataStructure of PC_to_RDR_SetParameters (CCID 1.1 §6.1.7).
struct ProtocolParameters {
    var fiDi: UInt8
    var protocolType: UInt8
    var atr: ATR?

    init(atr: ATR?, protocolType: UInt8, readerNegotiates: Bool) {
        self.atr = atr
        self.protocolType = protocolType
        // Without PPS the card runs at Fi/Di = 372/1 unless it is in specific mode (§9.1).
        let useTA1 = readerNegotiates || atr?.specificMode.map { !$0.parametersImplicit } == true
        fiDi = useTA1 ? (atr?.ta1 ?? 0x11) : 0x11
        if atr?.fi == nil || atr?.di == nil { fiDi = 0x11 }
    }

    /// What SetParameters carries: the rate chosen, the rest from the ATR.
    var protocolData: ProtocolData {
        let guardTime = atr?.extraGuardTime ?? 0
        if protocolType == 1 {
            return .t1(.init(fiDi: fiDi, crc: atr?.t1EDC == .crc, guardTime: guardTime,
                             waitingIntegers: ((atr?.t1BWI ?? 4) << 4) | (atr?.t1CWI ?? 13),
                             ifsc: UInt8(clamping: atr?.t1IFSC ?? 32)))
        }
        return .t0(.init(fiDi: fiDi, guardTime: guardTime, waitingInteger: atr?.t0WaitingTimeInteger ?? 10))
    }
}
