"""Integration over USB: `ccid-sim pcscd --usb` plugs simulated readers into a
umockdev testbed; the real pcscd finds them with its own libudev hotplug and
loads the bundle by VID/PID; the driver drives them through the real libusb.
Debian's libccid, on the same simulated devices, is the reference."""
import json
import os
import subprocess
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, PCSCError, check_cases_at_every_length, check_extended_apdus, \
    reference_script, transmit_cut_short
from simharness import SIM, PrivatePCSCD, seq, wait_for, reader_names
from test_pcscd import ATR1, ATR2, DESCRIPTORS

LIBCCID = "/usr/lib/pcsc/drivers/ifd-ccid.bundle"
CAP_MS = 4000


def named(serial, slot=0):
    """The PC/SC name of a USB reader's slot: pcscd builds it from the
    driver's reader list and the device's serial number."""
    names = [n for n in reader_names() if "(%s)" % serial in n and n.endswith(" %02X" % slot)]
    if len(names) != 1:
        raise AssertionError("no single reader for %s slot %d in %r" % (serial, slot, reader_names()))
    return names[0]


def winbond_config(path):
    """A character-level reader (a listed VID/PID) from the reader corpus."""
    with open(path, "w") as f:
        json.dump({"readers": [{"descriptorFile": DESCRIPTORS, "entry": "Winbond.txt", "cards": ["compliance"]}]}, f)
    return path


class USBExtendedReader(unittest.TestCase):
    """Extended-APDU reader (OMNIKEY 3x21 profile), present before pcscd starts (coldplug)."""
    ARGS = ("--usb",)
    ENV = {"SWIFTCCID_MAX_EXCHANGE_MS": str(CAP_MS)}
    IDS = "usb:076b/3031:libudev:0:/dev/bus/usb/001/002"
    EXTENDED = True
    APDU_LEVEL = True

    @classmethod
    def setUpClass(cls):
        cls.pcscd = PrivatePCSCD(*cls.ARGS, env=cls.ENV).__enter__()
        cls.reader = named("SIM1000")

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)

    def test_pcscd_hotplug_loads_our_bundle_and_libusb_opens_the_device(self):
        log = self.pcscd.log_text()
        self.assertIn("ifd-swiftccid.bundle/Contents/Linux/libswiftccid.so", log)
        self.assertIn("via " + self.IDS, log)
        with Context() as c:
            card = c.connect(self.reader, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR1)
            self.assertEqual(bytes(card.attribute(S.SCARD_ATTR_VENDOR_IFD_SERIAL_NO)).rstrip(b"\0"), b"SIM1000")
            card.disconnect()

    def _cases_at_every_length(self, protocol):
        check_cases_at_every_length(self, self.reader, protocol, self.APDU_LEVEL)

    def test_cases_1_to_4_at_every_short_length_T1(self):
        self._cases_at_every_length(S.SCARD_PROTOCOL_T1)

    def test_cases_1_to_4_at_every_short_length_T0(self):
        self._cases_at_every_length(S.SCARD_PROTOCOL_T0)

    def test_extended_apdus(self):
        check_extended_apdus(self, self.reader, self.EXTENDED)

    def test_card_remove_and_insert_arrive_on_the_interrupt_endpoint(self):
        with Context() as c:
            state = c.state(self.reader)
            self.assertTrue(state & S.SCARD_STATE_PRESENT)
            self.assertEqual(self.pcscd.sim("remove", "sim0").returncode, 0)
            state = c.state(self.reader, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_EMPTY, "removal not seen")
            self.assertEqual(self.pcscd.sim("insert", "sim0", "--card", "compliance").returncode, 0)
            state = c.state(self.reader, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_PRESENT, "insertion not seen")
            card = c.connect(self.reader, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            card.disconnect()


class USBShortReader(USBExtendedReader):
    """Short-APDU reader (Cherry profile)."""
    ARGS = ("--usb", "--profile", "cherry-st-short")
    IDS = "usb:046a/0090:libudev:0:/dev/bus/usb/001/002"
    EXTENDED = False


class USBTPDUReader(USBExtendedReader):
    """TPDU reader (Gemalto CT30 profile): T=0 and T=1 run in the driver; extended APDUs by chaining / ENVELOPE."""
    ARGS = ("--usb", "--profile", "gemalto-ct30-tpdu")
    IDS = "usb:08e6/3437:libudev:0:/dev/bus/usb/001/002"
    APDU_LEVEL = False

    def test_extended_apdus_over_T0_via_envelope(self):
        with Context() as c:
            card = c.connect(self.reader, S.SCARD_PROTOCOL_T0)
            n = 4096
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x5A, 0x00, n >> 8, n & 0xFF]), [0x5A] * n + OK)
            card.disconnect()


class USBCharacterReader(USBExtendedReader):
    """Character-level reader (Winbond, from the corpus): the driver reads T=0 procedure bytes and T=1 blocks."""
    CONFIG = "/tmp/sccid-winbond-%d.json" % os.getpid()
    # 64 KiB in 123-byte blocks, a few USB transfers each, at umockdev's few
    # hundred transfers a second: more than the other classes' 4 s.
    ENV = {"SWIFTCCID_MAX_EXCHANGE_MS": "20000"}
    ARGS = ("--usb", "--config", CONFIG)
    IDS = "usb:0416/3815:libudev:0:/dev/bus/usb/001/002"
    APDU_LEVEL = False

    @classmethod
    def setUpClass(cls):
        winbond_config(cls.CONFIG)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        os.unlink(cls.CONFIG)


class USBOddLayouts(unittest.TestCase):
    """Real readers vary on the bus: a vendor-class (0xFF) interface with its
    class descriptor after the endpoints, and a reader with no interrupt
    endpoint (card events then come from polling the slot status)."""
    CONFIG = "/tmp/sccid-layouts-%d.json" % os.getpid()

    @classmethod
    def setUpClass(cls):
        with open(cls.CONFIG, "w") as f:
            json.dump({"readers": [
                {"profile": "gemalto-ct30-tpdu", "interfaceClass": 255, "descriptorAfterEndpoints": True},
                {"profile": "cherry-st-short", "interruptEndpoint": False}]}, f)
        cls.pcscd = PrivatePCSCD("--usb", "--config", cls.CONFIG).__enter__()
        wait_for(lambda: len(reader_names()) == 2, what="both readers")

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)
        os.unlink(cls.CONFIG)

    def test_vendor_class_interface_with_descriptor_after_endpoints(self):
        with Context() as c:
            for protocol in (S.SCARD_PROTOCOL_T1, S.SCARD_PROTOCOL_T0):
                card = c.connect(named("SIM1000"), protocol)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x7E, 0xFF]), [0x7E] * 255 + OK)
                card.disconnect(S.SCARD_RESET_CARD)

    def test_reader_without_interrupt_endpoint_is_polled(self):
        self.assertIn("usb:046a/0090:libudev:0:/dev/bus/usb/001/003", self.pcscd.log_text())
        reader = named("SIM1001")
        with Context() as c:
            state = c.state(reader)
            self.assertTrue(state & S.SCARD_STATE_PRESENT)
            self.assertEqual(self.pcscd.sim("remove", "sim1").returncode, 0)
            state = c.state(reader, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_EMPTY, "removal not seen by polling")
            self.assertEqual(self.pcscd.sim("insert", "sim1").returncode, 0)
            state = c.state(reader, state, timeout_ms=5000)
            self.assertTrue(state is not None and state & S.SCARD_STATE_PRESENT, "insertion not seen by polling")
            card = c.connect(reader, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            card.disconnect()


class USBHotplug(unittest.TestCase):
    """Readers plugged and unplugged while pcscd runs; several at once; a multi-slot reader."""

    @classmethod
    def setUpClass(cls):
        cls.pcscd = PrivatePCSCD("--usb", env={"SWIFTCCID_MAX_EXCHANGE_MS": "20000"}).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)

    def plug(self, profile, card="compliance"):
        r = self.pcscd.sim("plug", profile, "--card", card)
        self.assertEqual(r.returncode, 0, r.stderr)
        fields = r.stdout.strip().split("\t")
        return fields[1], fields[-1]          # sim name, device node

    def serial(self, sim_name):
        return "SIM%d" % (1000 + int(sim_name[3:]))

    def test_plug_use_unplug_several_readers_and_a_multi_slot_one(self):
        plugged = [self.plug("cherry-st-short"), self.plug("springcard-e518-2slot-extended", card="compliance"),
                   self.plug("acr38u-tpdu")]
        for name, node in plugged:
            self.assertTrue(node.startswith("/dev/bus/usb/001/"), node)
        wait_for(lambda: sum("(%s)" % self.serial(n) in r for n, _ in plugged for r in reader_names()) == 4,
                 what="4 hotplugged slots")
        spring = self.serial(plugged[1][0])
        with Context() as c:
            for name, _ in plugged:
                card = c.connect(named(self.serial(name)), S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x11, 0x20]), [0x11] * 0x20 + OK)
                card.disconnect(S.SCARD_RESET_CARD)
            self.assertTrue(c.state(named(spring, 1)) & S.SCARD_STATE_EMPTY)
            self.assertEqual(self.pcscd.sim("insert", plugged[1][0], "--slot", "1", "--card", "compliance-inverse").returncode, 0)
            wait_for(lambda: c.state(named(spring, 1)) & S.SCARD_STATE_PRESENT, what="card in slot 1")
            card = c.connect(named(spring, 1), S.SCARD_PROTOCOL_T0)
            self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR2)
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x22, 0x10]), [0x22] * 0x10 + OK)
            card.disconnect()
        for name, _ in plugged:
            self.assertEqual(self.pcscd.sim("unplug", name).returncode, 0)
        wait_for(lambda: not any("(%s)" % self.serial(n) in r for n, _ in plugged for r in reader_names()),
                 what="unplugged readers gone")
        self.assertTrue(self.pcscd.pcscd_alive())
        self.assertIn("(SIM1000)", " ".join(reader_names()))

    def test_idle_usb_readers_cost_no_cpu(self):
        # libusb keeps an interrupt URB pending and polls the device node: with
        # a plain file for a node it would spin; the FIFO node lets it sleep.
        def ticks(pid):
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        pids = (self.pcscd.pcscd_pid, self.pcscd.proc.pid)
        before = [ticks(p) for p in pids]
        time.sleep(3)
        used = [ticks(p) - b for p, b in zip(pids, before)]
        hz = os.sysconf("SC_CLK_TCK")
        self.assertLess(sum(used) / hz, 0.15, "idle pcscd + ccid-sim used %s ticks in 3 s" % used)

    def test_unplug_in_the_middle_of_an_apdu(self):
        name, _ = self.plug("omnikey-3121-extended")
        serial = self.serial(name)
        wait_for(lambda: any("(%s)" % serial in r for r in reader_names()), what="plugged reader")
        with Context() as c:
            card = c.connect(named(serial), S.SCARD_PROTOCOL_T1)
            self.assertEqual(self.pcscd.sim("fault", name, "stuck").returncode, 0)
            # The deadline is 20 s; unplug ends the wait at once.
            transmit_cut_short(self, card, lambda: self.assertEqual(self.pcscd.sim("unplug", name).returncode, 0))
        wait_for(lambda: not any("(%s)" % serial in r for r in reader_names()), what="reader removed")
        self.assertTrue(self.pcscd.pcscd_alive())
        with Context() as c:
            card = c.connect(named("SIM1000"), S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            card.disconnect()


class USBLastReaderGoes(unittest.TestCase):
    """pcscd dlclose()s a driver when its last reader goes and loads it again
    for the next: the bundle must survive that (found by the soak: libusb's
    event thread outlived the unmapped library and took pcscd down)."""

    def test_unplug_the_only_reader_then_plug_one_again(self):
        with PrivatePCSCD("--usb") as pcscd:
            self.assertEqual(pcscd.sim("unplug", "sim0").returncode, 0)
            wait_for(lambda: not reader_names(), what="no readers")
            wait_for(lambda: "Unloading reader driver" in pcscd.log_text(), what="pcscd unloading the driver")
            for round in range(2):
                r = pcscd.sim("plug", "omnikey-3121-extended")
                self.assertEqual(r.returncode, 0, r.stderr)
                serial = "SIM%d" % (1001 + round)
                wait_for(lambda: any("(%s)" % serial in n for n in reader_names()), what="the new reader")
                with Context() as c:
                    card = c.connect(named(serial), S.SCARD_PROTOCOL_T1)
                    self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                    card.disconnect()
                self.assertEqual(pcscd.sim("unplug", "sim%d" % (1 + round)).returncode, 0)
                wait_for(lambda: not reader_names(), what="no readers")
                self.assertTrue(pcscd.pcscd_alive())


class USBPlugStorm(unittest.TestCase):
    """Readers plugged and unplugged back to back, faster than pcscd reads its
    udev monitor: umockdev used to exit the simulator when a listener's socket
    queue was full (net.unix.max_dgram_qlen is 10); the simulator now waits
    for room. 20 plugs: pcscd takes 16 (its reader limit), the rest wait."""

    def storm(self, driver_args):
        with PrivatePCSCD("--usb", *driver_args) as pcscd:
            for i in range(20):
                r = pcscd.sim("plug", "gemalto-ct30-tpdu" if i % 2 else "omnikey-3121-extended")
                self.assertEqual(r.returncode, 0, "plug %d: %s %s" % (i + 1, r.stderr, pcscd.sim_log_text()[-500:]))
            wait_for(lambda: len(reader_names()) == 16, timeout=30, what="pcscd's 16 readers")
            with Context() as c:
                card = c.connect(reader_names()[-1], S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x33, 0x08]), [0x33] * 8 + OK)
                card.disconnect()
            for i in range(21):
                r = pcscd.sim("unplug", str(i))
                self.assertEqual(r.returncode, 0, "unplug %d: %s" % (i, r.stderr))
            wait_for(lambda: not reader_names(), timeout=30, what="no readers")
            self.assertEqual(len(pcscd.sim("list").stdout.splitlines()), 21)
            self.assertNotIn("skipped", pcscd.sim_log_text())
            self.assertTrue(pcscd.pcscd_alive())

    def test_twenty_plugs_and_unplugs_with_our_driver(self):
        self.storm([])

    @unittest.skipUnless(os.path.isdir(LIBCCID), "Debian's libccid is not installed")
    def test_twenty_plugs_and_unplugs_with_libccid(self):
        self.storm(["--driver", LIBCCID])


class USBSuspendResume(unittest.TestCase):
    """A system suspend and resume with USB persist off (the udev rule's):
    while a client holds the card, the device's handles go stale (ENODEV,
    no uevent yet); then the kernel re-enumerates it: removed, and back at a
    new address with its card unpowered. The old reader must fail at once and
    leave cleanly, the new one must work, and pcscd must live on. Debian's
    libccid on the same devices is the reference."""

    def cycle(self, driver_args):
        with PrivatePCSCD("--usb", *driver_args) as pcscd:
            self.assertEqual(len(reader_names()), 1)
            with Context() as c:
                card = c.connect(named("SIM1000"), S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                suspend = subprocess.Popen([SIM, "suspend", "sim0", "--stale-ms", "1500", "--dir", pcscd.dir],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(0.5)
                started = time.monotonic()
                with self.assertRaises(PCSCError) as e:
                    card.transmit([0x80, 0x00, 0x04, 0x42, 0x10])
                failed_after = time.monotonic() - started
                out, err = suspend.communicate(timeout=30)
                self.assertEqual(suspend.returncode, 0, err)
            self.assertIn("/dev/bus/usb/001/003", out)   # back at a new address
            wait_for(lambda: usable(named("SIM1000")), timeout=20, what="the reader back and usable")
            with Context() as c:
                card = c.connect(named("SIM1000"), S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x43, 0x10]), [0x43] * 16 + OK)
                card.disconnect()
            self.assertTrue(pcscd.pcscd_alive())
            return e.exception.rv, failed_after

    def test_suspend_and_resume_with_our_driver(self):
        rv, after = self.cycle([])
        # The stale handle: the driver's I/O fails with ENODEV at once, and pcscd says the transmit failed.
        self.assertEqual(rv, S.SCARD_E_NOT_TRANSACTED)
        self.assertLess(after, 1.0)

    @unittest.skipUnless(os.path.isdir(LIBCCID), "Debian's libccid is not installed")
    def test_suspend_and_resume_with_libccid(self):
        rv, after = self.cycle(["--driver", LIBCCID])
        print("\nlibccid: transmit on a stale handle failed with 0x%08X after %.2f s" % (rv & 0xFFFFFFFF, after))


def usable(reader):
    """Whether a card in `reader` answers SELECT now."""
    try:
        with Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T1)
            try:
                return card.transmit(SELECT_TEST_APPLET) == OK
            finally:
                card.disconnect()
    except PCSCError:
        return False


class LibCCIDReference(unittest.TestCase):
    """Debian's libccid and our driver on the same simulated USB readers give
    the same ATRs and responses (which also shows the simulated devices are
    faithful enough for the incumbent driver)."""
    PROFILES = ("omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "acr38u-tpdu",
                "springcard-e518-2slot-extended")

    def run_with(self, driver, profile):
        args = ["--usb", "--profile", profile] + (["--driver", driver] if driver else [])
        with PrivatePCSCD(*args) as pcscd:
            log = pcscd.log_text()
            self.assertIn("libccid.so" if driver else "libswiftccid.so", log)
            return reference_script(named("SIM1000"))

    @unittest.skipUnless(os.path.isdir(LIBCCID), "Debian's libccid is not installed")
    def test_same_atrs_and_responses_as_libccid(self):
        for profile in self.PROFILES:
            with self.subTest(profile=profile):
                ours = self.run_with(None, profile)
                theirs = self.run_with(LIBCCID, profile)
                # The SpringCard profile declares automatic PPS from its current
                # parameters; libccid then sends no SetParameters for T=1 and the
                # reader stays in the ATR's first protocol, T=0, where we set T=1.
                # Being an APDU-level reader it fetches a case 4's response under
                # T=0 itself, so both drivers' clients get the same answers.
                self.assertEqual(ours, theirs)


if __name__ == "__main__":
    unittest.main()
