"""One cap per APDU at every exchange level, through a real pcscd.

An APDU that takes many exchanges with the reader (pieces at extended-APDU
level, T=1 blocks at TPDU and character level), each answered within its own
deadline, must still end at the cap on the whole APDU
(SWIFTCCID_MAX_EXCHANGE_MS): a reader that is merely slow at every step must
not hold the client for steps × cap. Before the cap covered the extended-APDU
path, this test's APDU took about 5 s there against a 1 s cap."""
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, PCSCError, seq
from simharness import PrivatePCSCD

CAP_MS = 1000
# Within the cap, plus what pcscd and the Abort that follows a deadline add.
BOUND = CAP_MS / 1000 + 2.0

# A case 3E APDU of 2000 bytes: 8 pieces at the extended-APDU readers' message
# size, 8 or more T=1 blocks (IFSC at most 254) at TPDU and character level.
LONG_APDU = [0x80, 0x12, 0x01, 0x80, 0x00, 0x07, 0xD0] + seq(2000)

# Each exchange slowed well within its own deadline (the card's waiting time
# plus the transport margin), so that only a cap on the whole APDU ends it.
SLOW_EXCHANGES = [(["late=600"], "every reply 600 ms late"),
                  (["te=120"], "120 time extensions, 5 ms apart, before every reply")]

LEVELS = [("omnikey-3121-extended", "OMNIKEY 3x21 Smart Card Reader [sim0] 00 00"),
          ("gemalto-ct30-tpdu", "USB SmartCard Reader [sim0] 00 00"),
          ("o2micro-oz776-char", "O2Micro CCID SC Reader [sim0] 00 00")]


class OneCapPerAPDU(unittest.TestCase):
    def check_level(self, profile, reader):
        with PrivatePCSCD("--profile", profile, env={"SWIFTCCID_MAX_EXCHANGE_MS": str(CAP_MS)}) as pcscd, \
                Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T1)
            try:
                # Without a fault the APDU goes through: what follows is the cap, not a refusal.
                self.assertEqual(card.transmit(LONG_APDU), OK)
                for settings, what in SLOW_EXCHANGES:
                    with self.subTest(profile=profile, fault=what):
                        self.assertEqual(pcscd.sim("fault", "sim0", *settings).returncode, 0)
                        try:
                            start = time.monotonic()
                            with self.assertRaises(PCSCError) as caught:
                                card.transmit(LONG_APDU)
                            elapsed = time.monotonic() - start
                        finally:
                            self.assertEqual(pcscd.sim("fault", "sim0", "clear").returncode, 0)
                        # The driver's IFD_RESPONSE_TIMEOUT, as pcscd passes it on.
                        self.assertEqual(caught.exception.rv, S.SCARD_E_NOT_TRANSACTED)
                        self.assertLess(elapsed, BOUND, "the APDU took %.1f s against a %d ms cap" % (elapsed, CAP_MS))
                        self.assertTrue(pcscd.pcscd_alive(), "pcscd died")
                        # The exchange was cut mid-chain: a reset starts the card's protocol afresh.
                        card.disconnect(S.SCARD_RESET_CARD)
                        card = c.connect(reader, S.SCARD_PROTOCOL_T1)
                        self.assertEqual(card.transmit(LONG_APDU), OK)
            finally:
                card.disconnect(S.SCARD_RESET_CARD)

    def test_extended_apdu_level(self):
        self.check_level(*LEVELS[0])

    def test_tpdu_level(self):
        self.check_level(*LEVELS[1])

    def test_character_level(self):
        self.check_level(*LEVELS[2])


if __name__ == "__main__":
    unittest.main(verbosity=2)
