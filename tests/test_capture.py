"""`ccid-sim --pcap FILE`: every reader's CCID traffic as a Linux usbmon
capture, read back with tshark's USB CCID dissector. The same trace comes
from relay and USB (umockdev) readers; PINs in VERIFY data are masked unless
--pcap-pins, and a PIN pad's digits never cross USB at all."""
import os
import subprocess
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, features
from simharness import DIR, PrivatePCSCD, reader_names
from test_usb import named

VERIFY_1234 = [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34]


def ccid_messages(path, raw=False):
    """(bMessageType, payload hex) of every CCID message tshark finds in the
    capture; with `raw`, the whole bulk message as captured instead (the
    dissector keeps the fields of some messages, a Secure's, to itself)."""
    if raw:
        args = ["--disable-protocol", "usbccid", "-Y", "usb.transfer_type == 0x03 && usb.capdata", "-e", "usb.capdata"]
    else:
        args = ["-Y", "usbccid", "-e", "usbccid.bMessageType", "-e", "data.data"]
    out = subprocess.run(["tshark", "-r", path, "-T", "fields"] + args, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("tshark: " + out.stderr)
    if raw:
        return [("0x" + line[:2], line) for line in out.stdout.split()]
    return [tuple((line + "\t").split("\t")[:2]) for line in out.stdout.splitlines()]


class Capture(unittest.TestCase):
    PCAP = DIR + ".capture.pcap"

    def exchange(self, reader):
        with Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            self.assertEqual(card.transmit([0x80, 0x34, 0x00, 0x08, 0x08]), list(range(8)) + OK)
            self.assertEqual(card.transmit(VERIFY_1234), OK)
            card.disconnect()

    def check_trace(self, pins_shown, verify_in_block=None):
        messages = ccid_messages(self.PCAP)
        self.assertIn("0x62", [t for t, _ in messages], "IccPowerOn")
        verify = "0020000104" + ("31323334" if pins_shown else "2a2a2a2a")
        if verify_in_block:
            # T=1 I-blocks: NAD PCB LEN, the APDU, the LRC.
            self.assertTrue(any(t == "0x6f" and d[6:-2] == "00a4040006a000000018ff" for t, d in messages), messages)
            self.assertTrue(any(t == "0x80" and d[6:-2] == "00010203040506079000" for t, d in messages), messages)
            self.assertTrue(any(t == "0x6f" and d[6:-2] == verify for t, d in messages), messages)
        else:
            self.assertIn(("0x6f", "00a4040006a000000018ff"), messages)
            self.assertIn(("0x80", "00010203040506079000"), messages)
            self.assertIn(("0x6f", verify), messages)
        with open(self.PCAP, "rb") as f:
            self.assertEqual(b"\x31\x32\x33\x34" in f.read(), pins_shown)

    def tearDown(self):
        if os.path.exists(self.PCAP):
            os.unlink(self.PCAP)

    def test_relay_reader_trace_with_pins_masked(self):
        with PrivatePCSCD("--pcap", self.PCAP):
            self.exchange(reader_names()[0])
        self.check_trace(pins_shown=False)

    def test_pins_shown_when_asked(self):
        with PrivatePCSCD("--pcap", self.PCAP, "--pcap-pins"):
            self.exchange(reader_names()[0])
        self.check_trace(pins_shown=True)

    def test_usb_reader_trace(self):
        with PrivatePCSCD("--usb", "--pcap", self.PCAP):
            self.exchange(named("SIM1000"))
        self.check_trace(pins_shown=False)

    def test_tpdu_reader_masks_the_pin_inside_a_t1_block(self):
        with PrivatePCSCD("--profile", "gemalto-ct30-tpdu", "--pcap", self.PCAP):
            self.exchange(reader_names()[0])
        self.check_trace(pins_shown=False, verify_in_block=True)

    def test_card_events_and_pin_pad(self):
        with PrivatePCSCD("--profile", "ezio-pinpad-extended", "--pcap", self.PCAP) as pcscd:
            reader = reader_names()[0]
            with Context() as c:
                card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                apdu = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
                verify = [0x1E, 0x00, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00,
                          len(apdu), 0, 0, 0] + apdu
                self.assertEqual(card.control(features(card)[0x06], verify), OK)
                card.disconnect()
            self.assertEqual(pcscd.sim("remove", "sim0").returncode, 0)
        messages = ccid_messages(self.PCAP, raw=True)
        secure = [d for t, d in messages if t == "0x69"]
        self.assertEqual(len(secure), 1, messages)
        self.assertTrue(secure[0].endswith("0020000108" + "ff" * 8), secure[0])
        # The user's digits went from the PIN pad to the card, never over USB.
        with open(self.PCAP, "rb") as f:
            self.assertNotIn(b"\x31\x32\x33\x34", f.read())
        out = subprocess.run(["tshark", "-r", self.PCAP, "-Y", "usb.transfer_type == 0x01 && usb.data_len > 0",
                              "-T", "fields", "-e", "usb.capdata"], capture_output=True, text=True, timeout=60)
        # NotifySlotChange: card present at the start, then removed (changed, absent).
        self.assertEqual(out.stdout.split(), ["5003", "5002"])


if __name__ == "__main__":
    unittest.main()
