"""The quirk table at work, PIN pads, escapes, power-up, presence and firmware (P, W,
M and O rows), as test_quirks.py does for the others: each quirk against a
simulated reader with the real device's identity and the defect, through
pcscd, as shipped and switched off."""
import os
import subprocess
import unittest

from smartcard import scard as S

from pcsc import OK, SELECT_TEST_APPLET, Context, PCSCError, tlv_properties
from quirksim import (ATTACH, MODIFY_FEATURE, ROOT, T0_OR_T1, TLV_FEATURE, VERIFY_FEATURE, Reader, case2, escape,
                      feature_tags, features, pin_entry, pin_modify, pin_verify, transmit)
from simharness import reader_names, wait_for

# pcsc-lite's SCARD_E_TRANSACTION_FAILED (IFD_COMMUNICATION_ERROR from the driver); pyscard does not name it.
SCARD_E_TRANSACTION_FAILED = 0x80100016


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


class PINPads(unittest.TestCase):
    """P1–P3, P8–P13: PIN structures as each firmware takes them; P16: PIN
    sizes the descriptor cannot state. Each pad's firmware rejects what the
    quirk rewrites (bError naming the field, which pcscd reports as
    SCARD_E_NOT_TRANSACTED), or its card answers 6B 80."""

    def on_and_off(self, quirk, entry, bcd, bugs, feature, structure, refused=None, error=S.SCARD_E_NOT_TRANSACTED):
        with Reader(entry, bcd, bugs) as r:
            self.assertEqual(pin_entry(r.name, feature, structure), OK)
        with Reader(entry, bcd, bugs, off=quirk) as r:
            if refused is not None:
                self.assertEqual(pin_entry(r.name, feature, structure), refused)
                return
            with self.assertRaises(PCSCError) as e:
                pin_entry(r.name, feature, structure)
            self.assertEqual(e.exception.rv, error)

    GEMPC = ["pin-verify-gempc", "pin-modify-validation2", "pin-modify-3-indexes"]

    def test_p1_gempc_verify_fields(self):
        self.on_and_off("P1", "GemPCPinpad.txt", 0x0100, self.GEMPC, VERIFY_FEATURE, pin_verify(validation=0x01, messages=0x00))

    def test_p2_gempc_modify_validation(self):
        self.on_and_off("P2", "GemPCPinpad.txt", 0x0100, self.GEMPC, MODIFY_FEATURE, pin_modify(validation=0x01))

    def test_p3_gemalto_modify_three_indexes(self):
        # Without the quirk the firmware reads two prologue bytes as bMsgIndex2 and 3, the T=1
        # prologue from the APDU's first bytes and the APDU two bytes late: the card gets a block
        # out of sequence and asks for it again, which only the pad could send (the PIN is in it).
        self.on_and_off("P3", "Vega-Alpha.txt", 0x0100, self.GEMPC, MODIFY_FEATURE, pin_modify(messages=0x01),
                        error=SCARD_E_TRANSACTION_FAILED)

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

    def test_p5_gempc_display_prompts(self):
        # The pad takes a PIN only once its prompts are loaded (Escape B2 A0 00 4D 4C, ten 16-byte texts).
        self.on_and_off("P5", "GemPCPinpad.txt", 0x0100, self.GEMPC + ["needs-prompts"], VERIFY_FEATURE, pin_verify())
        with Reader("GemPCPinpad.txt", 0x0100, self.GEMPC + ["needs-prompts"]) as r:
            self.assertIn("quirk P5: display prompts loaded (%s)" % self.language(), r.pcscd.log_text())

    @staticmethod
    def language():
        """The prompts' language as the driver picks it from pcscd's LANG (ccid-sim passes its environment on)."""
        code = os.environ.get("LANG", "")[:2].lower()
        return code if code in ("fr", "de") else "en"

    def test_p4_gemalto_firmware_features(self):
        # The Ezio Shield says at open (Escape 6A, 21 bytes) that it validates with its key only and takes
        # PINs of 4 to 8 digits: a verification asking for any condition (0x07) goes with 0x02, and the
        # PIN sizes are the firmware's. A 20-byte answer is not the structure: ignored.
        verify_any = pin_verify(validation=0x07)
        self.on_and_off("P4", "Gemalto_Ezio_Shield.txt", 0x0102, ["firmware-features=21"], VERIFY_FEATURE, verify_any)
        with Reader("Gemalto_Ezio_Shield.txt", 0x0102, ["firmware-features=21"]) as r:
            self.assertIn("quirk P4: the firmware reports validation conditions 0x02, PINs of 4 to 8 digits, "
                          "modification fix absent", r.pcscd.log_text())
            with Context() as c:
                card = c.connect(r.name, T0_OR_T1)
                tlv = tlv_properties(card)
                card.disconnect(S.SCARD_LEAVE_CARD)
            self.assertEqual((tlv[0x06], tlv[0x07], tlv[0x02]), (4, 8, 0x02))   # bMinPINSize, bMaxPINSize, bEntryValidationCondition
        with Reader("Gemalto_Ezio_Shield.txt", 0x0102, ["firmware-features=20"]) as r:
            self.assertNotIn("quirk P4: the firmware reports", r.pcscd.log_text())
            with self.assertRaises(PCSCError) as e:
                pin_entry(r.name, VERIFY_FEATURE, verify_any)
            self.assertEqual(e.exception.rv, S.SCARD_E_NOT_TRANSACTED)

    def test_p14_spr532_case1_verify_appends_the_pin_unpadded(self):
        # A verification whose APDU is the bare header 00 20 00 01, no PIN block (bmPINBlockString 0):
        # the pad appends Lc and the PIN as typed, once Escape 80 02 00 said so, in a command of its own.
        case1 = [0x1E, 0x00, 0x82, 0x00, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                 4, 0, 0, 0, 0x00, 0x20, 0x00, 0x01]
        self.on_and_off("P14", "SPR532.txt", 0x0510, ["pin-case1-escape"], VERIFY_FEATURE, case1)

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


class Presence(unittest.TestCase):
    """M6: a reader that cannot sense a card (its status always says one is in): the
    slot is empty once a power-up finds no card; the next firmware is left alone."""

    def state(self, name):
        with Context() as c:
            return c.state(name)

    def test_m6_gemcore_sim_pro_without_a_card(self):
        with Reader("GemCoreSIMPro.txt", 0x0100, ["no-presence"], card=None) as r:
            # pcscd powers up what the status calls a card; the failure makes the slot empty.
            wait_for(lambda: self.state(r.name) & S.SCARD_STATE_EMPTY, what="the slot seen empty")
            self.assertIn("no card answers the power-up; reporting the slot empty until the reader is reopened",
                          r.pcscd.log_text())
        with Reader("GemCoreSIMPro.txt", 0x0100, ["no-presence"], card=None, off="M6") as r:
            # Without the quirk the slot holds a card that never answers.
            wait_for(lambda: self.state(r.name) & S.SCARD_STATE_MUTE, what="a mute card")
            self.assertFalse(self.state(r.name) & S.SCARD_STATE_EMPTY)
            with self.assertRaises(PCSCError) as e:
                transmit(r.name, case2(4)[0])
            # pcscd's word for a power-up that failed.
            self.assertEqual(e.exception.rv, S.SCARD_W_UNPOWERED_CARD)

    def test_m6_card_in_works_and_firmware_2_is_left_alone(self):
        apdu, answer = case2(16)
        with Reader("GemCoreSIMPro.txt", 0x0100, ["no-presence"]) as r:
            self.assertEqual(transmit(r.name, apdu), answer)
        with Reader("GemCoreSIMPro.txt", 0x0200, []) as r:
            self.assertEqual(transmit(r.name, apdu), answer)
            self.assertNotIn("quirk M6", r.pcscd.log_text())


class SlotRates(unittest.TestCase):
    """M5: the GemCore POS Pro's slots after the first run 10753, 21505, 43011 and 125000 bps only."""

    def test_m5_gemcore_pos_pro_second_slot(self):
        apdu, answer = case2(32)
        cards = ["compliance-fast", "compliance-fast"]     # TA1 0x96: 250000 bps at 4 MHz
        with Reader("GemCorePOSPro.txt", 0x0100, ["secondary-rates"], cards=cards) as r:
            second = next(n for n in reader_names() if n.endswith(" 01"))
            self.assertEqual(transmit(r.name, apdu), answer)
            self.assertEqual(transmit(second, apdu), answer)
            self.assertIn("slot 1: PPS T=1 Fi/Di 0x95", r.pcscd.log_text())     # 125000 bps
            self.assertIn("slot 0: PPS T=1 Fi/Di 0x96", r.pcscd.log_text())
        with Reader("GemCorePOSPro.txt", 0x0100, ["secondary-rates"], cards=cards, off="M5") as r:
            second = next(n for n in reader_names() if n.endswith(" 01"))
            self.assertEqual(transmit(r.name, apdu), answer)
            with self.assertRaises(PCSCError) as e:
                transmit(second, apdu)
            self.assertEqual(e.exception.rv, SCARD_E_TRANSACTION_FAILED)


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
