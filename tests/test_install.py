"""make install honours DESTDIR; the installed ccid-sim and bundle work
without the build tree or the Swift toolchain on the library path."""
import os
import shutil
import subprocess
import tempfile
import unittest

from simharness import ROOT

OMNIKEY = "OMNIKEY 3x21 Smart Card Reader [sim0] 00 00"


class Install(unittest.TestCase):
    def test_staged_install_runs(self):
        stage = tempfile.mkdtemp(prefix="sccid-stage")
        try:
            r = subprocess.run(["make", "-s", "install", "DESTDIR=" + stage, "PREFIX=/usr"], cwd=ROOT,
                               capture_output=True, text=True, timeout=900)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            drivers = subprocess.run(["pkg-config", "--variable=usbdropdir", "libpcsclite"], capture_output=True,
                                     text=True).stdout.strip()
            bundle = stage + drivers + "/ifd-swiftccid.bundle"
            sim = stage + "/usr/bin/ccid-sim"
            self.assertTrue(os.path.isfile(bundle + "/Contents/Info.plist"))
            def var(pkg, name):
                return subprocess.run(["pkg-config", "--variable=" + name, pkg], capture_output=True, text=True).stdout.strip()
            attach = stage + "/usr/libexec/swiftccid/ccid-attach"
            rules = stage + var("udev", "udevdir") + "/rules.d/60-swiftccid.rules"
            unit = stage + var("systemd", "systemdsystemunitdir") + "/swiftccid-attach@.service"
            for path in (attach, rules, unit):
                self.assertTrue(os.path.isfile(path), path)
            with open(unit) as f:
                self.assertIn("ExecStart=/usr/libexec/swiftccid/ccid-attach attach %i", f.read())
            # Packaging guidelines: installing starts nothing (no enable links, no wants).
            self.assertEqual([p for p in subprocess.run(["find", stage], capture_output=True, text=True).stdout.split()
                              if ".wants" in p or ".requires" in p], [])
            so = bundle + "/Contents/Linux/libswiftccid.so"
            for binary in (so, sim):
                ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
                self.assertNotIn("swift", ldd.lower(), binary)
                self.assertNotIn("pcsclite", ldd, binary)
            # The staged simulator runs pcscd with the staged driver (--driver), from outside the tree.
            env = dict(os.environ, LD_LIBRARY_PATH="")
            d = tempfile.mkdtemp(prefix="sccid-inst")
            p = subprocess.Popen([sim, "pcscd", "--dir", d, "--driver", bundle], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd="/", env=env)
            try:
                line = p.stdout.readline().strip()
                self.assertTrue(line.startswith("PCSCLITE_CSOCK_NAME="), p.stderr.read() if not line else line)
                out = subprocess.run(["opensc-tool", "--list-readers"], capture_output=True, text=True,
                                     env=dict(env, PCSCLITE_CSOCK_NAME=line.split("=", 1)[1]), timeout=20).stdout
                self.assertIn(OMNIKEY, out)
            finally:
                p.terminate()
                p.wait(15)
                p.stdout.close()
                p.stderr.close()
            self.assertEqual(os.listdir(d), [], "ccid-sim pcscd left files behind")
            os.rmdir(d)
            r = subprocess.run(["make", "-s", "uninstall", "DESTDIR=" + stage, "PREFIX=/usr"], cwd=ROOT,
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0)
            for path in (bundle, sim, attach, rules, unit):
                self.assertFalse(os.path.exists(path), path)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
