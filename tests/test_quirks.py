"""The quirk table at work: each quirk against a simulated reader with the
real device's identity and descriptor (data/ccid-readers) and the defect
the quirk exists for (ccid-sim's "firmwareBugs"), through pcscd. Each is
run twice: as shipped, where the reader works, and with the quirk switched
off (SWIFTCCID_QUIRKS_OFF), where the defect shows. Where a quirk is bound
to firmware releases, the next release (without the defect) shows the
driver leaves it alone."""
import json
import os
import subprocess
import tempfile
import unittest

from smartcard import scard as S

from pcsc import OK, SELECT_TEST_APPLET, Context, PCSCError, features, seq, tlv_properties
from simharness import DIR, ROOT, SIM, PrivatePCSCD, reader_names, wait_for
from test_capture import ccid_messages

ATTACH = os.path.join(ROOT, "build", "ccid-attach")
CORPUS = os.path.join(ROOT, "data", "ccid-readers", "descriptors.json")
CASE1 = [0x80, 0x30, 0x00, 0x00]
VERIFY_FEATURE, MODIFY_FEATURE, TLV_FEATURE = 0x06, 0x07, 0x12
T0_OR_T1 = S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1


def case2(n):
    """The test card's case 2 for n (1–256) bytes: command and exact answer."""
    return [0x80, 0x34, n >> 8 & 1, n & 0xFF, n & 0xFF], seq(n) + OK


def case2e(n, value=0x5A):
    """The test card's extended case 2: `value` n times."""
    return [0x80, 0x00, 0x04, value, 0x00, n >> 8, n & 0xFF], [value] * n + OK


def descriptor(entry):
    with open(CORPUS) as f:
        return next(e["descriptor_hex"] for e in json.load(f) if e["file"] == entry)


def with_features(hex_descriptor, features):
    """The descriptor with another dwFeatures (offset 40, little-endian): a firmware release's own."""
    raw = bytearray.fromhex(hex_descriptor)
    raw[40:44] = features.to_bytes(4, "little")
    return raw.hex()


class Reader:
    """One simulated reader (`ccid-sim pcscd --config`) under pcscd, quirks as
    shipped or some switched off; `name` is its PC/SC name once listed."""

    def __init__(self, entry, bcd, bugs=(), off=None, features=None, expect_listed=True, pcap=None, card="compliance",
                 usb=False):
        self.config = {"descriptorFile": CORPUS, "entry": entry, "bcdDevice": "0x%04X" % bcd,
                       "firmwareBugs": list(bugs), "cards": [card]}
        if features is not None:
            self.config["descriptor"] = with_features(descriptor(entry), features)
            del self.config["descriptorFile"], self.config["entry"]
            vid, pid = entry_ids(entry)
            self.config.update(vendorID=vid, productID=pid)
        self.env = {"SWIFTCCID_QUIRKS_OFF": off} if off else {}
        self.expect_listed = expect_listed
        self.args = (["--pcap", pcap] if pcap else []) + (["--usb"] if usb else [])

    def __enter__(self):
        self.file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"readers": [self.config]}, self.file)
        self.file.close()
        self.pcscd = PrivatePCSCD("--config", self.file.name, *self.args, env=self.env,
                                  wait_for_readers=self.expect_listed)
        self.pcscd.__enter__()
        names = reader_names()
        self.name = names[0] if names else None
        return self

    def __exit__(self, *exc):
        self.pcscd.__exit__(*exc)
        os.unlink(self.file.name)
        return False

    def counts(self):
        """Bulk-out and bulk-in messages the reader has seen so far."""
        out = subprocess.run([SIM, "list", "--counts", "--dir", DIR], capture_output=True, text=True, check=True).stdout
        return tuple(int(x) for x in out.splitlines()[0].split("\t")[2:4])

    def refused(self, why):
        """The driver refused the reader at open, saying `why` in pcscd's log."""
        wait_for(lambda: why in self.pcscd.log_text(), timeout=15, what="the driver's refusal in pcscd's log")
        return reader_names() == []


def entry_ids(entry):
    with open(CORPUS) as f:
        e = next(e for e in json.load(f) if e["file"] == entry)
    return e["idVendor"], e["idProduct"]


def transmit(reader, apdu, protocols=T0_OR_T1):
    """The test applet selected, then `apdu`'s answer."""
    with Context() as c:
        card = c.connect(reader, protocols)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            return card.transmit(apdu)
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


def session(r, apdu, answer, protocols=T0_OR_T1):
    """Connect, SELECT, `apdu` (its exact answer checked): the protocol pcscd
    settled on and the reader's message counts before the disconnect."""
    with Context() as c:
        card = c.connect(r.name, protocols)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            assert card.transmit(apdu) == answer, "wrong answer to %s" % bytes(apdu).hex()
            return card.protocol, r.counts()
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


def ifs_requests(pcap):
    """How many S(IFS request) blocks the host sent (XfrBlock 0x6F whose T=1 PCB, after 10 header bytes and NAD, is 0xC1)."""
    return sum(1 for kind, line in ccid_messages(pcap, raw=True) if kind == "0x6f" and line[22:24] == "c1")


def feature_tags(reader):
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            return set(features(card)), tlv_properties(card)
        finally:
            card.disconnect(S.SCARD_LEAVE_CARD)


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
        self.check("T2", "ACR122U_PICC.txt", 0x0207, 800)

    def test_t3_scm_scl011_350ms(self):
        self.check("T3", "SCM_SCL011.txt", 0x0112, 300)


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


class OpenDelay(unittest.TestCase):
    """T1: the id3 CL1356 takes no command for about 1 s after it is opened. With
    the quirk the driver waits first; without it the first open probe goes
    unanswered and costs its whole deadline (the probes after it recover)."""

    def test_t1_cl1356_boot_delay(self):
        unanswered = "first GetSlotStatus at open: exchange deadline passed"
        with Reader("id3_CL1356T.txt", 0x0112, ["boot-silence=800"]) as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
            self.assertNotIn(unanswered, r.pcscd.log_text())
        with Reader("id3_CL1356T.txt", 0x0112, ["boot-silence=800"], off="T1") as r:
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


def set_parameters(pcap):
    """abProtocolData of every SetParameters (0x61) the host sent, as bytes."""
    return [bytes.fromhex(line[20:]) for kind, line in ccid_messages(pcap, raw=True) if kind == "0x61"]


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


class FakePINPad(unittest.TestCase):
    """D10a, D13, P15: a PIN pad advertised (bPINSupport 0x03) where there is
    no keypad, or one that types the PIN to the host: no PIN features."""
    APDU = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
    VERIFY = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
              len(APDU), 0, 0, 0] + APDU

    def check(self, quirk, entry, bcd):
        with Reader(entry, bcd, ["no-keypad"]) as r:
            tags, _ = feature_tags(r.name)
            self.assertNotIn(VERIFY_FEATURE, tags)
            self.assertNotIn(MODIFY_FEATURE, tags)
            self.assertIn(TLV_FEATURE, tags)
        with Reader(entry, bcd, ["no-keypad"], off=quirk) as r:
            with Context() as c:
                card = c.connect(r.name, T0_OR_T1)
                codes = features(card)
                self.assertIn(VERIFY_FEATURE, codes)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                with self.assertRaises(PCSCError) as e:
                    card.control(codes[VERIFY_FEATURE], self.VERIFY)
                self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)
                card.disconnect(S.SCARD_RESET_CARD)

    def test_d10a_hid_aviator(self):
        self.check("D10a", "HID_Aviator.txt", 0x0103)

    def test_d13_ltc31_v2(self):
        self.check("D13", "LTC31v2.txt", 0x0250)

    def test_d13_minilector_evo(self):
        self.check("D13", "bit4id_minilector.txt", 0x0111)

    def test_p15_hp_keyboard(self):
        self.check("P15", "HP_kus-0133.txt", 0x0124)


def pin_verify(validation=0x02, messages=0x01, extra=0x0408):
    """PIN_VERIFY_STRUCTURE (PC/SC Part 10) for the test card's VERIFY, PIN of 4 to 8 ASCII digits, 8-byte block."""
    apdu = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
    return [0x1E, 0x00, 0x82, 0x08, 0x00, extra & 0xFF, extra >> 8, validation, messages, 0x09, 0x04, 0x00,
            0x00, 0x00, 0x00, len(apdu), 0, 0, 0] + apdu


def pin_modify(validation=0x02, messages=0x03):
    """PIN_MODIFY_STRUCTURE: old and new PIN, the new one entered twice."""
    apdu = [0x00, 0x24, 0x00, 0x01, 0x10] + [0xFF] * 16
    return [0x1E, 0x00, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, validation, messages, 0x09, 0x04,
            0x00, 0x01, 0x02, 0, 0, 0, len(apdu), 0, 0, 0] + apdu


def pin_entry(reader, feature, structure):
    """The answer to a PIN entry on the pad (the simulated user types 1234), after SELECT."""
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            return card.control(features(card)[feature], structure)
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


class PINPads(unittest.TestCase):
    """P1–P3, P8–P13: PIN structures as each firmware takes them; P16: PIN
    sizes the descriptor cannot state. Each pad's firmware rejects what the
    quirk rewrites (bError naming the field, which pcscd reports as
    SCARD_E_NOT_TRANSACTED), or its card answers 6B 80."""

    def on_and_off(self, quirk, entry, bcd, bugs, feature, structure, refused=None):
        with Reader(entry, bcd, bugs) as r:
            self.assertEqual(pin_entry(r.name, feature, structure), OK)
        with Reader(entry, bcd, bugs, off=quirk) as r:
            if refused is not None:
                self.assertEqual(pin_entry(r.name, feature, structure), refused)
                return
            with self.assertRaises(PCSCError) as e:
                pin_entry(r.name, feature, structure)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)

    GEMPC = ["pin-verify-gempc", "pin-modify-validation2", "pin-modify-3-indexes"]

    def test_p1_gempc_verify_fields(self):
        self.on_and_off("P1", "GemPCPinpad.txt", 0x0100, self.GEMPC, VERIFY_FEATURE, pin_verify(validation=0x01, messages=0x00))

    def test_p2_gempc_modify_validation(self):
        self.on_and_off("P2", "GemPCPinpad.txt", 0x0100, self.GEMPC, MODIFY_FEATURE, pin_modify(validation=0x01))

    def test_p3_gemalto_modify_three_indexes(self):
        # Without the quirk the firmware reads two prologue bytes as bMsgIndex2 and 3, and the APDU
        # two bytes late: the card gets a garbled command and answers 67 00.
        self.on_and_off("P3", "Vega-Alpha.txt", 0x0100, self.GEMPC, MODIFY_FEATURE, pin_modify(messages=0x01),
                        refused=[0x67, 0x00])

    def test_p8_xx44_modify_three_messages(self):
        self.on_and_off("P8", "CherryXX44.txt", 0x0104, ["pin-modify-3-messages"], MODIFY_FEATURE,
                        pin_modify(messages=0x01), refused=[0x6B, 0x80])

    def test_p9_spr532_modify_without_messages(self):
        self.on_and_off("P9", "SPR532.txt", 0x0510, ["pin-modify-no-messages"], MODIFY_FEATURE, pin_modify(messages=0x01))

    def test_p10_kc1000sc_modify_message_count_ff(self):
        self.on_and_off("P10", "Cherry_KC_1000_SC.txt", 0x0102, ["pin-modify-msg0-refused"], MODIFY_FEATURE,
                        pin_modify(messages=0x00))

    def test_p11_dell_verify_without_messages(self):
        self.on_and_off("P11", "DellSCRK.txt", 0x0200, ["pin-verify-msg0"], VERIFY_FEATURE, pin_verify(messages=0x01))

    def test_p12_dell_key_release(self):
        self.on_and_off("P12", "DellSCRK.txt", 0x0200, ["pin-key-release=200"], VERIFY_FEATURE, pin_verify(messages=0x00))

    def test_p13_dell_sk3106_max_extra_digit_swapped(self):
        self.on_and_off("P13", "DellSK-3106.txt", 0x0101, ["pin-extra-digit-swapped"], VERIFY_FEATURE, pin_verify())

    def test_p16_pin_sizes_reported(self):
        with Reader("GemPCPinpad.txt", 0x0100, self.GEMPC) as r:
            tlv = feature_tags(r.name)[1]
            self.assertEqual((tlv[0x02], tlv[0x06], tlv[0x07]), (0x02, 4, 8))
        with Reader("GemPCPinpad.txt", 0x0211, self.GEMPC) as r:   # a later firmware: not stated
            tlv = feature_tags(r.name)[1]
            self.assertNotIn(0x06, tlv)
            self.assertNotIn(0x07, tlv)
        with Reader("Cherry_KC_1000_SC.txt", 0x0102) as r:
            tlv = feature_tags(r.name)[1]
            self.assertEqual((tlv[0x06], tlv[0x07]), (0, 32))


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


class PowerUp(unittest.TestCase):
    """W1: readers that start in EMV mode; W2: a token whose card needs a power-off first."""

    def check(self, quirk, entry, bcd, bug):
        apdu, answer = case2(16)
        with Reader(entry, bcd, [bug]) as r:
            self.assertEqual(transmit(r.name, apdu), answer)
            self.assertEqual(transmit(r.name, apdu), answer)
        with Reader(entry, bcd, [bug], off=quirk) as r:
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, apdu)
            # pcscd's word for a power-up that failed.
            self.assertEqual(e.exception.rv, S.SCARD_W_UNPOWERED_CARD)

    def test_w1_gemplus_433_swap_emv_mode(self):
        self.check("W1", "GemPC433_SL.txt", 0x0001, "emv-mode")

    def test_w1_cherry_xx33_emv_mode(self):
        self.check("W1", "CherryXX33.txt", 0x0100, "emv-mode")

    def test_w2_kobil_idtoken_power_off_first(self):
        self.check("W2", "Kobil_IDToken.txt", 0x0100, "poweroff-first")


class ReaderInformation(unittest.TestCase):
    """O2: KOBIL IDToken's reader-information APDUs are the driver's to answer; none reaches the reader."""
    ANSWERS = {0x01: b"KOBIL systems", 0x03: b"IDToken", 0x06: b"1.00", 0x07: b"2012.2.7"}

    def test_o2_idtoken_information_apdus(self):
        with Reader("Kobil_IDToken.txt", 0x0100, ["poweroff-first"]) as r:
            with Context() as c:
                card = c.connect(r.name, T0_OR_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                before = r.counts()
                for p2, text in self.ANSWERS.items():
                    self.assertEqual(card.transmit([0xFF, 0x9A, 0x01, p2, 0x00]), list(text) + OK)
                self.assertEqual(r.counts(), before)
                card.disconnect(S.SCARD_RESET_CARD)
        with Reader("Kobil_IDToken.txt", 0x0100, ["poweroff-first"], off="O2") as r:
            with Context() as c:
                card = c.connect(r.name, T0_OR_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                before = r.counts()
                answer = card.transmit([0xFF, 0x9A, 0x01, 0x01, 0x00])
                self.assertNotEqual(answer, list(self.ANSWERS[0x01]) + OK)
                self.assertEqual(len(answer), 2)
                self.assertGreater(r.counts()[0], before[0])
                card.disconnect(S.SCARD_RESET_CARD)


def escape(reader, command):
    """SCardControl(IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE): a CCID Escape, its answer."""
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            return card.control(S.SCARD_CTL_CODE(1), command)
        finally:
            card.disconnect(S.SCARD_LEAVE_CARD)


class Escapes(unittest.TestCase):
    """G21, O3, O4: applications may send Escape commands only with the
    driver's escape option, except those the quirk table lets through for a
    reader's vendor tools. The readers here answer each Escape with its bytes."""

    def refused(self, reader, command):
        with self.assertRaises(PCSCError) as e:
            escape(reader, command)
        self.assertEqual(e.exception.rv, S.SCARD_E_UNSUPPORTED_FEATURE)

    def test_o3_omnikey_5427ck_any_escape(self):
        with Reader("HID_OMNIKEY_5427_CK.txt", 0x0100, ["escape-echo"]) as r:
            self.assertEqual(escape(r.name, [0x01, 0x02, 0x03]), [0x01, 0x02, 0x03])
        with Reader("HID_OMNIKEY_5427_CK.txt", 0x0100, ["escape-echo"], off="O3") as r:
            self.refused(r.name, [0x01, 0x02, 0x03])
            self.assertIn("Escape refused: applications may send Escape commands only with ifdDriverOptions escape=yes",
                          r.pcscd.log_text())

    def test_o4_gemalto_firmware_version_escape_only(self):
        with Reader("Gemalto_IDBridge_CT30.txt", 0x0200, ["escape-echo"]) as r:
            self.assertEqual(escape(r.name, [0x02]), [0x02])
            self.refused(r.name, [0x03, 0x00])
        with Reader("Gemalto_IDBridge_CT30.txt", 0x0200, ["escape-echo"], off="O4") as r:
            self.refused(r.name, [0x02])

    def test_o4_prox_du_interface_switch(self):
        switch = [0x52, 0xF8, 0x04, 0x01, 0x00, 0x01]
        with Reader("GemProxDU.txt", 0x0100, ["escape-echo"]) as r:
            self.assertEqual(escape(r.name, switch), switch)
            self.assertEqual(escape(r.name, [0x02]), [0x02])
            self.refused(r.name, [0x52, 0xF8, 0x04, 0x02])

    def test_escape_option_lets_any_through(self):
        with Reader("Gemalto_IDBridge_CT30.txt", 0x0200, ["escape-echo"]) as r:
            self.refused(r.name, [0x03, 0x00])
        r = Reader("Gemalto_IDBridge_CT30.txt", 0x0200, ["escape-echo"])
        r.env["SWIFTCCID_ESCAPE"] = "yes"
        with r:
            self.assertEqual(escape(r.name, [0x03, 0x00]), [0x03, 0x00])
        # A reader without vendor escapes answers "command not supported": the driver's error, not a hang.
        r = Reader("SCR331.txt", 0x0516)
        r.env["SWIFTCCID_ESCAPE"] = "yes"
        with r:
            with self.assertRaises(PCSCError) as e:
                escape(r.name, [0x03, 0x00])
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


class FirmwareGate(unittest.TestCase):
    """O1: firmware too old to use is refused below its first good release,
    unless O1 is switched off; the first good release opens."""

    def test_o1_scr331_before_5_16(self):
        with Reader("SCR331.txt", 0x0515, expect_listed=False) as r:
            self.assertTrue(r.refused("firmware 5.15 is older than 5.16 (quirk O1"))
        with Reader("SCR331.txt", 0x0516) as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
        with Reader("SCR331.txt", 0x0515, off="O1") as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])

    def test_o1_over_usb_and_named_by_doctor(self):
        with Reader("SCR331.txt", 0x0515, expect_listed=False, usb=True) as r:
            self.assertTrue(r.refused("firmware 5.15 is older than 5.16 (quirk O1"))
            out = subprocess.run([ATTACH, "doctor", "--drivers", os.path.join(ROOT, "build"), "001-002"],
                                 capture_output=True, text=True, env=r.pcscd.mock_env(), timeout=30).stdout
            self.assertIn("/dev/bus/usb/001/002 04e6:e001", out)
            self.assertIn("  - firmware 5.15 is older than 5.16 (quirk O1: SCM SCR 331; firmware before 5.16 is too old to use): "
                          "the driver refuses the device; to use it anyway, add quirks-off=O1 to ifdDriverOptions in the "
                          "bundle's Info.plist, or set SWIFTCCID_QUIRKS_OFF=O1 in pcscd's environment\n", out)
        with Reader("SCR331.txt", 0x0516, usb=True) as r:
            self.assertEqual(transmit(r.name, case2(16)[0]), case2(16)[1])
            out = subprocess.run([ATTACH, "doctor", "--drivers", os.path.join(ROOT, "build"), "001-002"],
                                 capture_output=True, text=True, env=r.pcscd.mock_env(), timeout=30).stdout
            self.assertNotIn("quirk", out)

    def test_o1_hp_keyboard_before_1_24(self):
        with Reader("HP_kus-0133.txt", 0x0122, expect_listed=False) as r:
            self.assertTrue(r.refused("firmware 1.22 is older than 1.24 (quirk O1"))


if __name__ == "__main__":
    unittest.main()
