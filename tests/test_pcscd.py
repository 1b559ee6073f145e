"""Integration: a real pcscd (private mount namespace) loads libswiftccid.so
for ccid-sim readers; real clients (pyscard, opensc-tool, pcsc_scan) use them."""
import json
import os
import subprocess
import tempfile
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, features, tlv_properties, PCSCError, check_cases_at_every_length
from simharness import TEXTBOOK_CHARACTER_READER, PrivatePCSCD, seq, wait_for, reader_names

ATR1 = [0x3B, 0xD6, 0x18, 0x00, 0x80, 0xB1, 0x80, 0x6D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x9E]
ATR2 = [0x3F, 0x96, 0x18, 0x80, 0x01, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x9F]
ATR3 = [0x3B, 0xD6, 0x18, 0x00, 0x81, 0xB1, 0x80, 0x7D, 0x1F, 0x03, 0x80, 0x51, 0x00, 0x61, 0x10, 0x30, 0x8F]
OMNIKEY = "OMNIKEY 3x21 Smart Card Reader [sim0] 00 00"
DESCRIPTORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "data", "ccid-readers", "descriptors.json")


CAP_MS = 3000


def run(cmd, timeout=30):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class DefaultReader(unittest.TestCase):
    """`ccid-sim pcscd` with no arguments: one extended-APDU reader, the compliance card."""
    ARGS = ()
    ENV = {}
    READER = OMNIKEY
    APDU_LEVEL = True
    VENDOR = b"HID Global"
    IDS = (0x076B, 0x3031)

    @classmethod
    def setUpClass(cls):
        cls.pcscd = PrivatePCSCD(*cls.ARGS, env=cls.ENV).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)

    def test_clients_list_the_reader_and_the_atr(self):
        self.assertEqual(reader_names(), [self.READER])
        out = run(["opensc-tool", "--list-readers"]).stdout
        self.assertIn(self.READER, out)
        self.assertEqual(run(["opensc-tool", "--reader", "0", "--atr"]).stdout.strip(),
                         ":".join("%02x" % b for b in ATR1))
        scan = run(["pcsc_scan", "-r"]).stdout
        self.assertIn(self.READER, scan)
        cards = run(["pcsc_scan", "-c", "-n"]).stdout
        self.assertIn("3B D6 18 00 80 B1 80 6D 1F 03 80 51 00 61 10 30 9E", cards)

    def test_opensc_tool_exchanges_apdus(self):
        out = run(["opensc-tool", "--reader", "0", "--send-apdu", "00:A4:04:00:06:A0:00:00:00:18:FF",
                   "--send-apdu", "80:34:00:08:08"]).stdout
        self.assertIn("SW1=0x90, SW2=0x00", out)
        self.assertIn("00 01 02 03 04 05 06 07", out)

    def _cases_at_every_length(self, protocol):
        check_cases_at_every_length(self, self.READER, protocol, self.APDU_LEVEL)

    def test_cases_1_to_4_at_every_short_length_T1(self):
        self._cases_at_every_length(S.SCARD_PROTOCOL_T1)

    def test_cases_1_to_4_at_every_short_length_T0(self):
        self._cases_at_every_length(S.SCARD_PROTOCOL_T0)

    def test_extended_apdus_up_to_65535_bytes(self):
        self._extended(S.SCARD_PROTOCOL_T1)

    def _extended(self, protocol):
        with Context() as c:
            card = c.connect(self.READER, protocol)
            self.assertEqual(card.protocol, protocol)
            for n in (257, 1000, 4096, 65535):
                out = card.transmit([0x80, 0x00, 0x04, 0xA5, 0x00, n >> 8, n & 0xFF])
                self.assertEqual(len(out), n + 2)
                self.assertEqual(out[-2:], OK)
                self.assertTrue(all(b == 0xA5 for b in out[:-2]))
                self.assertEqual(card.transmit([0x80, 0x12, 0x01, 0x80, 0x00, n >> 8, n & 0xFF] + seq(n)), OK, "3E %d" % n)
            card.disconnect()

    def test_attributes(self):
        with Context() as c:
            card = c.connect(self.READER, S.SCARD_PROTOCOL_T1)
            self.assertEqual(bytes(card.attribute(S.SCARD_ATTR_VENDOR_NAME)).rstrip(b"\0"), self.VENDOR)
            self.assertEqual(bytes(card.attribute(S.SCARD_ATTR_VENDOR_IFD_SERIAL_NO)).rstrip(b"\0"), b"SIM1000")
            self.assertEqual(int.from_bytes(bytes(card.attribute(S.SCARD_ATTR_VENDOR_IFD_VERSION)), "little"), 0x01000000)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR1)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ICC_PRESENCE), [1])
            self.assertEqual(card.attribute(S.SCARD_ATTR_ICC_INTERFACE_STATUS), [1])
            self.assertEqual(int.from_bytes(bytes(card.attribute(S.SCARD_ATTR_MAXINPUT)), "little"), 65544)
            self.assertEqual(int.from_bytes(bytes(card.attribute(S.SCARD_ATTR_CHANNEL_ID)), "little") >> 16, 0x0020)
            self.assertEqual(int.from_bytes(bytes(card.attribute(S.SCARD_ATTR_CURRENT_PROTOCOL_TYPE)), "little"),
                             S.SCARD_PROTOCOL_T1)
            card.disconnect()

    def test_part10_features(self):
        with Context() as c:
            card = c.connect(self.READER, S.SCARD_PROTOCOL_T1)
            codes = features(card)
            self.assertEqual(set(codes), {0x12})                   # no PIN pad on this reader
            self.assertEqual(card.control(0x313520), card.control(S.SCARD_CTL_CODE(3400)))  # Windows code too
            props = tlv_properties(card)
            self.assertEqual(props[0x0A], 65535)                   # dwMaxAPDUDataSize
            self.assertEqual((props[0x0B], props[0x0C]), self.IDS)
            card.disconnect()

    def test_card_insert_and_remove_are_seen(self):
        OMNIKEY = self.READER
        with Context() as c:
            state = c.state(OMNIKEY)
            self.assertTrue(state & S.SCARD_STATE_PRESENT)
            self.assertEqual(self.pcscd.sim("remove", OMNIKEY).returncode, 0)
            state = c.state(OMNIKEY, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_EMPTY, "removal not seen")
            r = self.pcscd.sim("insert", "sim0", "--card", "compliance-inverse")
            self.assertEqual(r.returncode, 0, r.stderr)
            state = c.state(OMNIKEY, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_PRESENT, "insertion not seen")
            card = c.connect(OMNIKEY)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR2)
            card.disconnect()
            self.assertEqual(self.pcscd.sim("insert", "0", "--card", "compliance-crypto").returncode, 0)
            wait_for(lambda: c.state(OMNIKEY) & S.SCARD_STATE_PRESENT and True, what="crypto card")
            card = c.connect(OMNIKEY)
            self.assertEqual(card.protocol, S.SCARD_PROTOCOL_T1)   # T=1-only card
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR3)
            card.disconnect()
            self.assertEqual(self.pcscd.sim("insert", "sim0").returncode, 0)

    def test_list_names_readers_three_ways(self):
        out = self.pcscd.sim("list").stdout
        self.assertIn("sim0", out)
        self.assertIn(self.READER[:-6], out)
        self.assertNotEqual(self.pcscd.sim("remove", "no-such-reader").returncode, 0)

    def test_time_request_of_the_test_card(self):
        for protocol in (S.SCARD_PROTOCOL_T1, S.SCARD_PROTOCOL_T0):
            with Context() as c:
                card = c.connect(self.READER, protocol)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                start = time.monotonic()
                self.assertEqual(card.transmit([0x80, 0x38, 0x00, 0x14]), OK)   # 1 s busy, asking for time meanwhile
                self.assertGreaterEqual(time.monotonic() - start, 0.9)
                card.disconnect(S.SCARD_RESET_CARD)


class TPDUReader(DefaultReader):
    """A TPDU reader (Gemalto IDBridge CT30 profile): the driver runs T=0 and T=1 itself."""
    ARGS = ("--profile", "gemalto-ct30-tpdu")
    APDU_LEVEL = False
    ENV = {"SWIFTCCID_MAX_EXCHANGE_MS": str(CAP_MS)}
    READER = "USB SmartCard Reader [sim0] 00 00"
    VENDOR = b"Gemalto"
    IDS = (0x08E6, 0x3437)
    CLOCK_KHZ = 4800

    def test_parameters_attributes_come_from_the_reader(self):
        def dword(card, attr):
            return int.from_bytes(bytes(card.attribute(attr)), "little")
        with Context() as c:
            card = c.connect(self.READER, S.SCARD_PROTOCOL_T1)   # PPS to T=1 with TA1 = 18
            self.assertEqual((dword(card, S.SCARD_ATTR_CURRENT_F), dword(card, S.SCARD_ATTR_CURRENT_D)), (372, 12))
            f = self.CLOCK_KHZ * 1000
            etu = 372 / 12 / f
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_CLK), self.CLOCK_KHZ)
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_IFSC), 128)
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_IFSD), 254)
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_EBC_ENCODING), 0)     # LRC
            # BWI 6: 11 etu + 2^6 · 960 · 372 / f; CWI 13: (11 + 2^13) etu (µs).
            self.assertAlmostEqual(dword(card, S.SCARD_ATTR_CURRENT_BWT) / 1e6, 11 * etu + 64 * 960 * 372 / f, places=3)
            self.assertAlmostEqual(dword(card, S.SCARD_ATTR_CURRENT_CWT) / 1e6, 8203 * etu, places=4)
            card.disconnect()
            card = c.connect(self.READER, S.SCARD_PROTOCOL_T0)   # the card's own protocol, Fi/Di negotiated
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_W), 10)
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_N), 0)
            self.assertEqual(dword(card, S.SCARD_ATTR_CURRENT_D), 12)
            card.disconnect()

    def test_extended_apdus_over_T0_via_envelope(self):
        self._extended(S.SCARD_PROTOCOL_T0)

    def test_stuck_card_costs_one_capped_deadline(self):
        for protocol in (S.SCARD_PROTOCOL_T1, S.SCARD_PROTOCOL_T0):
            with Context() as c:
                card = c.connect(self.READER, protocol)
                self.assertEqual(self.pcscd.sim("fault", "sim0", "stuck").returncode, 0)
                start = time.monotonic()
                with self.assertRaises(PCSCError):
                    card.transmit([0x80, 0x00, 0x04, 0x01, 0x02])
                elapsed = time.monotonic() - start
                self.assertLess(elapsed, CAP_MS / 1000 + 1.5, "stuck card cost %.1f s" % elapsed)
                self.assertEqual(self.pcscd.sim("fault", "sim0", "clear").returncode, 0)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x01, 0x02]), [1, 1] + OK)   # still usable
                card.disconnect(S.SCARD_RESET_CARD)
            self.assertTrue(self.pcscd.pcscd_alive())

    def test_recoverable_faults_through_pcscd(self):
        with Context() as c:
            card = c.connect(self.READER, S.SCARD_PROTOCOL_T1)
            # Every class at once, sparse enough to fit the 3 s cap (a lost block costs 100 ms of ICC_MUTE).
            r = self.pcscd.sim("fault", "sim0", "parity=5", "edc=7", "lost=29", "repeat=13", "ifs=64", "wtx=2",
                               "te=3", "wrongseq=4")
            self.assertEqual(r.returncode, 0, r.stderr)
            try:
                for n in (1, 32, 200, 255):
                    self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x33, n]), [0x33] * n + OK)
                n = 2000
                self.assertEqual(card.transmit([0x80, 0x12, 0x01, 0x80, 0x00, n >> 8, n & 0xFF] + seq(n)), OK)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x44, 0x00, n >> 8, n & 0xFF]), [0x44] * n + OK)
            finally:
                self.pcscd.sim("fault", "sim0", "clear")
            card.disconnect()


class ManyReaders(unittest.TestCase):
    """A short-APDU reader, a 3-slot reader and a PIN pad served at once."""

    @classmethod
    def setUpClass(cls):
        cls.config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"readers": [
            {"profile": "cherry-st-short", "cards": ["compliance"]},
            {"profile": "acr1281u-3slot-extended", "cards": ["compliance", None, "compliance-crypto"]},
            {"profile": "ezio-pinpad-extended", "cards": ["compliance"]},
            {"descriptorFile": DESCRIPTORS, "entry": "HID_Global_OMNIKEY_5022_Smart_Card_Reader.txt",
             "manufacturer": "HID Global", "cards": ["compliance-crypto"]},
        ]}, cls.config)
        cls.config.close()
        cls.pcscd = PrivatePCSCD("--config", cls.config.name).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)
        os.unlink(cls.config.name)

    # pcscd numbers readers in reader.conf order: "<name> <reader number> <slot>".
    CHERRY = "Smart Card Reader USB [sim0] 00 00"
    ACR = ["ACR1281U [sim1] 01 %02X" % s for s in range(3)]
    EZIO = "Ezio Shield [sim2] 02 00"
    FROM_FILE = "OMNIKEY 5022 Smart Card Reader [sim3] 03 00"

    def test_every_slot_is_a_reader(self):
        wait_for(lambda: len(reader_names()) == 6, what="6 PC/SC readers")
        self.assertEqual(sorted(reader_names()), sorted([self.CHERRY] + self.ACR + [self.EZIO, self.FROM_FILE]))

    def test_reader_from_a_real_descriptor(self):
        with Context() as c:
            card = c.connect(self.FROM_FILE)
            self.assertEqual(card.protocol, S.SCARD_PROTOCOL_T1)
            self.assertEqual(bytes(card.attribute(S.SCARD_ATTR_VENDOR_NAME)).rstrip(b"\0"), b"HID Global")
            props = tlv_properties(card)
            self.assertEqual((props[0x0B], props[0x0C]), (0x076B, 0x5022))
            n = 5000   # 520-byte messages: chained
            self.assertEqual(card.transmit([0x80, 0x12, 0x01, 0x80, 0x00, n >> 8, n & 0xFF] + seq(n)), OK)
            card.disconnect()

    def test_short_apdu_reader_refuses_extended(self):
        with Context() as c:
            card = c.connect(self.CHERRY, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x11, 0xFF]), [0x11] * 255 + OK)
            with self.assertRaises(PCSCError):
                card.transmit([0x80, 0x00, 0x04, 0x11, 0x00, 0x01, 0x00])
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x11, 0x02]), [0x11, 0x11] + OK)   # still usable
            self.assertEqual(tlv_properties(card)[0x0A], 0)
            card.disconnect()

    def test_multi_slot_reader(self):
        with Context() as c:
            s0 = c.connect(self.ACR[0], S.SCARD_PROTOCOL_T0)
            s2 = c.connect(self.ACR[2])
            self.assertEqual(s2.protocol, S.SCARD_PROTOCOL_T1)
            self.assertTrue(c.state(self.ACR[1]) & S.SCARD_STATE_EMPTY)
            self.assertEqual(s0.transmit(SELECT_TEST_APPLET), OK)
            self.assertEqual(s2.transmit(SELECT_TEST_APPLET), OK)
            # An APDU-level reader fetches the T=0 response itself (GET RESPONSE on 61 03).
            self.assertEqual(s0.transmit([0x80, 0x36, 0x00, 0x03, 0x01, 0x00, 0x00]), [0, 1, 2] + OK)
            self.assertEqual(s2.transmit([0x80, 0x36, 0x00, 0x03, 0x01, 0x00, 0x00]), [0, 1, 2] + OK)
            n = 3000
            self.assertEqual(len(s2.transmit([0x80, 0x00, 0x04, 0x01, 0x00, n >> 8, n & 0xFF])), n + 2)
            s0.disconnect()
            s2.disconnect()
            r = self.pcscd.sim("insert", self.ACR[1])      # the PC/SC name says slot 1
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_for(lambda: c.state(self.ACR[1]) & S.SCARD_STATE_PRESENT and True, what="slot 1 insertion")
            s1 = c.connect(self.ACR[1])
            self.assertEqual(s1.transmit([0x80, 0x00, 0x04, 0x22, 0x01]), [0x22] + OK)
            s1.disconnect()

    def test_pin_pad_verify_and_modify(self):
        with Context() as c:
            card = c.connect(self.EZIO, S.SCARD_PROTOCOL_T1)
            codes = features(card)
            self.assertEqual(set(codes), {0x06, 0x07, 0x0A, 0x12})
            self.assertEqual(card.control(codes[0x0A]), [0x11, 0x02, 0x02, 0x00])   # wLcdLayout 2x17
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            apdu = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
            verify = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                      len(apdu), 0, 0, 0] + apdu
            self.assertEqual(card.control(codes[0x06], verify), OK)
            self.assertEqual(self.pcscd.sim("pinpad", self.EZIO, "enter", "1239").returncode, 0)
            self.assertEqual(card.control(codes[0x06], verify), [0x6A, 0x03])
            self.assertEqual(self.pcscd.sim("pinpad", "sim2", "cancel").returncode, 0)
            self.assertEqual(card.control(codes[0x06], verify), [0x64, 0x01])   # cancelled at the pad
            self.assertEqual(self.pcscd.sim("pinpad", "sim2", "timeout").returncode, 0)
            self.assertEqual(card.control(codes[0x06], verify), [0x64, 0x00])   # the user did nothing
            self.assertEqual(self.pcscd.sim("pinpad", "sim2", "enter", "1234").returncode, 0)
            apdu = [0x00, 0x24, 0x00, 0x01, 0x10] + [0xFF] * 16
            modify = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, 0x03, 0x09, 0x04,
                      0x00, 0x01, 0x02, 0, 0, 0, len(apdu), 0, 0, 0] + apdu
            self.assertEqual(card.control(codes[0x07], modify), OK)
            card.disconnect()


class CharacterReader(TPDUReader):
    """A character-level reader (O2Micro Oz776S profile): the driver reads T=0 procedure bytes and T=1 blocks.
    Its firmware's defects are not modelled, so the quirks for them are off (see TEXTBOOK_CHARACTER_READER)."""
    ARGS = ("--profile", "o2micro-oz776-char")
    ENV = dict(TPDUReader.ENV, **TEXTBOOK_CHARACTER_READER)
    READER = "O2Micro CCID SC Reader [sim0] 00 00"
    VENDOR = b"O2Micro"
    IDS = (0x0B97, 0x7762)
    CLOCK_KHZ = 4000


if __name__ == "__main__":
    unittest.main()
