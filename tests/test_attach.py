"""The openct-style hotplug path, as far as it runs without systemd as PID 1:
our udev rules evaluated by the real `udevadm test` against a simulated USB
reader (umockdev), the attach worker started with the argv the unit gives,
pcscd reaching the reader through the worker, unplug and a killed worker;
the unit checked by systemd-analyze; hostile instance strings refused."""
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, transmit_cut_short
from simharness import DIR, ROOT, PrivatePCSCD, reader_names, wait_for
from test_usb import named

ATTACH = os.path.join(ROOT, "build", "ccid-attach")
UNIT_IN = os.path.join(ROOT, "udev", "swiftccid-attach@.service.in")
SOCKET_UNIT = os.path.join(ROOT, "udev", "swiftccid-attach@.socket")
GENERATOR = os.path.join(ROOT, "udev", "swiftccid-generator")
RULES = os.path.join(ROOT, "udev", "60-swiftccid.rules")
WORKERS = DIR + "-workers"


def unit_text(libexec):
    with open(UNIT_IN) as f:
        return f.read().replace("@LIBEXECDIR@", libexec).replace("@DOCDIR@", "/usr/share/doc/swiftccid")


def exec_start(instance):
    """The worker's argv as systemd builds it from the unit for `instance`."""
    line = next(l for l in unit_text(os.path.dirname(ATTACH)).splitlines() if l.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):].replace("%i", instance).replace("%%", "%"))
    return argv


def udevadm_test(umockdev_dir, syspath, extra_group=None):
    """`udevadm test` with only our rules added (bound over /etc/udev/rules.d in a
    private mount namespace), optionally with one more line in /etc/group."""
    rules = tempfile.mkdtemp(prefix="sccid-rules")
    os.symlink(RULES, os.path.join(rules, "60-swiftccid.rules"))
    group = os.path.join(rules, "group")
    # `udevadm test` writes the device's properties to udev's database: they must not outlive the test
    # (umockdev's next device at that path would inherit them, ID_USB_INTERFACES among them).
    record = "/run/udev/data/+usb:" + os.path.basename(syspath.rstrip("/"))
    recorded_before = os.path.exists(record)
    with open("/etc/group") as src, open(group, "w") as f:
        f.write(src.read() + (extra_group + "\n" if extra_group else ""))
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            'mount --bind "$2" /etc/group && mount --bind "$0" /etc/udev/rules.d && '
                            'exec udevadm test --action=add "$1"', rules, syspath, group],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, UMOCKDEV_DIR=umockdev_dir, LD_PRELOAD="libumockdev-preload.so.0"))
    finally:
        if not recorded_before and os.path.exists(record):
            os.unlink(record)
        os.unlink(os.path.join(rules, "60-swiftccid.rules"))
        os.unlink(group)
        os.rmdir(rules)
    props = dict(l.split("=", 1) for l in r.stdout.splitlines() if re.match(r"^[A-Z_]+=", l))
    return props


class UnitFiles(unittest.TestCase):
    def instance_file(self, directory):
        """The service and socket units, instantiated for 001-002 in `directory`."""
        path = os.path.join(directory, "swiftccid-attach@001-002.service")
        with open(path, "w") as f:
            f.write(unit_text(os.path.dirname(os.path.realpath(ATTACH))))
        with open(SOCKET_UNIT) as src, open(os.path.join(directory, "swiftccid-attach@001-002.socket"), "w") as f:
            f.write(src.read())
        return path

    def test_systemd_analyze_verify_is_clean(self):
        d = tempfile.mkdtemp(prefix="sccid-unit")
        service = self.instance_file(d)
        # --man=no: Documentation=man:ccid-attach(1) is installed with the package, not on this host.
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", service, os.path.join(d, "swiftccid-attach@001-002.socket")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([l for l in r.stderr.splitlines() if "swiftccid" in l], [], r.stderr)

    def test_socket_unit_shape(self):
        with open(SOCKET_UNIT) as f:
            text = f.read()
        self.assertIn("ListenStream=/run/swiftccid/usb-%i.sock", text)   # where the driver looks (WorkerSocket)
        self.assertIn("SocketMode=0660", text)
        self.assertIn("BindsTo=dev-bus-usb-%i.device", text)
        self.assertIn("RemoveOnStop=yes", text)
        self.assertNotIn("SocketGroup", text)       # the generator's decision
        service = unit_text("/usr/libexec/swiftccid")
        self.assertIn("Requires=swiftccid-attach@%i.socket", service)
        self.assertIn("ExecReload=/usr/libexec/swiftccid/ccid-attach reload %i", service)

    def generate(self, groups, systemd_version):
        """Runs the generator with this /etc/group and a systemctl that reports this version."""
        d = tempfile.mkdtemp(prefix="sccid-gen")
        with open(os.path.join(d, "group"), "w") as f:
            f.write(groups)
        os.makedirs(os.path.join(d, "bin"))
        with open(os.path.join(d, "bin", "systemctl"), "w") as f:
            f.write("#!/bin/sh\necho 'systemd %d (%d.1-1)'\necho '+PAM +AUDIT'\n" % (systemd_version, systemd_version))
        os.chmod(os.path.join(d, "bin", "systemctl"), 0o755)
        out = os.path.join(d, "out")
        os.makedirs(out)
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            'mount --bind "$0/group" /etc/group && PATH="$0/bin:$PATH" exec "$1" "$2" "$2" "$2"', d, GENERATOR, out],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        written = {}
        for top, _, names in os.walk(out):
            for n in names:
                with open(os.path.join(top, n)) as f:
                    written[os.path.relpath(os.path.join(top, n), out)] = f.read()
        return written

    def test_generator_decides_from_what_the_system_has(self):
        self.assertEqual(self.generate("root:x:0:\nusers:x:100:\n", 252), {})
        self.assertEqual(self.generate("root:x:0:\npcscd:x:998:\n", 252), {
            "swiftccid-attach@.socket.d/50-pcscd-group.conf": "[Socket]\nSocketGroup=pcscd\n"})
        self.assertEqual(self.generate("root:x:0:\nnotpcscd:x:5:\n", 257), {
            "swiftccid-attach@.service.d/50-notify-reload.conf": "[Service]\nType=notify-reload\nExecReload=\n"})

    def test_systemd_analyze_security_rates_at_most_2(self):
        d = tempfile.mkdtemp(prefix="sccid-unit")
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", self.instance_file(d)],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_unit_shape(self):
        text = unit_text("/usr/libexec/swiftccid")
        self.assertIn("BindsTo=dev-bus-usb-%i.device", text)
        self.assertIn("Type=notify", text)
        self.assertIn("DeviceAllow=/dev/bus/usb/%I rw", text)
        self.assertEqual(exec_start("001-002")[1:], ["attach", "001-002"])   # one argument, no shell


class QuirkList(unittest.TestCase):
    """`ccid-attach quirks`: the driver's quirk table, whole or for one device."""

    def test_quirks_for_one_device(self):
        r = subprocess.run([ATTACH, "quirks", "--device", "0d46:301d"], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout.splitlines(), [
            "W2\tidtoken-poweroff-first\t0D46:301D\tKOBIL IDToken: the card misbehaves unless powered off before each power-up",
            "O2\tidtoken-info-apdus\t0D46:301D\tKOBIL IDToken: its middleware expects the driver to answer the "
            "reader-information APDUs FF 9A 01 xx 00"])
        everything = subprocess.run([ATTACH, "quirks"], capture_output=True, text=True, timeout=30).stdout.splitlines()
        self.assertGreater(len(everything), 50)
        self.assertIn("D7\tscm-maxmsg-263\tany device with dwMaxCCIDMessageLength 263\treaders declaring 263-byte messages "
                      "(SCM's) take the 270 bytes of a full short APDU", everything)
        r = subprocess.run([ATTACH, "quirks", "--device", "nonsense"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 64)


class HostileInstances(unittest.TestCase):
    BAD = ["001-002; touch /tmp/sccid-pwned", "$(touch /tmp/sccid-pwned)", "`id`", "../../etc/passwd", "001-002 ",
           "'001-002'", '"001-002"', "001 002", "0" * 200, "001-0\u00e9", "", "1-2", "256-001"]

    def test_refused_with_a_clear_message_and_no_side_effect(self):
        d = tempfile.mkdtemp(prefix="sccid-hostile")
        for bad in self.BAD + [b"001-\xff\xfe".decode("utf-8", "surrogateescape")]:
            arg = bad.encode("utf-8", "surrogateescape")
            r = subprocess.run([ATTACH.encode(), b"attach", b"--dir", d.encode(), arg], capture_output=True, timeout=20)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn(b"refusing instance", r.stderr)
            r = subprocess.run([ATTACH.encode(), b"detach", b"--dir", d.encode(), arg], capture_output=True, timeout=20)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
        self.assertEqual(os.listdir(d), [])
        self.assertFalse(os.path.exists("/tmp/sccid-pwned"))


def getent_group(name):
    return subprocess.run(["getent", "group", name], capture_output=True, text=True).stdout


class UdevRules(unittest.TestCase):
    """The real udevadm evaluates our rules against simulated devices."""
    CONFIG = DIR + "-rules.json"

    @classmethod
    def setUpClass(cls):
        import json
        from test_pcscd import DESCRIPTORS
        with open(cls.CONFIG, "w") as f:
            json.dump({"readers": [
                {"profile": "omnikey-3121-extended"},
                # A vendor-class reader the list names (SCM SCR331-DI): wanted by VID:PID.
                {"descriptorFile": DESCRIPTORS, "entry": "SCR331-DI.txt", "interfaceClass": 255},
                # Vendor class and not listed: not ours.
                {"profile": "cherry-st-short", "interfaceClass": 255},
                # Alcor AU9520: fails after a USB resume (quirk O7).
                {"descriptorFile": DESCRIPTORS, "entry": "AU9520.txt", "bcdDevice": "0x0102"}]}, f)
        cls.pcscd = PrivatePCSCD("--usb", "--config", cls.CONFIG).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)
        os.unlink(cls.CONFIG)

    def test_ccid_class_reader_wants_its_worker(self):
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-2")
        self.assertIn("swiftccid-attach@001-002.service", props.get("SYSTEMD_WANTS", "").split(), props)
        self.assertIn(":systemd:", props.get("TAGS", ""))
        self.assertIn("smartcard.target", props.get("SYSTEMD_WANTS", ""))     # Debian's own rule kept (+=)

    def test_node_group_is_pcscds_where_that_group_exists(self):
        self.assertEqual(getent_group("pcscd"), "", "this test needs a host without a pcscd group")
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-2")
        self.assertNotIn("SWIFTCCID_NODE_GROUP", props)
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-2", extra_group="pcscd:x:4242:")
        self.assertEqual(props.get("SWIFTCCID_NODE_GROUP"), "pcscd", props)

    def test_listed_vendor_class_reader_wants_its_worker(self):
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-3")
        self.assertEqual(props.get("ID_USB_INTERFACES"), ":ff0000:")
        self.assertIn("swiftccid-attach@001-003.service", props.get("SYSTEMD_WANTS", "").split(), props)

    def power(self, device, reset=False):
        """A device's USB power attributes in the testbed's sysfs (as udevadm left them); with
        `reset`, first put back what the kernel starts a device with (autosuspend off, persist on)."""
        base = os.path.join(self.pcscd.umockdev_dir, "sys", "devices", device, "power")
        out = {}
        for name, initial in (("control", "on"), ("persist", "1")):
            if reset:
                with open(os.path.join(base, name), "w") as f:
                    f.write(initial + "\n")
            with open(os.path.join(base, name)) as f:
                out[name] = f.read().strip()
        return out

    def test_power_hints_persist_off_autosuspend_on(self):
        self.assertEqual(self.power("1-2", reset=True), {"control": "on", "persist": "1"})
        udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-2")
        self.assertEqual(self.power("1-2"), {"control": "auto", "persist": "0"})

    def test_power_hints_keep_autosuspend_off_for_readers_that_fail_after_resume(self):
        self.assertEqual(self.power("1-5", reset=True), {"control": "on", "persist": "1"})
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-5")
        self.assertIn("swiftccid-attach@001-005.service", props.get("SYSTEMD_WANTS", "").split(), props)
        self.assertEqual(self.power("1-5"), {"control": "on", "persist": "0"})

    def test_other_vendor_class_device_is_left_alone(self):
        props = udevadm_test(self.pcscd.umockdev_dir, "/sys/devices/1-4")
        self.assertEqual(props.get("ID_USB_INTERFACES"), ":ff0000:")
        self.assertNotIn("swiftccid-attach", props.get("SYSTEMD_WANTS", ""), props)


class WorkerMode(unittest.TestCase):
    """pcscd (bundle in worker mode) reaches USB readers through their workers."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(WORKERS, exist_ok=True)
        cls.env = {"SWIFTCCID_USB_WORKERS": "1", "SWIFTCCID_RELAY_DIR": WORKERS, "SWIFTCCID_MAX_EXCHANGE_MS": "20000"}
        cls.pcscd = PrivatePCSCD("--usb", env=cls.env, wait_for_readers=False).__enter__()
        cls.workers = {}
        cls.start_worker("001-002")
        wait_for(lambda: len(reader_names()) == 1, what="the reader through its worker")

    @classmethod
    def start_worker(cls, instance):
        env = dict(cls.pcscd.mock_env(), SWIFTCCID_RELAY_DIR=WORKERS)
        argv = exec_start(instance)
        argv[0] = ATTACH        # the binary the unit names, from the build tree
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cls.workers[instance] = p
        return p

    @classmethod
    def tearDownClass(cls):
        for p in cls.workers.values():
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        cls.pcscd.__exit__(None, None, None)

    def test_1_exchanges_through_the_worker_and_list_shows_it(self):
        self.assertIn("via usb:076b/3031:libudev:0:/dev/bus/usb/001/002", self.pcscd.log_text())
        with Context() as c:
            card = c.connect(named("SIM1000"), S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            n = 4096
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x3C, 0x00, n >> 8, n & 0xFF]), [0x3C] * n + OK)
            out = subprocess.run([ATTACH, "list", "--dir", WORKERS], capture_output=True, text=True).stdout
            self.assertRegex(out, r"usb-001-002\t%d\trunning\t%s/usb-001-002.sock\tclient %d" %
                             (self.workers["001-002"].pid, re.escape(WORKERS), self.pcscd.pcscd_pid))
            # SIGHUP re-reads the configuration; the worker and its client go on.
            self.workers["001-002"].send_signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertIsNone(self.workers["001-002"].poll())
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x3D, 0x10]), [0x3D] * 16 + OK)
            # `ccid-attach reload` (the unit's ExecReload before systemd 253) returns once the worker has reloaded.
            r = subprocess.run([ATTACH, "reload", "--dir", WORKERS, "001-002"], capture_output=True, text=True, timeout=10)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            with open(os.path.join(WORKERS, "usb-001-002.reloads")) as f:
                self.assertEqual(f.read(), "2\n")
            r = subprocess.run([ATTACH, "reload", "--dir", WORKERS, "001-077"], capture_output=True, text=True, timeout=10)
            self.assertEqual((r.returncode, r.stderr), (1, "ccid-attach: no worker for /dev/bus/usb/001/077\n"))
            self.assertEqual(card.transmit([0x80, 0x00, 0x04, 0x3E, 0x10]), [0x3E] * 16 + OK)
            card.disconnect()

    def test_1_doctor_explains_the_reader(self):
        env = dict(self.pcscd.mock_env(), SWIFTCCID_RELAY_DIR=WORKERS)
        out = subprocess.run([ATTACH, "doctor", "--drivers", os.path.join(ROOT, "build"), "001-002"],
                             capture_output=True, text=True, env=env, timeout=30).stdout
        self.assertIn("/dev/bus/usb/001/002 076b:3031", out)
        self.assertIn("an attach worker serves it on %s/usb-001-002.sock" % WORKERS, out)
        self.assertNotIn("not in the bundle", out)
        # The OMNIKEY 3x21's quirks are named (its descriptor already says what they fix).
        self.assertIn("  - quirk D10a hid-fake-pinpad applies: HID AVIATOR, OMNIKEY 3x21 / 6121, Cherry ST-1144, "
                      "Fujitsu D323: claim PIN verify and modify, have no keypad\n", out)
        self.assertIn("  - quirk D10b hid-chaining applies: ", out)
        out = subprocess.run([ATTACH, "doctor", "--drivers", "/nonexistent", "001-002"],
                             capture_output=True, text=True, env=env, timeout=30).stdout
        self.assertIn("ifd-swiftccid.bundle is not installed in /nonexistent", out)
        out = subprocess.run([ATTACH, "doctor", "001-099"], capture_output=True, text=True, env=env, timeout=30).stdout
        self.assertIn("/dev/bus/usb/001/099: no such USB device", out)

    def test_2_killed_worker_costs_its_reader_only(self):
        r = self.pcscd.sim("plug", "cherry-st-short")
        self.assertEqual(r.returncode, 0, r.stderr)
        second = self.start_worker("001-003")
        wait_for(lambda: len(reader_names()) == 2, what="second reader through its worker")
        with Context() as c:
            card = c.connect(named("SIM1000"), S.SCARD_PROTOCOL_T1)
            self.assertEqual(self.pcscd.sim("fault", "sim0", "stuck").returncode, 0)
            transmit_cut_short(self, card, lambda: self.workers["001-002"].send_signal(signal.SIGKILL))
            self.assertTrue(self.pcscd.pcscd_alive())
            other = c.connect(named("SIM1001"), S.SCARD_PROTOCOL_T1)
            self.assertEqual(other.transmit(SELECT_TEST_APPLET), OK)
            other.disconnect()

    def test_3_unplug_ends_the_worker_and_the_reader(self):
        p = self.workers.get("001-003")
        self.assertIsNotNone(p)
        self.assertEqual(self.pcscd.sim("unplug", "sim1").returncode, 0)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertIn("device gone", p.stderr.read())
        wait_for(lambda: not any("(SIM1001)" in r for r in reader_names()), what="reader gone")
        self.assertFalse(os.path.exists(os.path.join(WORKERS, "usb-001-003.sock")))
        self.assertTrue(self.pcscd.pcscd_alive())

    def test_4_detach_stops_a_worker_within_a_second(self):
        r = self.pcscd.sim("plug", "gemalto-ct30-tpdu")
        self.assertEqual(r.returncode, 0, r.stderr)
        node = r.stdout.strip().split("\t")[-1]
        instance = "-".join(node.split("/")[-2:])
        p = self.start_worker(instance)
        wait_for(lambda: os.path.exists(os.path.join(WORKERS, "usb-%s.pid" % instance)), what="worker ready")
        start = time.monotonic()
        r = subprocess.run([ATTACH, "detach", "--dir", WORKERS, instance], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            p.kill()
            p.wait()
        self.assertEqual(r.returncode, 0, r.stderr + p.stderr.read())
        self.assertEqual(p.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual([f for f in os.listdir(WORKERS) if instance in f], [])


if __name__ == "__main__":
    unittest.main()
