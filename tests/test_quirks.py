"""The quirk table at work, timing, descriptors and protocol (T, D, R and U
rows; PIN pads, power-up and the rest: test_quirks_pinpads_power.py): each
quirk against a simulated reader with the real device's identity and
descriptor and the defect the quirk exists for, through pcscd. Each is run
twice: as shipped, where the reader works, and with the quirk switched off
(SWIFTCCID_QUIRKS_OFF), where the defect shows. Where a quirk is bound to
firmware releases, the next release (without the defect) shows the driver
leaves it alone."""
import os
import unittest

from smartcard import scard as S

from pcsc import OK, SELECT_TEST_APPLET, Context, PCSCError, seq
from quirksim import DIR, Reader, case2, case2e, feature_tags, features, ifs_requests, session, set_parameters, transmit


class SlowSlotStatus(unittest.TestCase):
    """T2, T3: GetSlotStatus answered late. The open probes wait 100 ms; the
    quirks stretch that (×10, ×4). Delays are within what the facts give for
    each reader, with slack for a loaded machine."""

    def check(self, quirk, entry, bcd, delay_ms):
        with Reader(entry, bcd, ["slow-status=%d" % delay_ms]) as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
        with Reader(entry, bcd, ["slow-status=%d" % delay_ms], off=quirk, expect_listed=False) as r:
            self.assertTrue(r.refused("no answer to GetSlotStatus within 100 ms at open"))

    def test_t2_acr122u_up_to_1s(self):
        # (The Elatec TWN4 has 6 slots: pcscd's start-up checks each, 1 s apiece, as with libccid.)
        self.check("T2", "ACR122U_PICC.txt", 0x0207, 700)

    def test_t3_scm_scl011_350ms(self):
        self.check("T3", "SCM_SCL011.txt", 0x0112, 250)


class OpenDelay(unittest.TestCase):
    """T1: the id3 CL1356 takes no command for about 1 s after it is opened. With
    the quirk the driver waits first; without it the first open probe goes
    unanswered and costs its whole deadline (the probes after it recover)."""

    def test_t1_cl1356_boot_delay(self):
        unanswered = "first GetSlotStatus at open: exchange deadline passed"
        with Reader("id3_CL1356T.txt", 0x0112, ["boot-silence=700"]) as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
            self.assertNotIn(unanswered, r.pcscd.log_text())
        with Reader("id3_CL1356T.txt", 0x0112, ["boot-silence=700"], off="T1") as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
            self.assertIn(unanswered, r.pcscd.log_text())


class LongOperation(unittest.TestCase):
    """T4: the eToken Fusion generates keys for minutes and sends no time
    extension meanwhile. The card here works 10 s (`80 38 00 C8`), past its
    ATR's T=1 block waiting time (BWI 6: 5.7 s) and the 1 s transport margin."""
    BUSY = [0x80, 0x38, 0x00, 0xC8]

    def test_t4_fusion_waits_without_time_extensions(self):
        with Reader("SafeNet_eToken_Fusion.txt", 0x0001, ["no-time-extensions"]) as r:
            self.assertEqual(transmit(r.name, self.BUSY, S.SCARD_PROTOCOL_T1), OK)
        with Reader("SafeNet_eToken_Fusion.txt", 0x0001, ["no-time-extensions"], off="T4") as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, self.BUSY, S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)


class CardWaitingTime(unittest.TestCase):
    """T5: the OpenPGP card's TB3 says BWI 4 (about 1.4 s), but key generation
    takes longer, and the card asks for no time meanwhile: for its exact ATR
    the driver uses BWI 7, CWI 5 (0x75) in SetParameters and its deadlines.
    The card here works 5 s (`80 38 00 64`) asking for no time."""

    def test_t5_openpgp_card_waiting_integers(self):
        pcap = DIR + ".t5.pcap"
        with Reader("SCR331.txt", 0x0516, card="compliance-openpgp-atr", pcap=pcap) as r:
            self.assertEqual(transmit(r.name, [0x80, 0x38, 0x00, 0x64], S.SCARD_PROTOCOL_T1), OK)
        self.assertEqual([p[3] for p in set_parameters(pcap)], [0x75])
        with Reader("SCR331.txt", 0x0516, card="compliance-openpgp-atr", off="T5", pcap=pcap) as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, [0x80, 0x38, 0x00, 0x64], S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
        self.assertEqual([p[3] for p in set_parameters(pcap)], [0x45])
        os.unlink(pcap)


class MessageLength(unittest.TestCase):
    """D7: readers that declare 263-byte messages (SCM's) take the 270 bytes of
    a full short APDU: a case 3 with 255 data bytes goes to this short-APDU
    reader as one 270-byte XfrBlock, where the descriptor alone would make the
    driver refuse it."""

    def test_d7_scm_263_takes_270(self):
        apdu = [0x80, 0x32, 0x00, 0x00, 0xFF] + seq(255)
        entry = "Identiv_uTrust_3720_Contactless_Reader.txt"
        with Reader(entry, 0x0104, ["takes-message=271"]) as r:
            self.assertEqual(transmit(r.name, apdu), OK)
        with Reader(entry, 0x0104, ["takes-message=271"], off="D7") as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
            self.assertIn("APDU of 260 bytes exceeds the reader's message size 263", r.pcscd.log_text())


class ExchangeLevel(unittest.TestCase):
    """D9, D10b, D11, D12: descriptors that say the wrong exchange level."""

    def test_d9_tribank_responses_over_296_bytes_are_garbage(self):
        apdu, answer = case2e(400)
        with Reader("Kobil_EMV_CAP.txt", 0x0040, ["garble-over=296"]) as r:
            self.assertEqual(feature_tags(r.name)[1][0x0A], 0)  # dwMaxAPDUDataSize: short APDUs only
            self.assertEqual(transmit(r.name, case2(256)[0]), case2(256)[1])
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
        with Reader("Kobil_EMV_CAP.txt", 0x0040, ["garble-over=296"], off="D9") as r:
            self.assertEqual(feature_tags(r.name)[1][0x0A], 65535)
            self.assertEqual(transmit(r.name, apdu), [0x5A ^ 0xA5] * 400 + [0x90])

    def check_chaining(self, quirk, entry, bcd, piece, features=None):
        """A short-APDU descriptor whose firmware chains responses over `piece` bytes."""
        apdu, answer = case2e(1000)
        with Reader(entry, bcd, ["chain-over=%d" % piece], features=features) as r:
            self.assertEqual(feature_tags(r.name)[1][0x0A], 65535)
            self.assertEqual(transmit(r.name, apdu), answer)
            self.assertEqual(transmit(r.name, case2(200)[0]), case2(200)[1])
        with Reader(entry, bcd, ["chain-over=%d" % piece], off=quirk, features=features) as r:
            self.assertEqual(feature_tags(r.name)[1][0x0A], 0)
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
            if piece < 200:
                with self.assertRaises(PCSCError) as e:
                    transmit(r.name, case2(200)[0])
                self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)

    def test_d10b_hid_aviator_chains_long_responses(self):
        self.check_chaining("D10b", "HID_Aviator.txt", 0x0103, 256)

    def test_d11_pn7362au_chains_long_responses(self):
        self.check_chaining("D11", "Diebold_Nixdorf_PN7362au_CCID.txt", 0x0101, 256)

    def test_d12_kc1000sc_firmware_100_cuts_at_128(self):
        short = 0x000207BA  # firmware 1.00 declared short APDUs
        self.check_chaining("D12", "Cherry_KC_1000_SC.txt", 0x0100, 128, features=short)

    def test_d12_kc1000sc_firmware_101_is_left_alone(self):
        with Reader("Cherry_KC_1000_SC.txt", 0x0101, features=0x000207BA) as r:
            self.assertEqual(feature_tags(r.name)[1][0x0A], 0)
            self.assertEqual(transmit(r.name, case2(200)[0]), case2(200)[1])
            self.assertNotIn("quirk D12", r.pcscd.log_text())


class DataRates(unittest.TestCase):
    """D4, D5: rates a reader says it runs and does not, with a card asking
    for 250 kbps (TA1 96). The quirks keep the driver at rates that work."""
    FAST = "compliance-fast"

    def test_d4_oz776_only_9600(self):
        apdu, answer = case2(32)
        # R3 (no PPS at all) is off here, so that the rate is what matters.
        with Reader("Oz776S.txt", 0x0110, ["max-rate=9600"], off="R3", card=self.FAST) as r:
            self.assertEqual(transmit(r.name, apdu, S.SCARD_PROTOCOL_T1), answer)
        with Reader("Oz776S.txt", 0x0110, ["max-rate=9600"], off="R3+D4", card=self.FAST) as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu, S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)

    def test_d5_au9540_lists_rates_it_cannot_run(self):
        apdu, answer = case2(32)
        bugs = ["fake-rates", "max-rate=200000"]
        with Reader("AU9540.txt", 0x0120, bugs, card=self.FAST) as r:
            self.assertEqual(transmit(r.name, apdu, S.SCARD_PROTOCOL_T1), answer)
        with Reader("AU9540.txt", 0x0120, bugs, off="D5", card=self.FAST) as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu, S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)


class Protocol(unittest.TestCase):
    """R2: no IFSD negotiation on the eToken 5100's broken firmware; R3: no PPS on the Oz776."""

    def test_r2_etoken5100_firmware_0012_stalls_after_ifs(self):
        apdu, answer = case2(64)
        pcap = DIR + ".quirks.pcap"
        with Reader("SafeNet_Token_JC.txt", 0x0012, ["ifs-stall"], pcap=pcap) as r:
            self.assertEqual(transmit(r.name, apdu, S.SCARD_PROTOCOL_T1), answer)
        self.assertEqual(ifs_requests(pcap), 0)
        with Reader("SafeNet_Token_JC.txt", 0x0012, ["ifs-stall"], off="R2", pcap=pcap) as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu, S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
        self.assertEqual(ifs_requests(pcap), 4)  # unanswered: sent, then its 3 retransmissions (T=1's retry limit)
        # Firmware 1.00 has no such defect: the driver negotiates IFSD there, once per T=1 session.
        with Reader("SafeNet_Token_JC.txt", 0x0100, pcap=pcap) as r:
            self.assertEqual(transmit(r.name, apdu, S.SCARD_PROTOCOL_T1), answer)
        self.assertEqual(ifs_requests(pcap), 1)
        os.unlink(pcap)

    def test_r3_oz776_without_pps_stays_in_the_default_protocol(self):
        """pcscd asks for T=1 first. With the quirk the driver declines at once and
        the card stays in T=0; without it the PPS goes unanswered and the card
        must be reset (ISO/IEC 7816-3 §9.2): one XfrBlock and one power-up more."""
        apdu, answer = case2(32)
        with Reader("Oz776S.txt", 0x0110, ["no-pps"]) as r:
            protocol, quiet = session(r, apdu, answer)
            self.assertEqual(protocol, S.SCARD_PROTOCOL_T0)
            self.assertNotIn("no answer to PPS", r.pcscd.log_text())
            self.assertIn("this reader cannot switch the card from T=0 (no PPS)", r.pcscd.log_text())
        with Reader("Oz776S.txt", 0x0110, ["no-pps"], off="R3") as r:
            self.assertEqual(session(r, apdu, answer), (protocol, (quiet[0] + 2, quiet[1] + 2)))
            self.assertIn("no answer to PPS (ICC_MUTE); resetting the card", r.pcscd.log_text())


class ParametersFallback(unittest.TestCase):
    """R4: on the AU9540 a T=1 SetParameters at a lower speed than the card's
    TA1 leaves the card mute; the driver resets it twice and goes on with the
    parameters the reader took from the ATR. (D5 is what lowers the speed here.)"""
    BUGS = ["fake-rates", "max-rate=200000", "setparams-ta1-only"]

    def test_r4_au9540_reset_instead_of_parameters(self):
        apdu, answer = case2(32)
        with Reader("AU9540.txt", 0x0120, self.BUGS, card="compliance-fast") as r:
            self.assertEqual(transmit(r.name, apdu, S.SCARD_PROTOCOL_T1), answer)
            self.assertIn("SetParameters left the card mute; resetting it", r.pcscd.log_text())
        with Reader("AU9540.txt", 0x0120, self.BUGS, off="R4", card="compliance-fast") as r:
            # The refusal alone is taken as a reader that sets itself from the ATR; the card stays mute.
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu, S.SCARD_PROTOCOL_T1)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)


class CharacterLevel(unittest.TestCase):
    """U2: character-level readers mishandle a bulk transfer of whole 64-byte
    packets; under T=0 the driver never sends one (a 54-byte or 118-byte
    data phase goes as two XfrBlocks). The Oz776 here hangs on such a message."""

    def test_u2_no_whole_packet_messages_under_t0(self):
        with Reader("Oz776S.txt", 0x0110, ["whole-packet-hang"]) as r:
            with Context() as c:
                card = c.connect(r.name, S.SCARD_PROTOCOL_T0)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                for n in (53, 54, 55, 118):
                    self.assertEqual(card.transmit([0x80, 0x32, 0x00, 0x00, n] + seq(n)), OK, n)
                card.disconnect(S.SCARD_RESET_CARD)


if __name__ == "__main__":
    unittest.main()
