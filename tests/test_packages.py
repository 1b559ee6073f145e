"""What a packager gets: the Debian packages `make deb` built (contents,
relations, maintainer scripts that enable and start nothing), the RPM spec as
`make rpm-check` parsed it, and man pages that cover every subcommand and
option the commands' own help lists. Install and purge on a real system are in
the VM test (tests/vm_test.py)."""
import glob
import os
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBS = os.path.join(ROOT, "build", "deb")
DRIVERDIR = subprocess.run(["pkg-config", "--variable=usbdropdir", "libpcsclite"], capture_output=True, text=True,
                           check=True).stdout.strip()
UDEVDIR = subprocess.run(["pkg-config", "--variable=udevdir", "udev"], capture_output=True, text=True, check=True).stdout.strip()
UNITDIR = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"], capture_output=True, text=True,
                         check=True).stdout.strip()
GENERATORDIR = subprocess.run(["pkg-config", "--variable=systemdsystemgeneratordir", "systemd"], capture_output=True,
                              text=True, check=True).stdout.strip()


def read(path):
    with open(path) as f:
        return f.read()


def deb(name):
    found = glob.glob(os.path.join(DEBS, "%s_*.deb" % name))
    if len(found) != 1:
        raise AssertionError("expected one %s package in %s (make deb), found %s" % (name, DEBS, found))
    return found[0]


def files(path):
    out = subprocess.run(["dpkg-deb", "-c", path], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[5][1:] for line in out.splitlines() if not line.startswith("d"))


def field(path, name):
    return subprocess.run(["dpkg-deb", "-f", path, name], capture_output=True, text=True, check=True).stdout.strip()


def control_file(path, member):
    r = subprocess.run(["dpkg-deb", "--info", path, member], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


class DebianPackages(unittest.TestCase):
    def test_driver_package_holds_the_bundle_worker_rule_unit_and_docs(self):
        bundle = DRIVERDIR + "/ifd-swiftccid.bundle/Contents"
        self.assertEqual(files(deb("swiftccid")), sorted([
            UNITDIR + "/swiftccid-attach@.service",
            UNITDIR + "/swiftccid-attach@.socket",
            GENERATORDIR + "/swiftccid-generator",
            UDEVDIR + "/rules.d/60-swiftccid.rules",
            bundle + "/Info.plist",
            bundle + "/Linux/libswiftccid.so",
            "/usr/libexec/swiftccid/ccid-attach",
            "/usr/share/doc/swiftccid/README.md.gz",
            "/usr/share/doc/swiftccid/ccid-attach.md",
            "/usr/share/doc/swiftccid/changelog.gz",
            "/usr/share/doc/swiftccid/copyright",
            "/usr/share/man/man1/ccid-attach.1.gz",
        ]))

    def test_simulator_package_holds_ccid_sim_and_its_man_page(self):
        self.assertEqual(files(deb("ccid-sim")), [
            "/usr/bin/ccid-sim",
            "/usr/share/doc/ccid-sim/changelog.gz",
            "/usr/share/doc/ccid-sim/copyright",
            "/usr/share/man/man1/ccid-sim.1.gz",
        ])

    def test_relations(self):
        depends = field(deb("swiftccid"), "Depends")
        self.assertRegex(depends, r"(^|, )pcscd(,|$)")
        for lib in ("libusb-1.0-0", "libudev1", "libsystemd0", "libc6"):
            self.assertIn(lib, depends)
        self.assertNotIn("libpcsclite", depends)    # pcscd loads us; the client library is not ours to link
        self.assertNotIn("umockdev", depends)       # only the simulator uses it
        self.assertIn("libumockdev0", field(deb("ccid-sim"), "Depends"))
        self.assertEqual(field(deb("swiftccid"), "Version"), field(deb("ccid-sim"), "Version"))

    def test_maintainer_scripts_enable_and_start_nothing(self):
        scripts = {m: control_file(deb("swiftccid"), m) for m in ("preinst", "postinst", "prerm", "postrm")}
        postinst = scripts["postinst"]
        self.assertIn("udevadm control --reload-rules", postinst)
        self.assertIn("udevadm control --reload-rules", scripts["postrm"])
        # The generator runs at daemon-reload: its decisions hold from the install on.
        self.assertIn("systemctl daemon-reload", postinst)
        for name, text in scripts.items():
            if text is None:
                continue
            for line in text.splitlines():
                code = line.split("#", 1)[0]
                self.assertNotRegex(code, r"\b(enable|start|restart|try-restart)\b", "%s: %s" % (name, line))
        # Removal stops running workers; purge removes what the package's programs left.
        self.assertIn("deb-systemd-invoke stop 'swiftccid-attach@*.service'", scripts["prerm"])
        self.assertIn("rm -rf /run/swiftccid", scripts["postrm"])
        self.assertIsNone(control_file(deb("ccid-sim"), "postinst"))

    def test_lintian_is_clean(self):
        changes = os.path.join(DEBS, "swiftccid.changes")
        out = subprocess.run(["lintian", "--fail-on", "none", changes], capture_output=True, text=True).stdout
        self.assertEqual([l for l in out.splitlines() if re.match(r"^[EW]: ", l)], [])


class RPMSpec(unittest.TestCase):
    def test_parsed_spec_follows_fedoras_systemd_and_udev_rules(self):
        parsed = read(os.path.join(ROOT, "build", "swiftccid.spec.parsed"))
        self.assertIn("UDEVDIR=/usr/lib/udev UNITDIR=/usr/lib/systemd/system", parsed)
        self.assertIn("/usr/lib/udev/rules.d/60-swiftccid.rules", parsed)
        self.assertIn("/usr/lib/systemd/system/swiftccid-attach@.service", parsed)
        self.assertIn("/usr/lib/systemd/system/swiftccid-attach@.socket", parsed)
        self.assertIn("/usr/lib/systemd/system-generators/swiftccid-generator", parsed)
        sections, current = {}, None
        for line in parsed.splitlines():
            m = re.match(r"^%(prep|build|install|post|preun|postun|files|changelog|description|package)\b", line)
            if m:
                current = m.group(1) if line == "%" + m.group(1) else None
                continue
            if current:
                sections[current] = (sections.get(current, "") + "\n" + line).strip()
        scriptlets = {k: sections[k] for k in ("post", "preun", "postun")}
        self.assertEqual(scriptlets, {
            "post": "%systemd_post swiftccid-attach@.service swiftccid-attach@.socket\n%udev_rules_update",
            "preun": "%systemd_preun swiftccid-attach@.service swiftccid-attach@.socket",
            "postun": "%systemd_postun swiftccid-attach@.service swiftccid-attach@.socket\n%udev_rules_update"})
        self.assertIn("License:        LGPL-2.1-or-later", parsed)

    def test_rpmlint_reports_no_errors(self):
        out = subprocess.run(["rpmlint", os.path.join(ROOT, "swiftccid.spec")], capture_output=True, text=True).stdout
        self.assertRegex(out, r"\b0 errors\b")


class ManPages(unittest.TestCase):
    """man/*.1 come from the commands' help (make man); every subcommand and
    option the built commands list must be in them."""

    def check(self, command):
        exe = os.path.join(ROOT, "build", command)
        page = read(os.path.join(ROOT, "man", command + ".1"))
        top = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
        subcommands = re.findall(r"^  ([a-z][a-z-]*)(?: \(default\))?\s", top.split("SUBCOMMANDS:")[1], re.M)
        self.assertGreater(len(subcommands), 3)
        for sub in subcommands:
            self.assertIn(".It Em %s\n" % sub, page)
            help_text = subprocess.run([exe, "help", sub], capture_output=True, text=True, check=True).stdout
            for option in sorted(set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", help_text, re.M)) - {"help"}):
                with self.subTest(command=command, sub=sub, option=option):
                    self.assertIn("Fl -%s" % option, page)

    def test_ccid_sim(self):
        self.check("ccid-sim")

    def test_ccid_attach(self):
        self.check("ccid-attach")


if __name__ == "__main__":
    unittest.main()
