"""The benchmark's own tools, so that `make bench` keeps working: the C load
generator checks every answer (a wrong one fails the run), the do-nothing
floor answers the bytes the compliance card does, `ccid-sim list --counts`
counts CCID messages exactly, and a one-round bench runs every part. No
timing is asserted: these machines are shared."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "bench"))
import pcscload  # noqa: E402
from pcsc import OK, SELECT_TEST_APPLET, seq  # noqa: E402
from simharness import DIR, SIM, PrivatePCSCD, reader_names  # noqa: E402

CASE2 = [0x80, 0x34, 0x00, 0x10, 0x10]
N = 65535
CASE2E = [0x80, 0x00, 0x04, 0x5A, 0x00, N >> 8, N & 0xFF]


def message_counts():
    out = subprocess.run([SIM, "list", "--counts", "--dir", DIR], capture_output=True, text=True, check=True).stdout
    return [tuple(int(x) for x in line.split("\t")[2:4]) for line in out.splitlines()]


class LoadGenerator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory(prefix="sccid-bench-test")
        cls.tools = pcscload.Tools(cls.work.name)
        cls.pcscd = PrivatePCSCD("--profile", "springcard-e518-2slot-extended", "--reader-conf",
                                 cls.tools.null_conf).__enter__()
        names = reader_names()
        cls.ours = next(r for r in names if "[sim0]" in r and r.endswith("00"))
        cls.floor = next(r for r in names if r.startswith("Null IFD"))

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)
        cls.work.cleanup()

    def load(self, apdu, expect, **kw):
        return pcscload.load(self.tools, [self.ours, self.floor], apdu, expect, kw.pop("count", 20), kw.pop("rounds", 2),
                             setup=(SELECT_TEST_APPLET, OK), **kw)

    def test_rounds_alternate_and_every_answer_is_checked(self):
        ours, floor = self.load(CASE2, seq(16) + OK)
        for rounds in (ours, floor):
            self.assertEqual([r["round"] for r in rounds], [1, 2])   # round 0, the warm-up, is dropped
            self.assertEqual([(r["apdus"], r["wrong"], r["error"]) for r in rounds], [(20, 0, "")] * 2)

    def test_a_wrong_answer_fails_the_run(self):
        with self.assertRaisesRegex(pcscload.WrongAnswers, r"'wrong': 20"):
            self.load(CASE2, seq(15) + OK)

    def test_64k_answers_from_both_readers_and_the_apdu_from_a_file(self):
        ours, floor = self.load(CASE2E, [0x5A] * N + OK, count=3, rounds=1)
        self.assertEqual([(r["apdus"], r["wrong"]) for r in ours + floor], [(3, 0), (3, 0)])
        big = [0x80, 0x12, 0x01, 0x80, 0x00, N >> 8, N & 0xFF] + seq(N)
        self.assertTrue(self.tools.hex_arg(big).startswith("@"))
        ours, floor = self.load(big, OK, count=2, rounds=1)
        self.assertEqual([(r["apdus"], r["wrong"]) for r in ours + floor], [(2, 0), (2, 0)])

    def test_clients_together(self):
        [rounds] = self.load(CASE2, seq(16) + OK, clients=4, together=True)
        self.assertEqual([(r["reader"], r["apdus"], r["wrong"]) for r in rounds], [(-1, 40, 0)] * 2)

    def test_message_counts_are_exact(self):
        # Connecting and the reset at the end cost a few messages too: two runs
        # 10 APDUs apart (in each of 2 rounds, one a warm-up) differ by 20, one
        # message each way per APDU at this level.
        deltas = []
        for count in (25, 35):
            before = message_counts()
            self.load(CASE2, seq(16) + OK, count=count, rounds=1)
            after = message_counts()
            deltas.append([(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before)])
        self.assertEqual([(b[0] - a[0], b[1] - a[1]) for a, b in zip(*deltas)], [(20, 20)])

    def test_list_and_first_reader(self):
        env = dict(os.environ, PCSCLITE_CSOCK_NAME=self.pcscd.socket)
        listed = subprocess.run([self.tools.loadgen, "--list"], capture_output=True, text=True, env=env, check=True)
        self.assertEqual(sorted(listed.stdout.splitlines()), sorted(reader_names()))
        first = subprocess.run([self.tools.loadgen, "--first-reader"], capture_output=True, text=True, env=env,
                               check=True, timeout=10)
        self.assertGreater(float(first.stdout), 0)


class OneRoundBench(unittest.TestCase):
    """Every part of `make bench`, one small round each: it runs to the end
    and prints every figure (values not checked: they are timings)."""

    def test_bench_prints_every_part(self):
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "--rounds", "1", "--scale", "0.02",
                            "--sim", SIM], capture_output=True, text=True, timeout=900)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        for heading in ("Short APDU level", "65,554-byte messages", "271-byte messages", "TPDU level",
                        "Character level", "No polling", "Goals", "Scale over the relay", "Scale under umockdev",
                        "pcscd's resources", "Startup"):
            self.assertIn(heading, r.stdout)


if __name__ == "__main__":
    unittest.main()
