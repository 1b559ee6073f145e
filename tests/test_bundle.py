"""The bundle's Info.plist: what pcscd's hotplug matches USB readers against."""
import os
import plistlib
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLIST = os.path.join(ROOT, "build", "ifd-swiftccid.bundle", "Contents", "Info.plist")
READERS = os.path.join(ROOT, "bundle", "readers.txt")
CORPUS = os.path.join(ROOT, "data", "ccid-readers")


class InfoPlist(unittest.TestCase):
    def setUp(self):
        with open(PLIST, "rb") as f:
            self.plist = plistlib.load(f)

    def test_lists_every_reader_of_the_list_in_parallel_arrays(self):
        vids, pids, names = (self.plist[k] for k in ("ifdVendorID", "ifdProductID", "ifdFriendlyName"))
        self.assertEqual(len(vids), len(pids))
        self.assertEqual(len(vids), len(names))
        with open(READERS) as f:
            lines = [l.strip() for l in f if l.startswith("0x")]
        self.assertEqual(len(vids), len(lines))
        self.assertGreater(len(lines), 500)
        for vid, pid in zip(vids, pids):
            self.assertRegex(vid, r"^0x[0-9A-F]{4}$")
            self.assertRegex(pid, r"^0x[0-9A-F]{4}$")
        self.assertEqual(len(set(zip(vids, pids))), len(vids), "duplicate VID/PID")
        pairs = set(zip(vids, pids))
        # The simulator's USB test profiles are real readers the list carries.
        for pair in [("0x076B", "0x3031"), ("0x046A", "0x0090"), ("0x08E6", "0x3437"), ("0x072F", "0x90CC"),
                     ("0x1C34", "0x6112"), ("0x0416", "0x3815")]:
            self.assertIn(pair, pairs)
        self.assertEqual(self.plist["CFBundleExecutable"], "libswiftccid.so")

    def test_reader_list_is_what_the_generator_makes_of_the_corpus(self):
        out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "make-reader-list.py"), CORPUS],
                             capture_output=True, text=True, check=True).stdout
        with open(READERS) as f:
            self.assertEqual(out, f.read(), "bundle/readers.txt is stale: run `make reader-list`")
        unsupported = re.search(r"# section: unsupported\n(.*?)# section: disabled",
                                open(os.path.join(CORPUS, "txt", "supported_readers.txt")).read(), re.S).group(1)
        self.assertIn("0x072F:0x2224", unsupported)     # ACR1281U: listed unsupported, so not ours to take
        self.assertNotIn("0x072F:0x2224", out)

    def test_udev_rule_is_what_the_generator_makes_of_the_corpus(self):
        out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "make-udev-rules.py"), CORPUS, READERS],
                             capture_output=True, text=True, check=True).stdout
        with open(os.path.join(ROOT, "udev", "60-swiftccid.rules")) as f:
            self.assertEqual(out, f.read(), "udev/60-swiftccid.rules is stale: run `make reader-list`")


if __name__ == "__main__":
    unittest.main()
