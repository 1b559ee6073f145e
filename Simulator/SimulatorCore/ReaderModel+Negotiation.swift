import CCID
import ISO7816

/// Readers that negotiate with the card themselves (dwFeatures, CCID 1.1
/// §5.1), so the host sends them no PPS:
/// - 0x80, automatic PPS "according to the current parameters": the reader
///   runs PPS with the card when SetParameters asks for a protocol or a rate;
/// - 0x40, automatic parameters negotiation (the reader's own algorithm):
///   here, PPS right after the ATR to the card's first protocol at its TA1
///   rate, and a warm reset and PPS again, unseen by the host, when
///   SetParameters asks for something else.
/// Without this the card stayed in its default protocol at 372/1 while the
/// host spoke T=1 at TA1's rate, and every block was lost.
extension ReaderModel {
    var negotiatesWithTheCard: Bool {
        descriptor.features.contains(.automaticPPS) || descriptor.features.contains(.automaticParameterNegotiation)
    }

    /// Right after an ATR, for a 0x40 reader.
    mutating func negotiateAfterATR(slot: Int) {
        guard descriptor.features.contains(.automaticParameterNegotiation), let atr = slots[slot].atr,
              atr.specificMode == nil else { return }
        _ = agree(slot: slot, protocolType: atr.defaultProtocol, fiDi: atr.fi == nil || atr.di == nil ? 0x11 : atr.ta1)
    }

    /// The PPS the reader runs for SetParameters: the rate the card agreed
    /// to, or nil if it refused (the `pps=` fault), as `pps(…)` answers a host's.
    mutating func negotiate(slot: Int, _ parameters: ProtocolData, protocolType: UInt8) -> UInt8? {
        guard slots[slot].atr?.specificMode == nil else { return parameters.fiDi }
        return agree(slot: slot, protocolType: protocolType, fiDi: parameters.fiDi)
    }

    private mutating func agree(slot: Int, protocolType: UInt8, fiDi: UInt8) -> UInt8? {
        slots[slot].session.ppsAllowed = false
        switch slots[slot].faults.ppsAnswer {
        case 2: return nil
        case 1: slots[slot].session.fiDi = 0x11       // the card keeps its default rate
        default: slots[slot].session.fiDi = fiDi
        }
        slots[slot].protocolType = protocolType
        slots[slot].readerFiDi = slots[slot].session.fiDi
        return slots[slot].session.fiDi
    }
}
