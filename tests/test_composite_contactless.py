"""Tokens and readers that are not a lone CCID interface. A composite token
(Yubico YubiKey NEO OTP+U2F+CCID's layout: two HID interfaces, CCID on
interface 2) over USB (umockdev): pcscd offers every interface to the
driver, which must take only the CCID one. A contactless reader (HID
OMNIKEY 5022 CL) whose firmware answers PC/SC Part 3's GET DATA pseudo-APDU
(FF CA) with the card's UID. Debian's libccid on the same devices."""
import os
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET
from simharness import PrivatePCSCD, reader_names, wait_for
from test_usb import LIBCCID, named

UID = [0x04, 0xA2, 0x2B, 0x7A, 0x5C, 0x3E, 0x80]
HISTORICAL = [0x80, 0x51, 0x00, 0x61, 0x10, 0x30]
CONTACTLESS_ATR = [0x3B, 0x86, 0x80, 0x01] + HISTORICAL + [0x97]
DRIVERS = [None] + ([LIBCCID] if os.path.isdir(LIBCCID) else [])


def present(reader):
    with Context() as c:
        return bool(c.state(reader) & S.SCARD_STATE_PRESENT)


def driver_args(driver):
    return ["--driver", driver] if driver else []


class CompositeToken(unittest.TestCase):
    def test_only_the_ccid_interface_becomes_a_reader(self):
        for driver in DRIVERS:
            with self.subTest(driver=driver or "ours"), \
                    PrivatePCSCD("--usb", "--profile", "yubikey-neo-composite-extended", *driver_args(driver)) as pcscd:
                self.assertEqual(reader_names(), ["Yubico Yubikey NEO OTP+U2F+CCID (SIM1000) 00 00"])
                log = pcscd.log_text()
                # pcscd offers each interface; the HID ones are refused, interface 2 is the reader.
                for interface in (0, 1):
                    self.assertIn("Open Port 0x200000 Failed (usb:1050/0116:libudev:%d:/dev/bus/usb/001/002)" % interface, log)
                if driver is None:
                    self.assertIn("cannot open 1050:0116 at /dev/bus/usb/001/002 interface 0: not a CCID device", log)
                    self.assertIn("via usb:1050/0116:libudev:2:/dev/bus/usb/001/002", log)
                reader = named("SIM1000")
                with Context() as c:
                    card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                    self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                    self.assertEqual(card.transmit([0x80, 0x34, 0x00, 0x20, 0x20]), list(range(32)) + OK)
                    card.disconnect()
                    # Card events on the CCID interface's interrupt endpoint.
                    state = c.state(reader)
                    self.assertEqual(pcscd.sim("remove", "sim0").returncode, 0)
                    state = c.state(reader, state, timeout_ms=5000)
                    self.assertTrue(state is not None and state & S.SCARD_STATE_EMPTY, "removal not seen")
                self.assertTrue(pcscd.pcscd_alive())


class ContactlessReader(unittest.TestCase):
    def exchanges(self, reader):
        with Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), CONTACTLESS_ATR)
            self.assertEqual(card.transmit([0xFF, 0xCA, 0x00, 0x00, 0x00]), UID + OK, "UID")
            self.assertEqual(card.transmit([0xFF, 0xCA, 0x01, 0x00, 0x00]), HISTORICAL + OK, "ATS historical bytes")
            self.assertEqual(card.transmit([0xFF, 0xCA, 0x00, 0x00, 0x04]), [0x6C, 0x07], "Le too short")
            self.assertEqual(card.transmit([0xFF, 0xCA, 0x00, 0x00, 0x0A]), UID + [0x62, 0x82], "Le too long")
            self.assertEqual(card.transmit([0xFF, 0xCA, 0x02, 0x00, 0x00]), [0x6A, 0x81], "unknown P1")
            # The card's own APDUs pass the firmware by.
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            self.assertEqual(card.transmit([0x80, 0x34, 0x00, 0x08, 0x08]), list(range(8)) + OK)
            card.disconnect()

    def test_uid_over_usb(self):
        for driver in DRIVERS:
            with self.subTest(driver=driver or "ours"), \
                    PrivatePCSCD("--usb", "--profile", "omnikey-5022-contactless-extended", "--card",
                                 "compliance-contactless", *driver_args(driver)):
                self.exchanges(named("SIM1000"))

    def test_uid_over_the_relay_and_a_contact_card_has_none(self):
        with PrivatePCSCD("--profile", "omnikey-5022-contactless-extended", "--card", "compliance-contactless") as pcscd:
            reader = reader_names()[0]
            self.exchanges(reader)
            self.assertEqual(pcscd.sim("insert", "sim0", "--card", "compliance").returncode, 0)
            wait_for(lambda: present(reader), what="the contact card")
            with Context() as c:
                card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit([0xFF, 0xCA, 0x00, 0x00, 0x00]), [0x6A, 0x81])
                card.disconnect()


if __name__ == "__main__":
    unittest.main()
