"""A relay peer that sends garbage, truncated frames, oversized lengths or
wrong sequence numbers gets IFD errors; pcscd never crashes, every call
returns within the exchange cap, and the other readers carry on."""
import os
import time
import unittest

from smartcard import scard as S

from hostile_relay import HostileRelay, MODES
from pcsc import Context, OK, PCSCError, SELECT_TEST_APPLET
from simharness import DIR, PrivatePCSCD, reader_names

CAP_MS = 2000
SIM = "OMNIKEY 3x21 Smart Card Reader [sim0] 00 00"


class HostileRelayPeers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.peers = {}
        os.makedirs("/tmp/sccid-hostile", exist_ok=True)
        relays = []
        for i, mode in enumerate(MODES):
            path = "/tmp/sccid-hostile/%d-%s.sock" % (os.getpid(), mode)
            cls.peers[mode] = (i, HostileRelay(path, mode))
            relays += ["--relay", path]
        cls.pcscd = PrivatePCSCD(*relays, env={"SWIFTCCID_MAX_EXCHANGE_MS": str(CAP_MS)}).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.pcscd.__exit__(None, None, None)
        for _, peer in cls.peers.values():
            peer.close()

    def reader(self, mode):
        index, peer = self.peers[mode]
        name = "Relay %d [%s]" % (index, os.path.basename(peer.path))
        return next((r for r in reader_names() if r.startswith(name)), None)

    def assert_everything_else_fine(self):
        self.assertTrue(self.pcscd.pcscd_alive(), "pcscd died")
        with Context() as c:
            card = c.connect(SIM, S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
            card.disconnect()

    def test_garbage_instead_of_hello_leaves_no_reader(self):
        self.assertIsNone(self.reader("garbage-hello"))
        self.assertIn("cannot open /tmp/sccid-hostile/%d-garbage-hello.sock" % os.getpid(), self.pcscd.log_text())
        self.assert_everything_else_fine()

    def _transmit_fails_in_time(self, mode):
        name = self.reader(mode)
        self.assertIsNotNone(name, "%s: reader missing; %s" % (mode, reader_names()))
        with Context() as c:
            card = c.connect(name, S.SCARD_PROTOCOL_T1)   # power-up and parameters are answered properly
            start = time.monotonic()
            with self.assertRaises(PCSCError, msg=mode):
                card.transmit([0x80, 0x34, 0x00, 0x02, 0x02])
            elapsed = time.monotonic() - start
            self.assertLess(elapsed, CAP_MS / 1000 + 2.5, "%s took %.1f s" % (mode, elapsed))
            card.disconnect()
        self.assert_everything_else_fine()

    def test_garbage_reply(self):
        self._transmit_fails_in_time("garbage-reply")

    def test_length_lie(self):
        self._transmit_fails_in_time("length-lie")

    def test_wrong_sequence_number(self):
        self._transmit_fails_in_time("wrong-seq")

    def test_wrong_slot(self):
        self._transmit_fails_in_time("wrong-slot")

    def test_silence(self):
        self._transmit_fails_in_time("silence")

    def test_time_extension_storm(self):
        self._transmit_fails_in_time("time-extension-storm")

    def test_truncated_frame(self):
        self._transmit_fails_in_time("truncated")

    def test_oversized_frame(self):
        self._transmit_fails_in_time("oversized")

    def test_unknown_frame_type(self):
        self._transmit_fails_in_time("unknown-frame")


if __name__ == "__main__":
    unittest.main()
