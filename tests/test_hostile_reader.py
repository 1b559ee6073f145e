"""Hostile readers and cards through a real pcscd, at every exchange level:
whatever the simulated reader or card does wrong, pcscd stays up, every call
returns within the deadline cap, and the reader works again once the
misbehaviour stops (after at most a card reset).

The misbehaviours are `ccid-sim fault` settings (docs/ccid-sim.md); the
socket-level ones (malformed relay frames, hang-ups) are in test_hostile.py."""
import json
import os
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, SELECT_TEST_APPLET, PCSCError, seq
from simharness import DIR, TEXTBOOK_CHARACTER_READER, PrivatePCSCD, reader_names, wait_for

CAP_MS = 1000
# Within the cap, plus what pcscd and the Abort that follows a deadline add.
BOUND = CAP_MS / 1000 + 2.0

# (fault settings, what it is). Card-level T=1 faults only bite where the driver runs T=1.
MISBEHAVIOURS = [
    (["parity=1"], "every card block arrives with a parity error"),
    (["edc=1"], "every card block garbled (EDC error)"),
    (["lost=1"], "every card block lost (ICC_MUTE)"),
    (["repeat=1"], "the card repeats its previous block"),
    (["ifs=1"], "the card asks for a 1-byte IFSC before each response"),
    (["wtx=1000"], "the card streams S(WTX) requests"),
    (["te=100000"], "endless CCID time extensions"),
    (["wrongseq=1"], "every reply first comes with a wrong bSeq"),
    (["mute"], "the card stops answering"),
    (["stuck"], "the reader stops answering"),
    (["wrongslot=1"], "every reply first comes for another slot"),
    (["garbage=1"], "random bytes before every reply"),
    (["truncate=1"], "every reply cut short (dwLength promises more)"),
    (["oversize=1"], "every reply claims a length of nearly 4 GiB"),
    (["wrongtype=1"], "every reply of the wrong message type"),
    (["late=%d" % (CAP_MS + 1500)], "replies after the host's deadline and Abort"),
    (["intflood=2000"], "2000 NotifySlotChange interrupts with every reply"),
    (["hwerror=1"], "a HardwareError interrupt with every reply"),
    (["parity=2", "wrongseq=3", "te=2", "intflood=50"], "several at once"),
]

# Each APDU a misbehaving reader or card is sent, with its one correct response.
# (INS 12 with P1P2 0180 answers 9000 only if its data is the sequence 00 01 02 …)
PROBES = [([0x80, 0x00, 0x04, 0x42, 0x20], [0x42] * 0x20 + OK),
          ([0x80, 0x12, 0x01, 0x80, 0x40] + seq(0x40), OK)]
AFTERWARDS = ([0x80, 0x00, 0x04, 0x24, 0x08], [0x24] * 8 + OK)
# What a client may get instead while the reader or card misbehaves: the
# driver's error, as pcscd passes it on.
FAULT_ERRORS = {S.SCARD_E_NOT_TRANSACTED}

LEVELS = [("omnikey-3121-extended", "OMNIKEY 3x21 Smart Card Reader [sim0] 00 00"),
          ("cherry-st-short", "Smart Card Reader USB [sim0] 00 00"),
          ("gemalto-ct30-tpdu", "USB SmartCard Reader [sim0] 00 00"),
          ("o2micro-oz776-char", "O2Micro CCID SC Reader [sim0] 00 00")]


def answered(test, card, apdu, expected, errors):
    """The exact response (True), or an error of one of the expected kinds (False)."""
    try:
        response = card.transmit(apdu)
    except PCSCError as e:
        test.assertIn(e.rv, errors, str(e))
        return False
    test.assertEqual(response, expected)
    return True


class HostileReaderAndCard(unittest.TestCase):
    def check_level(self, profile, reader, protocols=(S.SCARD_PROTOCOL_T1, S.SCARD_PROTOCOL_T0)):
        with PrivatePCSCD("--profile", profile, env=dict(TEXTBOOK_CHARACTER_READER, SWIFTCCID_MAX_EXCHANGE_MS=str(CAP_MS))) as pcscd:
            for settings, what in MISBEHAVIOURS:
                for protocol in protocols:
                    with self.subTest(profile=profile, fault=" ".join(settings), protocol=protocol):
                        self.one(pcscd, reader, settings, protocol)

    def one(self, pcscd, reader, settings, protocol):
        with Context() as c:
            card = c.connect(reader, protocol)
            try:
                r = pcscd.sim("fault", "sim0", *settings)
                self.assertEqual(r.returncode, 0, r.stderr)
                try:
                    for apdu, expected in PROBES:
                        start = time.monotonic()
                        answered(self, card, apdu, expected, FAULT_ERRORS)
                        elapsed = time.monotonic() - start
                        self.assertLess(elapsed, BOUND, "an APDU took %.1f s" % elapsed)
                finally:
                    self.assertEqual(pcscd.sim("fault", "sim0", "clear").returncode, 0)
                self.assertTrue(pcscd.pcscd_alive(), "pcscd died")
                # With the fault gone the card answers at once, or (a cut T=1
                # exchange leaves its protocol state behind) after the reset below.
                answered(self, card, *AFTERWARDS, FAULT_ERRORS)
            finally:
                card.disconnect(S.SCARD_RESET_CARD)
            card = c.connect(reader, protocol)
            try:
                self.assertEqual(card.transmit(AFTERWARDS[0]), AFTERWARDS[1])
            finally:
                card.disconnect(S.SCARD_RESET_CARD)

    # At APDU level the reader runs the card protocol: one protocol is enough.
    def test_extended_apdu_level(self):
        self.check_level(*LEVELS[0], protocols=(S.SCARD_PROTOCOL_T1,))

    def test_short_apdu_level(self):
        self.check_level(*LEVELS[1], protocols=(S.SCARD_PROTOCOL_T0,))

    def test_tpdu_level(self):
        self.check_level(*LEVELS[2])

    def test_character_level(self):
        self.check_level(*LEVELS[3])


HANG_UP_PROBES = [([0x80, 0x00, 0x04, 0x42, 0xF0], [0x42] * 0xF0 + OK),
                  ([0x80, 0x12, 0x01, 0x80, 0xC8] + seq(0xC8), OK)]
# What pcscd answers once the reader went away in the middle of a call (the
# card "unresponsive" when that was its power-up).
GONE_ERRORS = {S.SCARD_E_NOT_TRANSACTED, S.SCARD_E_READER_UNAVAILABLE, S.SCARD_W_UNRESPONSIVE_CARD}


class HangUpAtEveryStep(unittest.TestCase):
    """The reader goes away at the Kth command after the fault is set: during
    power-up, parameter setting, PPS, or any message of a T=1/T=0 exchange.
    Calls end at once with an error, pcscd stays up, the reader stays gone."""

    def test_hang_up_at_each_step_at_each_level(self):
        for profile, reader in LEVELS:
            for k in range(1, 9):
                with self.subTest(profile=profile, step=k):
                    with PrivatePCSCD("--profile", profile, env=dict(TEXTBOOK_CHARACTER_READER, SWIFTCCID_MAX_EXCHANGE_MS=str(CAP_MS))) as pcscd:
                        # Power the card down first, so the count starts at the next power-up.
                        with Context() as c:
                            c.connect(reader, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1).disconnect(S.SCARD_UNPOWER_CARD)
                        self.assertEqual(pcscd.sim("fault", "sim0", "hangup=%d" % k).returncode, 0)
                        with Context() as c:
                            for _ in range(8):
                                start = time.monotonic()
                                self.session(c, reader, S.SCARD_PROTOCOL_T1 if k % 2 else S.SCARD_PROTOCOL_T0)
                                self.assertLess(time.monotonic() - start, BOUND)
                        self.assertTrue(pcscd.pcscd_alive())
                        self.assertIn("device gone", pcscd.log_text())

    def session(self, c, reader, protocol):
        """Connect, two APDUs, disconnect: each step succeeds exactly or fails
        as a reader that went away makes it fail, and nothing runs after that."""
        try:
            card = c.connect(reader, protocol)
        except PCSCError as e:
            self.assertIn(e.rv, GONE_ERRORS, str(e))
            return
        try:
            for apdu, expected in HANG_UP_PROBES:
                if not answered(self, card, apdu, expected, GONE_ERRORS):
                    return
        finally:
            card.disconnect(S.SCARD_LEAVE_CARD)


def descriptor(hex_, **fields):
    """A real descriptor with some fields replaced by lies (offsets of CCID §5.1)."""
    b = bytearray.fromhex(hex_)
    offsets = {"maxMessage": 44, "maxIFSD": 28, "maxSlotIndex": 4}
    for name, value in fields.items():
        at = offsets[name]
        width = 1 if name == "maxSlotIndex" else 4
        b[at:at + width] = value.to_bytes(width, "little")
    return b.hex()


OMNIKEY_HEX = "36211001000703000000c0120000c012000001002a0000e74c06006afe0000000700000000000000ba0704000f010000ffff00000001"
CT30_HEX = "36210001000703000000a00f0000a00f000000002a000008f8010000fe0000000000000000000000300001000f010000000000000001"


class LyingDescriptors(unittest.TestCase):
    """Descriptors whose promises do not hold: the driver refuses or copes, pcscd stays up."""
    CONFIG = DIR + "-lies.json"

    def test_lies_in_the_descriptor(self):
        readers = [
            # Messages of 12 bytes: no APDU fits.
            {"descriptor": descriptor(OMNIKEY_HEX, maxMessage=12), "vendorID": "0x076B", "productID": "0x3031",
             "product": "Tiny messages"},
            # dwMaxIFSD 0 at TPDU level.
            {"descriptor": descriptor(CT30_HEX, maxIFSD=0), "vendorID": "0x08E6", "productID": "0x3437",
             "product": "No IFSD"},
            # 8 slots on a reader that has a card in the first only.
            {"descriptor": descriptor(CT30_HEX, maxSlotIndex=7), "vendorID": "0x08E6", "productID": "0x3437",
             "product": "Eight slots"},
        ]
        with open(self.CONFIG, "w") as f:
            json.dump({"readers": readers}, f)
        try:
            with PrivatePCSCD("--config", self.CONFIG, env=dict(TEXTBOOK_CHARACTER_READER, SWIFTCCID_MAX_EXCHANGE_MS=str(CAP_MS))) as pcscd:
                wait_for(lambda: len(reader_names()) >= 3, what="the lying readers")
                names = reader_names()
                with Context() as c:
                    for name in names:
                        start = time.monotonic()
                        self.one(c, name)
                        self.assertLess(time.monotonic() - start, 2 * BOUND, name)
                self.assertTrue(pcscd.pcscd_alive())
        finally:
            os.unlink(self.CONFIG)

    def one(self, c, name):
        """Each lie gets its exact outcome: with 12-byte messages not even the
        ATR fits (the card powers up "unresponsive"); a reader without an IFSD
        is given the card's; slots beyond the first are empty."""
        empty_slot = name.startswith("Eight slots") and not name.endswith(" 00")
        if empty_slot or name.startswith("Tiny messages"):
            with self.assertRaises(PCSCError) as caught:
                c.connect(name, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
            self.assertEqual(caught.exception.rv, S.SCARD_E_NO_SMARTCARD if empty_slot else S.SCARD_W_UNRESPONSIVE_CARD, name)
            return
        card = c.connect(name, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
        try:
            self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK, name)
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


if __name__ == "__main__":
    unittest.main()
