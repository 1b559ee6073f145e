"""A fixed sample of `make corpus` (tools/corpus.py --sample): real readers'
descriptors as simulated readers through pcscd, among them TPDU readers that
negotiate with the card themselves (dwFeatures 0x80, 0x40), character-level,
short- and extended-APDU and multi-slot ones. Under our driver each passes
(SELECT, cases 1 to 4, a 4 KiB case 2E, exact answers) or is rightly refused;
libccid's results on the same USB devices are printed beside, not asserted."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import corpus  # noqa: E402


class CorpusSample(unittest.TestCase):
    def test_sample_passes_under_our_driver(self):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "corpus.py"), "--sample", "--json", out.name],
                               capture_output=True, text=True, timeout=900)
            print("\n" + r.stdout[r.stdout.find("distinct descriptors") - 4:])
            self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-2000:])
            with open(out.name) as f:
                results = json.load(f)
        sample = corpus.distinct(only=corpus.SAMPLE)
        self.assertGreaterEqual(len(sample), len(corpus.SAMPLE))
        negotiating = [d.file for d in sample if d.level == "TPDU" and d.features & 0xC0]
        self.assertGreaterEqual(len(negotiating), 6)
        for d in sample:
            self.assertIn(results["relay-ours"][d.file][0], ("pass", "refused"), d.file)
            self.assertIn(results["usb-ours"][d.file][0], ("pass", "refused", "not claimed"), d.file)
        # The SCM SCL010 dump is of firmware 1.02: the quirk table's firmware gate (O1) refuses it, as libccid does.
        old = "firmware 1.02 is older than 1.12 (quirk O1: SCM SCL010: first firmware usable contactless; " \
              "firmware before 1.12 is too old to use)"
        for mode in ("relay-ours", "usb-ours"):
            self.assertEqual(results[mode]["SCL010.txt"], ["refused", old])
        for name in negotiating:
            if name != "SCL010.txt":
                self.assertEqual(results["relay-ours"][name][0], "pass", name)
                self.assertEqual(results["usb-ours"][name][0], "pass", name)
        # A short-APDU reader refuses the extended APDU, and that is right.
        short = next(d.file for d in sample if d.level == "short APDU" and not d.iccd)
        self.assertEqual(results["relay-ours"][short],
                         ["pass", "4 KiB case 2E (short-APDU reader: no extended APDUs) rightly refused"])


if __name__ == "__main__":
    unittest.main()
