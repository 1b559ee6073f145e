"""`--card pcsc:READER`: a slot whose card is the card in a reader of
another PC/SC stack, so a real token can sit behind any simulated reader
profile. Tested by chaining two ccid-sim instances: an inner one (its own
pcscd, the compliance card) and an outer one whose slot takes the inner
reader's card, through the outer pcscd, our driver and a reader of another
exchange level."""
import os
import subprocess
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, check_cases_at_every_length
from simharness import DIR, SIM, PrivatePCSCD, reader_names, stop, wait_for
from test_pcscd import ATR1, ATR3

INNER_DIR = DIR + "-inner"


class InnerSimulator:
    """The other PC/SC stack: `ccid-sim pcscd` in its own directory."""

    def __enter__(self):
        self.proc = subprocess.Popen([SIM, "pcscd", "--dir", INNER_DIR], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        first = self.proc.stdout.readline().strip()
        if not first.startswith("PCSCLITE_CSOCK_NAME="):
            self.__exit__()
            raise RuntimeError("the inner ccid-sim pcscd did not start: %r" % first)
        self.socket = first.split("=", 1)[1]
        return self

    def sim(self, *args):
        return subprocess.run([SIM] + list(args) + ["--dir", INNER_DIR], capture_output=True, text=True, timeout=20)

    def __exit__(self, *exc):
        stop(self.proc)
        self.proc.stdout.close()
        return False


def present(reader):
    with Context() as c:
        return bool(c.state(reader) & S.SCARD_STATE_PRESENT)


class PCSCPassthrough(unittest.TestCase):
    def outer(self, inner, profile):
        # The outer ccid-sim's PC/SC client finds the inner pcscd by PCSCLITE_CSOCK_NAME;
        # its own pcscd does not inherit that name, and this test's client talks to the outer one.
        return PrivatePCSCD("--profile", profile, "--card", "pcsc:OMNIKEY 3x21",
                            env={"PCSCLITE_CSOCK_NAME": inner.socket})

    def test_the_inner_card_behind_outer_readers_of_two_levels(self):
        with InnerSimulator() as inner:
            for profile, apdu_level in (("cherry-st-short", True), ("gemalto-ct30-tpdu", False)):
                with self.subTest(profile=profile), self.outer(inner, profile) as outer:
                    reader = reader_names()[0]
                    wait_for(lambda: present(reader), what="the inner card in the outer slot")
                    self.assertIn("slot 0: pcsc:OMNIKEY 3x21 Smart Card Reader [sim0] 00 00", outer.sim("list").stdout)
                    with Context() as c:
                        card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                        self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR1)
                        card.disconnect()
                    check_cases_at_every_length(self, reader, S.SCARD_PROTOCOL_T1, apdu_level)
                    atr = subprocess.run(["opensc-tool", "--reader", "0", "--atr"], capture_output=True, text=True, timeout=30)
                    self.assertEqual(atr.stdout.strip(), ":".join("%02x" % b for b in ATR1), atr.stderr)

    def test_removal_and_insertion_in_the_inner_reader_reach_the_outer_slot(self):
        with InnerSimulator() as inner, self.outer(inner, "cherry-st-short") as outer:
            reader = reader_names()[0]
            wait_for(lambda: present(reader), what="the inner card in the outer slot")
            self.assertEqual(inner.sim("remove", "sim0").returncode, 0)
            wait_for(lambda: not present(reader), what="removal seen through both stacks")
            self.assertIn("pcsc:OMNIKEY 3x21 (no card connected)", outer.sim("list").stdout)
            self.assertEqual(inner.sim("insert", "sim0", "--card", "compliance-crypto").returncode, 0)
            wait_for(lambda: present(reader), what="insertion seen through both stacks")
            with Context() as c:
                card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), ATR3)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                self.assertEqual(card.transmit([0x80, 0x34, 0x00, 0x04, 0x04]), [0, 1, 2, 3] + OK)
                card.disconnect()
            self.assertTrue(outer.pcscd_alive())

    def test_no_such_reader_waits_and_a_card_needs_a_pcsc_service(self):
        with InnerSimulator() as inner:
            with PrivatePCSCD("--card", "pcsc:No Such Reader", env={"PCSCLITE_CSOCK_NAME": inner.socket}) as outer:
                reader = reader_names()[0]
                self.assertFalse(present(reader))
                wait_for(lambda: 'waiting for a reader named "No Such Reader"' in outer.sim_log_text(), what="the log line")
        proc = subprocess.run([SIM, "serve", "--dir", DIR + "-nopcsc", "--card", "pcsc:X"], capture_output=True, text=True,
                              timeout=20, env=dict(os.environ, PCSCLITE_CSOCK_NAME=DIR + "-none/pcscd.comm"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("pcsc:X: no PC/SC service to take cards from", proc.stderr)


if __name__ == "__main__":
    unittest.main()
