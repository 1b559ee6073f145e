"""Driver settings the way pcsc-lite drivers take them: keys of the bundle's
Info.plist (ifdLogLevel, ifdDriverOptions), each overridden by pcscd's
environment, honoured by the driver pcscd loads."""
import os
import plistlib
import re
import shutil
import tempfile
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, PCSCError, SELECT_TEST_APPLET
from simharness import PrivatePCSCD, ROOT, reader_names, wait_for
from test_pcscd import OMNIKEY

BUNDLE = os.path.join(ROOT, "build", "ifd-swiftccid.bundle")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("SWIFTCCID_")}


def bundle_with(**keys):
    """A copy of the built bundle whose Info.plist has these keys changed."""
    where = tempfile.mkdtemp(prefix="sccid-settings")
    copy = os.path.join(where, "ifd-swiftccid.bundle")
    shutil.copytree(BUNDLE, copy)
    path = os.path.join(copy, "Contents", "Info.plist")
    with open(path, "rb") as f:
        plist = plistlib.load(f)
    plist.update(keys)
    with open(path, "wb") as f:
        plistlib.dump(plist, f)
    return copy


class PrivatePCSCDWithEnv(PrivatePCSCD):
    def __init__(self, *args, env=None, **kw):
        super().__init__(*args, **kw)
        self.env = dict(CLEAN_ENV, **(env or {}))


class InfoPlistKeys(unittest.TestCase):
    def test_tools_and_packagers_find_what_they_read(self):
        with open(os.path.join(BUNDLE, "Contents", "Info.plist"), "rb") as f:
            plist = plistlib.load(f)
        self.assertEqual(plist["ifdManufacturerString"], "SwiftCCID developers")
        self.assertEqual(plist["ifdProductString"], "SwiftCCID: USB CCID smart-card reader driver")
        self.assertIn("GNU Lesser General Public License version 2.1", plist["Copyright"])
        self.assertEqual(plist["ifdLogLevel"], "0x0003")
        self.assertEqual(plist["ifdDriverOptions"], "usb-workers=auto max-exchange-ms=30000")


class SettingsThroughPCSCD(unittest.TestCase):
    def setUp(self):
        self.bundles = []

    def tearDown(self):
        for b in self.bundles:
            shutil.rmtree(os.path.dirname(b), ignore_errors=True)

    def bundle(self, **keys):
        self.bundles.append(bundle_with(**keys))
        return self.bundles[-1]

    def stuck_select(self, pcscd):
        """A SELECT that works, then one the reader never answers: the error comes at the cap."""
        with Context() as c:
            card = c.connect(OMNIKEY, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            self.assertEqual(pcscd.sim("fault", "sim0", "stuck").returncode, 0)
            start = time.monotonic()
            with self.assertRaises(PCSCError):
                card.transmit(SELECT_TEST_APPLET)
            elapsed = time.monotonic() - start
            self.assertEqual(pcscd.sim("fault", "sim0", "clear").returncode, 0)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            card.disconnect(S.SCARD_RESET_CARD)
        return elapsed

    def test_info_plist_sets_log_level_and_exchange_cap(self):
        bundle = self.bundle(ifdLogLevel="0x000F", ifdDriverOptions="usb-workers=no max-exchange-ms=2000")
        with PrivatePCSCDWithEnv("--driver", bundle, "--debug") as pcscd:
            elapsed = self.stuck_select(pcscd)
            log = pcscd.log_text()
        real = os.path.realpath(os.path.join(bundle, "Contents", "Info.plist"))
        self.assertIn("swiftccid: settings: ifdLogLevel 0xF, usb-workers=no max-exchange-ms=2000 (%s, then the environment)"
                      % real, log)
        # Communication (8): one line per exchange, lengths and status word only.
        self.assertEqual(len(re.findall(r"swiftccid: LUN 0x0: 11 bytes -> 2 bytes, SW 90 0, ", log)), 2, log)
        self.assertIn("swiftccid: Transmit: exchange deadline passed", log)
        # 2 s, not the default 30 s (a bound, not a benchmark: the default would cost 30).
        self.assertLess(elapsed, 20)

    def test_environment_overrides_info_plist(self):
        bundle = self.bundle(ifdLogLevel="0x000F", ifdDriverOptions="max-exchange-ms=20000")
        env = {"SWIFTCCID_LOG_LEVEL": "0x0001", "SWIFTCCID_MAX_EXCHANGE_MS": "1500"}
        with PrivatePCSCDWithEnv("--driver", bundle, "--debug", env=env) as pcscd:
            elapsed = self.stuck_select(pcscd)
            log = pcscd.log_text()
        self.assertIn("settings: ifdLogLevel 0x1, usb-workers=auto max-exchange-ms=1500", log)
        self.assertNotIn("bytes -> ", log)               # no communication lines
        self.assertNotRegex(log, r"swiftccid: LUN 0x0: .* via relay:")   # no information lines
        self.assertIn("swiftccid: Transmit: exchange deadline passed", log)   # errors still
        self.assertLess(elapsed, 15)

    def test_bad_settings_are_logged_and_defaults_kept(self):
        bundle = self.bundle(ifdLogLevel="verbose", ifdDriverOptions="max-exchange-ms=-3 turbo=yes")
        with PrivatePCSCDWithEnv("--driver", bundle) as pcscd:
            self.assertEqual(reader_names(), [OMNIKEY])
            with Context() as c:
                card = c.connect(OMNIKEY, S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                card.disconnect(S.SCARD_LEAVE_CARD)
            log = pcscd.log_text()
        self.assertIn("setting ignored: ifdLogLevel: 'verbose' is not a number (hex 0x... or decimal)", log)
        self.assertIn("setting ignored: ifdDriverOptions max-exchange-ms: '-3' is not a positive number of milliseconds", log)
        self.assertIn("setting ignored: ifdDriverOptions: unknown setting 'turbo'", log)
        self.assertIn("settings: ifdLogLevel 0x3, usb-workers=auto max-exchange-ms=30000", log)

    def test_worker_mode_from_info_plist_and_its_override(self):
        """usb-workers=yes: a USB reader is reached only through its attach
        worker (none runs here, so it is not opened); SWIFTCCID_USB_WORKERS=0 overrides."""
        bundle = self.bundle(ifdDriverOptions="usb-workers=yes")
        with PrivatePCSCDWithEnv("--usb", "--driver", bundle, wait_for_readers=False) as pcscd:
            gave_up = re.compile(r"swiftccid: cannot open 076b:3031 at /dev/bus/usb/001/(\d{3}) interface 0: no attach worker "
                                 r"socket at /run/swiftccid/usb-001-\1\.sock; is worker mode on \(/etc/swiftccid/usb-workers\) "
                                 r"and swiftccid-attach@001-\1\.socket active\?")
            wait_for(lambda: gave_up.search(pcscd.log_text()), timeout=20, what="the driver to give up waiting for a worker")
            self.assertEqual(reader_names(), [])
            self.assertIn("settings: ifdLogLevel 0x3, usb-workers=yes max-exchange-ms=30000", pcscd.log_text())
        with PrivatePCSCDWithEnv("--usb", "--driver", bundle, env={"SWIFTCCID_USB_WORKERS": "0"}) as pcscd:
            self.assertEqual(len(reader_names()), 1)
            self.assertIn("usb-workers=no", pcscd.log_text())


if __name__ == "__main__":
    unittest.main()
