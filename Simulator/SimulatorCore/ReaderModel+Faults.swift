import CCID

/// The fault layer around the device model: what a misbehaving reader does
/// to the replies the model made (see `Faults` for the settings).
extension ReaderModel {
    /// Reply-level faults: a time-extension storm, a stale bSeq first, a
    /// reader that lies about its messages, says nothing, or goes away.
    mutating func withReplyFaults(_ steps: [TimedReply], slot: Int) -> [TimedReply] {
        let faults = slots[slot].faults
        if faults.stuck { return [] }
        guard var final = steps.last else { return steps }
        if faults.hangUpAt > 0 {
            slots[slot].faults.hangUpAt -= 1
            if slots[slot].faults.hangUpAt == 0 {
                final.hangUp = true
                return [final]
            }
        }
        let context = ReplyContext(slot: final.reply.slot, sequence: final.reply.sequence, icc: final.reply.status.icc)
        var out = Array(repeating: context.timeExtension(after: timing.faultTimeExtensionGap), count: faults.timeExtensionsPerReply)
        if slots[slot].counters.sequence.fires(every: faults.wrongSequenceEvery) {
            var stale = final.reply
            stale.sequence &+= 0x80
            out.append(TimedReply(delay: .zero, reply: stale))
        }
        // Misbehaviour of the reader itself: a message before the right one, or the right one spoilt.
        if let lie = faults.readerLie, slots[slot].counters.lie.fires(every: faults.readerLieEvery) {
            var bytes = final.bytes
            switch lie {
            case .wrongSlot:
                var other = final.reply
                other.slot &+= 1
                out.append(TimedReply(delay: .zero, reply: other))
            case .garbage:
                let junk = (0..<Int.random(in: 0...300, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                out.append(TimedReply(delay: .zero, reply: final.reply, raw: junk))
            case .truncated:
                bytes.removeLast(max(1, (bytes.count - ccidHeaderLength) / 2 + 1))
                final.raw = bytes
            case .oversized:
                if bytes.count >= 5 { bytes.replaceSubrange(1..<5, with: [0xF0, 0xFF, 0xFF, 0xFF]) }
                final.raw = bytes
            case .wrongType:
                if !bytes.isEmpty { bytes[0] = bytes[0] == 0x80 ? 0x81 : 0x80 }
                final.raw = bytes
            case .late:
                // Answers after the host gave up (and sent Abort): the reply, much later.
                final.delay += .milliseconds(Int64(faults.lateMilliseconds))
                final.survivesAbort = true
            }
        }
        return out + steps.dropLast() + [final]
    }

    /// Interrupt-level faults of one command: a NotifySlotChange flood, a hardware error.
    mutating func interruptFaults(slot: Int, sequence: UInt8) -> [[UInt8]] {
        let faults = slots[slot].faults
        var interrupts = faults.interruptFlood > 0 ? Array(repeating: slotChange(slot), count: faults.interruptFlood) : []
        if slots[slot].counters.hardwareError.fires(every: faults.hardwareErrorEvery) {
            interrupts.append(InterruptMessage.hardwareError(slot: UInt8(slot), sequence: sequence, code: 0x01).encoded())
        }
        return interrupts
    }
}
