"""The whole chain on a real kernel (`make vm-test`): a QEMU guest (TCG) with
Debian's kernel and a Debian release's udev, systemd and pcscd (its units as
packaged: socket activation, --auto-exit, the sandbox), and our Debian
packages installed with dpkg. ccid-sim serves simulated readers as USB
gadgets (configfs, FunctionFS, dummy_hcd), so the kernel enumerates them, our
udev rule asks systemd for swiftccid-attach@BBB-DDD, and pcscd loads a driver
by VID:PID. QEMU's own usb-ccid reader, hotplugged over QMP, is a CCID device
we did not write. The release is SWIFTCCID_VM_RELEASE (bookworm or trixie).
Timings go to build/vm-timings-RELEASE.json and the end of the output."""
import json
import os
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vm"))
import image  # noqa: E402
import machine  # noqa: E402
import vm_bench  # noqa: E402

RELEASE = os.environ.get("SWIFTCCID_VM_RELEASE", "bookworm")
if RELEASE not in image.RELEASES:
    sys.exit("SWIFTCCID_VM_RELEASE must be one of %s, not %r" % (", ".join(image.RELEASES), RELEASE))
TIMINGS = os.path.join(image.ROOT, "build", "vm-timings-%s.json" % RELEASE)
REPEATS = 3


def apdu_level(profile):
    """The conformance flag of an APDU-level profile: such a reader fetches T=0 responses itself."""
    return ["--apdu-level"] if profile.endswith(("-extended", "-short")) else []


# pcscd --auto-exit leaves 60 s after its last client (pcsc-lite's
# TIME_BEFORE_SUICIDE; pcscd has no setting for it): wait that and a margin.
AUTO_EXIT_WAIT = 100


class VM(unittest.TestCase):
    """One guest for every scenario; they run in the order of their names."""
    timings = {}
    failed = False

    def run(self, result=None):
        # Remember a failure, so that tearDownClass shows the guest's side of it.
        before = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            type(self).failed = True
        return outcome

    @classmethod
    def setUpClass(cls):
        cls.started = time.monotonic()
        cls.vm = machine.Machine(RELEASE).__enter__()
        cls.timings["boot_s"] = [cls.vm.boot_seconds]
        cls.installed = cls.vm.guest("install")
        cls.vm.guest("simulator")

    @classmethod
    def tearDownClass(cls):
        # The guest's journal, for whoever reads a failure (CI keeps build/).
        journal = cls.vm.run(["journalctl", "-b", "--no-pager", "-o", "short-monotonic"], timeout=60)
        text = journal.get("out", "") + journal.get("err", "")
        with open(os.path.join(image.ROOT, "build", "vm-journal-%s.txt" % RELEASE), "w") as f:
            f.write(text)
        if cls.failed:
            # CI keeps only the output: pcscd's, the workers' and the attach units' last words.
            lines = [l for l in text.splitlines() if "pcscd" in l or "ccid-attach" in l or "swiftccid" in l]
            print("\nGuest journal (pcscd, workers, units), last 120 lines:\n" + "\n".join(lines[-120:]))
        cls.vm.__exit__(None, None, None)
        cls.timings["total_s"] = [time.monotonic() - cls.started]
        os.makedirs(os.path.dirname(TIMINGS), exist_ok=True)
        with open(TIMINGS, "w") as f:
            json.dump(cls.timings, f, indent=1)
        print("\nVM timings on %s (seconds: median [min-max], n)" % RELEASE)
        for key, values in sorted(cls.timings.items()):
            print("  %-46s %6.2f [%.2f-%.2f] %d" % (key, statistics.median(values), min(values), max(values), len(values)))

    def record(self, key, value):
        self.timings.setdefault(key, []).append(value)

    def plug(self, profile, mode, workers=False, client=True):
        p = self.vm.guest("plug", profile, *(["--workers"] if workers else []), *([] if client else ["--no-client"]))
        if client:
            self.record("%s: plug -> reader usable" % mode, p["usable_s"])
        if workers:
            self.record("%s: plug -> unit active" % mode, p["unit_active_s"])
        return p

    def unplug(self, p, mode, workers=False):
        u = self.vm.guest("unplug", p["name"], p["serial"], "--instance", p["instance"])
        self.record("%s: unplug -> reader gone" % mode, u["reader_gone_s"])
        if workers:
            self.record("%s: unplug -> unit stopped" % mode, u["unit_stopped_s"])
            self.assertEqual(u["unit_result"], "success")
        return u

    def assertNothingLeft(self, left=None):
        """No attach unit, worker, socket, pcscd reader or gadget (from `census` or `churn`)."""
        left = left or self.vm.guest("census")
        self.assertEqual((left["units"], left["workers"], left["sockets"], left["readers"], left["gadgets"]),
                         ([], [], [], [], []))

    def unit_condition(self, instance):
        return self.vm.check(["systemctl", "show", "-P", "ConditionResult", "swiftccid-attach@%s.service" % instance])["out"].strip()

    def test_0_packages_install_and_start_nothing(self):
        i = self.installed
        self.assertEqual(sorted(i["packages"]), ["ccid-sim install ok installed", "swiftccid install ok installed"])
        self.assertTrue(i["rule"])
        # A template unit, nothing enabled, no instance started, pcscd not started or restarted.
        self.assertEqual([u.split()[:2] for u in i["unit_files"] if u.strip()],
                         [["swiftccid-attach@.service", "static"], ["swiftccid-attach@.socket", "static"]])
        self.assertEqual([u for u in i["units"] if u.strip()], [])
        self.assertEqual(i["pcscd_after"], i["pcscd_before"])
        state = self.vm.guest("pcscd-state")
        self.assertEqual(state["socket"], "active")

    def test_1_worker_mode_udev_rule_systemd_unit_pcscd(self):
        self.vm.guest("use", "ours", "--workers")
        for profile, extended in (("omnikey-3121-extended", True), ("gemalto-ct30-tpdu", True)):
            with self.subTest(profile=profile):
                p = self.plug(profile, "worker mode", workers=True)
                argv = self.vm.check(["systemctl", "show", "-P", "ExecStart", "swiftccid-attach@%s.service" % p["instance"]])["out"]
                self.assertIn("argv[]=/usr/libexec/swiftccid/ccid-attach attach %s" % p["instance"], argv)
                self.vm.guest("conformance", p["serial"], *(["--extended"] if extended else []), *apdu_level(profile), timeout=900)
                self.vm.guest("card-events", p["name"], p["serial"])
                self.unplug(p, "worker mode", workers=True)
        for _ in range(REPEATS - 1):
            self.unplug(self.plug("cherry-st-short", "worker mode", workers=True), "worker mode", workers=True)
        p = self.plug("omnikey-3121-extended", "worker mode", workers=True)
        cut = self.vm.guest("unplug-mid-apdu", p["name"], p["serial"])
        self.record("worker mode: unplug mid-APDU -> client error", cut["cut_to_error_s"])
        self.vm.guest("gone", "(%s)" % p["serial"])
        self.assertNothingLeft()

    def test_2_direct_mode_pcscd_hotplug(self):
        self.vm.guest("use", "ours")
        p = self.plug("omnikey-3121-extended", "direct mode")
        # Our udev rule's power hints on the real kernel: persist off, autosuspend on.
        self.assertEqual(p["power"], {"control": "auto", "persist": "0"})
        # udev still asks for the unit; its condition (worker mode off) keeps it from running.
        self.assertEqual(self.unit_condition(p["instance"]), "no")
        self.vm.guest("conformance", p["serial"], "--extended", "--apdu-level", timeout=900)
        self.vm.guest("card-events", p["name"], p["serial"])
        self.unplug(p, "direct mode")
        p = self.plug("cherry-st-short", "direct mode")
        self.vm.guest("conformance", p["serial"], "--apdu-level", timeout=900)
        self.unplug(p, "direct mode")
        for _ in range(REPEATS - 2):
            self.unplug(self.plug("cherry-st-short", "direct mode"), "direct mode")
        p = self.plug("gemalto-ct30-tpdu", "direct mode")
        cut = self.vm.guest("unplug-mid-apdu", p["name"], p["serial"])
        self.record("direct mode: unplug mid-APDU -> client error", cut["cut_to_error_s"])
        self.assertNothingLeft()

    def test_3_libccid_reference_on_the_same_gadgets(self):
        """Also a composite token: configfs hid functions beside FunctionFS put
        its CCID interface at number 2, behind two HID ones the kernel's HID
        driver takes; each driver must open only the CCID one. And USB ICCD
        tokens of version A and B: an interface with no endpoint, every
        exchange a class request on the real kernel's control pipe."""
        scripts = {}
        profiles = ("omnikey-3121-extended", "gemalto-ct30-tpdu", "yubikey-neo-composite-extended",
                    "egate-iccd-a-char", "gemalto-pdt-iccd-b-short")
        only = {"yubikey-neo-composite-extended": ["--t1-only"], "gemalto-pdt-iccd-b-short": ["--t1-only"],
                "egate-iccd-a-char": ["--t0-only"]}
        for driver in ("ours", "libccid"):
            self.vm.guest("use", driver)
            mode = "libccid" if driver == "libccid" else "direct mode"
            for profile in profiles:
                p = self.plug(profile, mode)
                try:
                    token = profile.startswith("yubikey")
                    if token:
                        self.assertEqual(self.vm.guest("interfaces", p["serial"])["interfaces"], {"0": "03", "1": "03", "2": "0b"})
                    # A token speaks one protocol: asking for the other fails under both drivers.
                    scripts[(driver, profile)] = self.vm.guest("reference", "(%s)" % p["serial"],
                                                               *only.get(profile, []))["script"]
                finally:
                    # Unplugged also after a failure, so that the scenarios after this one start clean.
                    self.unplug(p, mode)
            for _ in range(REPEATS - 2):
                self.unplug(self.plug("cherry-st-short", mode), mode)
        for profile in profiles:
            with self.subTest(profile=profile):
                self.assertTrue(scripts[("ours", profile)])
                self.assertEqual(scripts[("ours", profile)], scripts[("libccid", profile)])
        self.assertNothingLeft()

    def qemu_reader(self, driver, workers=False):
        self.vm.guest("use", driver, *(["--workers"] if workers else []))
        db = os.path.join(image.CACHE, RELEASE, "rootfs/var/lib/swiftccid-vm/nssdb")
        self.vm.qmp.command("device_add", driver="usb-ccid", id="ccid0", bus="xhci.0")
        self.vm.qmp.command("device_add", driver="ccid-card-emulated", id="card0", backend="certificates",
                            db="sql:" + db, cert1="cert1", cert2="cert2", cert3="cert3")
        try:
            seen = self.vm.guest("foreign", "433-Swap")
        finally:
            self.vm.qmp.command("device_del", id="ccid0")
        self.vm.guest("gone", "433-Swap")
        return seen

    def test_4_qemu_usb_ccid_hotplugged_over_qmp(self):
        ours = self.qemu_reader("ours")
        worker = self.qemu_reader("ours", workers=True)
        theirs = self.qemu_reader("libccid")
        self.assertEqual(ours["atr"][:2], [0x3B, 0x7A])
        self.assertTrue(ours["answers"] and all(len(a) >= 2 for a in ours["answers"]))
        for seen in (worker, theirs):
            self.assertEqual((ours["atr"], ours["protocol"], ours["answers"]), (seen["atr"], seen["protocol"], seen["answers"]))
        self.assertNothingLeft()

    def test_5_readers_plugged_and_unplugged_in_quick_succession(self):
        self.vm.guest("use", "ours", "--workers")
        profiles = "omnikey-3121-extended,cherry-st-short,gemalto-ct30-tpdu"
        self.assertNothingLeft(self.vm.guest("churn", profiles, "--rounds", "2", "--use", timeout=600))
        self.assertNothingLeft(self.vm.guest("churn", profiles, "--rounds", "4", timeout=600))
        # And the chain still serves a reader afterwards.
        p = self.plug("omnikey-3121-extended", "worker mode", workers=True)
        self.unplug(p, "worker mode", workers=True)
        failed = self.vm.check(["systemctl", "list-units", "--failed", "--plain", "--no-legend"])["out"].strip()
        self.assertEqual(failed, "")

    def test_6_socket_activation_and_auto_exit(self):
        """No pcscd; a client connects and systemd starts it; the client
        leaves and pcscd exits by itself; a reader plugged meanwhile and the
        first one are both served to the next client."""
        for driver, workers, mode in (("ours", True, "worker mode"), ("ours", False, "direct mode"),
                                      ("libccid", False, "libccid")):
            with self.subTest(mode=mode):
                self.vm.guest("use", driver, *(["--workers"] if workers else []), "--no-client")
                first = self.plug("omnikey-3121-extended", mode, workers=workers, client=False)
                state = self.vm.guest("pcscd-state")
                self.assertEqual((state["service"], state["socket"], state["pids"]), ("inactive", "active", []))
                self.assertEqual(len(state["workers"]), 1 if workers else 0)
                served = self.vm.guest("first-client", "(%s)" % first["serial"])
                self.record("%s: socket activation -> first reader listed" % mode, served["listed_s"])
                self.record("%s: socket activation -> reader usable" % mode, served["usable_s"])
                self.assertEqual(len(served["pcscd"]), 1)
                gone = self.vm.guest("wait-exit", "--timeout", str(AUTO_EXIT_WAIT), timeout=AUTO_EXIT_WAIT + 60)
                if gone["race"]:
                    # pcsc-lite 1.9.9's auto-exit race (guest.py wait_exit), proven by its signature.
                    self.assertEqual(RELEASE, "bookworm", "pcscd did not exit on its own")
                    self.record("%s: auto-exit lost pcsc-lite 1.9.9's race" % mode, gone["exit_s"])
                else:
                    self.record("%s: last client left -> pcscd exited" % mode, gone["exit_s"])
                self.assertEqual((gone["state"]["service"], gone["state"]["socket"]), ("inactive", "active"))
                # The attach worker outlives pcscd.
                self.assertEqual(gone["state"]["workers"], state["workers"])
                second = self.plug("cherry-st-short", mode, workers=workers, client=False)
                again = self.vm.guest("first-client", "(%s)" % first["serial"], "(%s)" % second["serial"])
                self.record("%s: pcscd exited -> next client served" % mode, again["usable_s"])
                self.assertEqual(len(again["readers"]), 2)
                self.unplug(first, mode, workers=workers)
                self.unplug(second, mode, workers=workers)
        self.assertNothingLeft()

    def test_7_reload_with_readers_attached(self):
        """systemctl reload pcscd (pcscd --hotplug, the unit's ExecReload)."""
        for workers, mode in ((True, "worker mode"), (False, "direct mode")):
            with self.subTest(mode=mode):
                self.vm.guest("use", "ours", *(["--workers"] if workers else []))
                plugged = [self.plug(profile, mode, workers=workers) for profile in ("omnikey-3121-extended", "gemalto-ct30-tpdu")]
                r = self.vm.guest("reload", *("(%s)" % p["serial"] for p in plugged))
                self.assertEqual(r["after"], r["before"])
                self.assertEqual(len(r["after"]["readers"]), 2)
                self.assertEqual(len(r["after"]["pcscd"]), 1)
                for p in plugged:
                    self.unplug(p, mode, workers=workers)
        self.assertNothingLeft()

    def test_7b_bench_over_real_kernel_usb(self):
        """make vm-bench's scenario, one small round: our direct and worker
        modes and libccid each serve both workloads, every answer checked."""
        counts = {"short": 50, "64k": 3}
        results = vm_bench.run(self.vm, 1, counts["short"], counts["64k"])
        for mode in vm_bench.MODES:
            for workload, count in counts.items():
                [r] = results[mode][workload]
                self.assertEqual((r["apdus"], r["wrong"], r["error"]), (count, 0, ""))
        vm_bench.report(results, RELEASE)
        self.assertNothingLeft()

    def test_8_pcscd_as_its_own_user(self):
        """pcscd as upstream pcsc-lite 2.x runs it (User=pcscd): device nodes
        and worker sockets are its group's and nobody else's; a reader plugged
        before that group existed is explained by `ccid-attach doctor`."""
        self.vm.guest("use", "ours", "--no-client")
        early = self.plug("omnikey-3121-extended", "direct mode", client=False)
        node = early["location"].split()[0]
        switched = self.vm.guest("unprivileged", "on")
        self.assertTrue(switched["user"].startswith("pcscd:"))
        self.assertIn("/run/systemd/generator/swiftccid-attach@.socket.d/50-pcscd-group.conf", switched["generated"])
        try:
            self.vm.guest("use", "ours")
            self.assertEqual(self.vm.guest("pcscd-state")["user"], ["pcscd"])
            self.assertEqual(self.vm.guest("perms", node)["group"], "root")
            doctor = self.vm.guest("doctor", early["instance"])["out"]
            self.assertRegex(doctor, r"pcscd runs as uid \d+ \(pcscd\) and cannot open %s: it is root:root mode 660; "
                                     r"the udev rule gives the node the group pcscd" % node)
            self.vm.guest("unplug", early["name"], early["serial"])     # never served: no timing to record
            for workers, mode in ((False, "unprivileged pcscd, direct mode"), (True, "unprivileged pcscd, worker mode")):
                with self.subTest(mode=mode):
                    self.vm.guest("use", "ours", *(["--workers"] if workers else []))
                    p = self.plug("omnikey-3121-extended", mode, workers=workers)
                    self.vm.guest("card-events", p["name"], p["serial"])
                    node = p["location"].split()[0]
                    self.assertEqual(self.vm.guest("perms", node),
                                     {"owner": "root", "group": "pcscd", "mode": "660", "nobody": "PermissionError"})
                    if workers:
                        sock = "/run/swiftccid/usb-%s.sock" % p["instance"]
                        self.assertEqual(self.vm.guest("perms", sock),
                                         {"owner": "root", "group": "pcscd", "mode": "660", "nobody": "PermissionError"})
                    self.assertEqual(self.vm.guest("doctor", p["instance"])["out"].count("cannot"), 0)
                    self.unplug(p, mode, workers=workers)
        finally:
            self.vm.guest("unprivileged", "off")
        self.vm.guest("use", "ours")
        self.assertEqual(self.vm.guest("pcscd-state")["user"], ["root"])
        self.assertNothingLeft()

    def test_9_purge_leaves_nothing(self):
        p = self.vm.guest("purge")
        self.assertEqual((p["added"], p["left"]), ([], []), p["dpkg"])
        self.assertEqual([l for l in p["packages"] if "installed" in l and "not-installed" not in l], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
