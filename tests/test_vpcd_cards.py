"""Real card applications behind simulated CCID readers: Debian's vicc (the
vsmartcard project's card emulator, its ISO 7816 card) and the OpenPGP card
application of PyPI's smartcard-app-openpgp (tests/openpgp_vpcd_card.py)
speaking the vpcd protocol to a slot of `ccid-sim --card vpcd:PORT`, at every
exchange level, over the relay and over USB (umockdev), through the real
pcscd to pyscard, opensc-tool, openpgp-tool and gpg (scdaemon); and Debian's
libccid on the same USB devices as the reference.

What vicc 3.3's ISO 7816 card can do decides the script: its SELECT with an
FCI (P2 00) and UPDATE BINARY raise Python exceptions inside vicc (a bug of
the card application, not of the transport), so the script selects with
P2 0C and reads a file it creates."""
import json
import os
import socket
import subprocess
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, PCSCError
from simharness import DIR, ROOT, PrivatePCSCD, reader_names, stop, wait_for
from test_usb import LIBCCID, named
from test_pcscd import DESCRIPTORS

VICC_ATR = [0x3B, 0x95, 0x13, 0x81, 0x01, 0x80, 0x73, 0xFF, 0x01, 0x00, 0x0B]
# Debian's python3-virtualsmartcard installs its package one folder too deep,
# and vicc needs PyCryptodome as `Crypto` (make pydeps puts it in build/pydeps).
VSC_PATH = "/usr/lib/python3/site-packages/virtualsmartcard"
PYDEPS = os.path.join(ROOT, "build", "pydeps")
VICC_PATH = os.path.join(PYDEPS, "vicc") + ":" + VSC_PATH
OPENPGP_PATH = os.path.join(PYDEPS, "openpgp")
CREATE_EF_1234 = bytes.fromhex("00E000000D620B8002010082010183021234")   # transparent EF 1234, 256 bytes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CardProcess:
    """A card emulator's process for the length of a `with` block."""

    def __init__(self, args, pythonpath, log):
        self.args, self.pythonpath, self.log = args, pythonpath, log

    def __enter__(self):
        env = dict(os.environ, PYTHONPATH=self.pythonpath)
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.out, stderr=subprocess.STDOUT, env=env)
        return self

    def __exit__(self, *exc):
        stop(self.proc, timeout=10)
        self.out.close()
        return False

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Vicc(CardProcess):
    """vicc: it connects to the slot's port, or with `reversed` listens for the slot to connect."""

    def __init__(self, port, reversed=False):
        super().__init__(["vicc", "--type", "iso7816", "--port", str(port)] + (["--reversed"] if reversed else []),
                         VICC_PATH, "%s.vicc-%d.log" % (DIR, port))


class OpenPGPCard(CardProcess):
    """The OpenPGP card application, a blank card each time, connecting to the slot's port."""

    def __init__(self, port):
        super().__init__(["/usr/bin/python3", os.path.join(ROOT, "tests", "openpgp_vpcd_card.py"), str(port)],
                         OPENPGP_PATH, "%s.openpgp-%d.log" % (DIR, port))


def present(reader):
    with Context() as c:
        return bool(c.state(reader) & S.SCARD_STATE_PRESENT)


def iso7816_script(test, reader):
    """vicc's ISO 7816 card through the reader: ATR, PIN, a file created,
    selected and read (256 bytes: several T=1 blocks, or a chained reply),
    and the card's exact errors."""
    with Context() as c:
        card = c.connect(reader)
        test.assertEqual(card.protocol, S.SCARD_PROTOCOL_T1)   # vicc's ATR offers T=1 only
        test.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), VICC_ATR)
        test.assertEqual(card.transmit(bytes.fromhex("0020000004313233FF")), [0x63, 0x00], "wrong PIN")
        test.assertEqual(card.transmit(bytes.fromhex("002000000431323334")), OK, "PIN 1234")
        test.assertEqual(card.transmit(CREATE_EF_1234), OK)
        test.assertEqual(card.transmit(bytes.fromhex("00A4000C021234")), OK)
        test.assertEqual(card.transmit(bytes.fromhex("00B0000000")), [0] * 256 + OK, "READ BINARY 256")
        test.assertEqual(card.transmit(bytes.fromhex("00B000F020")), [0] * 16 + [0x62, 0x82], "end of file")
        test.assertEqual(card.transmit(bytes.fromhex("00B0010000")), [0x6B, 0x00], "offset past the end")
        test.assertEqual(card.transmit(bytes.fromhex("00A4040007A000000397425400")), [0x6A, 0x82], "no such AID")
        test.assertEqual(card.transmit(bytes.fromhex("80100000")), [0x6D, 0x00], "unknown INS")
        challenge = card.transmit(bytes.fromhex("0084000008"))
        # The card's own random bytes: only their count and the status are known (a replay knows them all).
        test.assertEqual((len(challenge), challenge[-2:]), (10, OK), "GET CHALLENGE")
        card.disconnect()
    return challenge


def opensc_script(test, reader_index=0):
    """opensc-tool against the same card: its ATR, then the file vicc created."""
    atr = subprocess.run(["opensc-tool", "--reader", str(reader_index), "--atr"], capture_output=True, text=True, timeout=30)
    test.assertEqual(atr.stdout.strip(), ":".join("%02x" % b for b in VICC_ATR), atr.stderr)
    out = subprocess.run(["opensc-tool", "--reader", str(reader_index), "--send-apdu", "00:A4:00:0C:02:12:34",
                          "--send-apdu", "00:B0:00:F8:08"], capture_output=True, text=True, timeout=30)
    test.assertEqual(out.returncode, 0, out.stderr)
    answers = [line.strip() for line in out.stdout.splitlines() if line.startswith("Received")]
    test.assertEqual(answers, ["Received (SW1=0x90, SW2=0x00)", "Received (SW1=0x90, SW2=0x00):"], out.stdout)
    test.assertIn("00 00 00 00 00 00 00 00", out.stdout)


# The application's one known fault: GET DATA FA (algorithm information, which
# gpg --card-status asks for) raises inside it and is answered 6F00; gpg goes on.
ALGORITHM_INFO_BUG = "TypeError: byte indices must be integers or slices, not str"
KEY_NOT_READY = "ValueError: key not ready yet"
OPENPGP_ATR = list(bytes.fromhex("3BDA11FF81B1FE551F030031C873FB11DF0190009D"))
OPENPGP_SELECT = bytes.fromhex("00A4040006D2760001240100")


def openpgp_script(test, reader):
    """The OpenPGP application through the reader, as pyscard sends it: its
    AID (the serial number in it is the card's own random pick), PINs, the
    cardholder's name written and read back, the PIN status, and an X25519
    key pair generated on the card (its public point is the card's)."""
    with Context() as c:
        card = c.connect(reader)
        test.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING), OPENPGP_ATR)

        def get(apdu):
            # This application answers GET DATA with 61xx (also under T=1): fetch as gpg does.
            first = card.transmit(apdu)
            test.assertEqual(first[0], 0x61, "GET DATA %s" % bytes(apdu).hex())
            return card.transmit([0x00, 0xC0, 0x00, 0x00, first[1]])
        fci = card.transmit(OPENPGP_SELECT)
        test.assertEqual((fci[:6], fci[-11:]), ([0x6F, 0x1D, 0x64, 0x1B, 0x4F, 0x10], [0x50, 0x07] + list(b"OPENPGP") + OK))
        aid = get(bytes.fromhex("00CA004F00"))
        test.assertEqual((len(aid), aid[:9], aid[-4:]), (18, list(bytes.fromhex("D276000124010341FF")), [0, 0] + OK))
        test.assertEqual(card.transmit(bytes.fromhex("00200081053030303030")), [0x69, 0x82], "wrong PW1")
        test.assertEqual(card.transmit(bytes.fromhex("0020008106313233343536")), OK, "PW1 123456")
        test.assertEqual(card.transmit(bytes.fromhex("00200083083132333435363738")), OK, "PW3 12345678")
        test.assertEqual(card.transmit(bytes.fromhex("00DA005B0A") + b"Test<<Card"), OK, "PUT DATA name")
        test.assertEqual(get(bytes.fromhex("00CA006500")), [0x5B, 0x0A] + list(b"Test<<Card") + [0x5F, 0x2D, 0x00, 0x5F, 0x35, 0x01, 0x39] + OK)
        test.assertEqual(get(bytes.fromhex("00CA00C400")), [0x00, 0x7F, 0x7F, 0x7F, 0x03, 0x00, 0x03] + OK, "PW status")
        # The application makes key pairs ahead in a thread; until the one asked for is
        # ready it answers 6F00 (its "key not ready yet"). A fresh card may need a moment.
        limit = time.monotonic() + 30
        while True:
            key = card.transmit(bytes.fromhex("0047800002B80000"))
            if key != [0x6F, 0x00] or time.monotonic() > limit:
                break
            time.sleep(0.2)
        test.assertEqual((len(key), key[:5], key[-2:]), (39, [0x7F, 0x49, 0x22, 0x86, 0x20], OK), "GENERATE X25519")
        card.disconnect()


SHORT_APDU_ONLY = "cherry-st-short"
# scdaemon asks for the login data with an extended Le (GET DATA 5E, Le 65535) since the card
# offers extended lengths; a reader that carries short APDUs only must refuse it, and does under
# both drivers. gpg then gives up on the card ("Card removed") or, now and then, hangs after
# scdaemon reports the removal (gnupg 2.2.40's doing): behind that reader the test sends the
# refused APDU itself instead of running gpg.
EXTENDED_REFUSED = "reader exchanges short APDUs only; this APDU is extended (Nc 0, Ne 65535)"


def extended_get_data_refused(test, reader, pcscd):
    """scdaemon's GET DATA 5E with Le 65535 behind a short-APDU reader: refused by the driver."""
    with Context() as c:
        card = c.connect(reader)
        test.assertEqual(card.transmit(OPENPGP_SELECT)[-2:], OK)
        with test.assertRaises(PCSCError) as refused:
            card.transmit(bytes.fromhex("00CA005E00FFFF"))
        test.assertIn(refused.exception.rv, (S.SCARD_E_NOT_TRANSACTED, S.SCARD_E_INVALID_PARAMETER))
        card.disconnect()
    if "libswiftccid.so" in pcscd.log_text():
        test.assertIn(EXTENDED_REFUSED, pcscd.log_text())


def gpg_card_status(test, gnupghome):
    """gpg --card-status through scdaemon's PC/SC access (its own CCID driver off)."""
    os.makedirs(gnupghome, mode=0o700, exist_ok=True)
    scd_log = os.path.join(gnupghome, "scdaemon.log")
    with open(os.path.join(gnupghome, "scdaemon.conf"), "w") as f:
        f.write("disable-ccid\npcsc-shared\nlog-file %s\ndebug-level basic\n" % scd_log)
    env = dict(os.environ, GNUPGHOME=gnupghome)
    try:
        out = subprocess.run(["gpg", "--batch", "--card-status"], capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        with open(scd_log, errors="replace") as f:
            test.fail("gpg --card-status did not finish in 120 s; scdaemon's log ends:\n" + f.read()[-3000:])
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, timeout=30)
    test.assertEqual(out.returncode, 0, out.stderr)
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    fields = {k.rstrip(" ."): v.strip() for k, v in fields.items()}
    for key, value in (("Application type", "OpenPGP"), ("Version", "3.41"), ("Name of cardholder", "Card Test"),
                       ("Key attributes", "rsa2048 cv25519 rsa2048"), ("PIN retry counter", "3 0 3"),
                       ("Signature key", "[none]"), ("Authentication key", "[none]")):
        test.assertEqual(fields.get(key), value, "%s in %s" % (key, out.stdout))
    # gpg learns a key's fingerprint when it generates it; one generated by a bare APDU has none on the card.
    test.assertEqual(fields.get("Encryption key"), "[none]")
    return out.stdout


def openpgp_tools(test, pcscd, profile):
    """opensc's openpgp-tool: the cardholder's name and the application's
    identity. It too reads with extended lengths, which a short-APDU reader refuses."""
    out = subprocess.run(["openpgp-tool", "--reader", "0"], capture_output=True, text=True, timeout=30)
    if profile == SHORT_APDU_ONLY:
        test.assertEqual((out.returncode, out.stderr.strip()), (1, "error: failed to select EF 3F00:0065:005B: Transmit failed"))
        test.assertIn("reader exchanges short APDUs only; this APDU is extended", pcscd.log_text())
        return
    test.assertEqual(out.returncode, 0, out.stderr)
    test.assertIn("Name:            Test Card", out.stdout)
    out = subprocess.run(["openpgp-tool", "--reader", "0", "-C"], capture_output=True, text=True, timeout=30)
    test.assertIn("Version:         3.41", out.stdout)
    test.assertIn("AID:             d2:76:00:01:24:01:03:41:ff:", out.stdout)


class VpcdCardsOverRelay(unittest.TestCase):
    """vicc in a slot of a relay reader of each exchange level; removal and
    reinsertion as the card process goes and comes; vicc --reversed."""
    PROFILES = ("omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "o2micro-oz776-char")

    def test_vicc_at_every_exchange_level(self):
        for profile in self.PROFILES:
            with self.subTest(profile=profile):
                port = free_port()
                with PrivatePCSCD("--profile", profile, "--card", "vpcd:%d" % port) as pcscd:
                    reader = reader_names()[0]
                    self.assertFalse(present(reader), "a slot waiting for a card process is empty")
                    with Vicc(port) as vicc:
                        wait_for(lambda: present(reader), what="vicc inserted")
                        iso7816_script(self, reader)
                        opensc_script(self)
                        self.assertNotIn("Traceback", vicc.text())
                    wait_for(lambda: not present(reader), what="removal when vicc exits")
                    listing = pcscd.sim("list").stdout
                    self.assertIn("vpcd:%d (no card connected)" % port, listing)
                    with Vicc(port):
                        wait_for(lambda: present(reader), what="the next vicc inserted")
                        with Context() as c:
                            card = c.connect(reader)
                            self.assertEqual(card.transmit(bytes.fromhex("002000000431323334")), OK)
                            card.disconnect()
                    self.assertTrue(pcscd.pcscd_alive())

    def test_openpgp_card_at_every_exchange_level(self):
        for profile in self.PROFILES:
            with self.subTest(profile=profile):
                port = free_port()
                with PrivatePCSCD("--profile", profile, "--card", "vpcd:%d" % port) as pcscd, OpenPGPCard(port) as app:
                    reader = reader_names()[0]
                    wait_for(lambda: present(reader), what="the OpenPGP card inserted")
                    openpgp_script(self, reader)
                    if profile == SHORT_APDU_ONLY:
                        extended_get_data_refused(self, reader, pcscd)
                    else:
                        gpg_card_status(self, DIR + ".gnupg-%s" % profile)
                    openpgp_tools(self, pcscd, profile)
                    self.assertTrue(pcscd.pcscd_alive())
                    log = app.text()
                    self.assertEqual(log.count("unhandled exception"), log.count(ALGORITHM_INFO_BUG) + log.count(KEY_NOT_READY))

    def test_vicc_reversed_and_inserted_at_run_time(self):
        port = free_port()
        with PrivatePCSCD("--card", "none") as pcscd, Vicc(port, reversed=True) as vicc:
            reader = reader_names()[0]
            r = pcscd.sim("insert", "sim0", "--card", "vpcd-connect:127.0.0.1:%d" % port)
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_for(lambda: present(reader), what="ccid-sim connected to vicc --reversed")
            iso7816_script(self, reader)
            # Replacing the card closes the vpcd link: vicc waits for the next one.
            self.assertEqual(pcscd.sim("insert", "sim0", "--card", "compliance").returncode, 0)
            with Context() as c:
                card = c.connect(reader)
                self.assertEqual(card.attribute(S.SCARD_ATTR_ATR_STRING)[:2], [0x3B, 0xD6])
                card.disconnect()
            self.assertNotIn("Traceback", vicc.text())

    def test_a_port_in_use_is_a_clear_error(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            proc = subprocess.run([os.path.join(ROOT, "build", "ccid-sim"), "serve", "--dir", DIR + "-busy",
                                   "--card", "vpcd:%d" % port], capture_output=True, text=True, timeout=20)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("listen on 127.0.0.1:%d" % port, proc.stderr)


class RecordAndReplay(unittest.TestCase):
    """`--record` a session with vicc at TPDU level; `--card replay:FILE`
    answers it again, the card's random bytes included, behind an
    APDU-level reader; the first command off the recording gets 6F 00.
    A recording kept in the tree (tests/data/vicc-iso7816.jsonl, made so
    from Debian's vicc) replays too."""
    RECORDING = os.path.join(ROOT, "tests", "data", "vicc-iso7816.jsonl")

    def replay(self, path, profile):
        with PrivatePCSCD("--profile", profile, "--card", "replay:" + path) as pcscd:
            challenge = iso7816_script(self, reader_names()[0])
            with Context() as c:
                card = c.connect(reader_names()[0])
                self.assertEqual(card.transmit(bytes.fromhex("00A4000C023F00")), [0x6F, 0x00])
                card.disconnect()
            self.assertIn("exchange 11 00 A4 00 0C 02 3F 00 is past the recording's 10; answering 6F00",
                          pcscd.sim_log_text())
            return challenge

    def test_record_then_replay_elsewhere(self):
        path = DIR + ".recording.jsonl"
        port = free_port()
        with PrivatePCSCD("--profile", "gemalto-ct30-tpdu", "--card", "vpcd:%d" % port, "--record", path):
            reader = reader_names()[0]
            with Vicc(port):
                wait_for(lambda: present(reader), what="vicc inserted")
                recorded = iso7816_script(self, reader)
            wait_for(lambda: not present(reader), what="removal when vicc exits")
        with open(path) as f:
            events = [json.loads(line)["event"] for line in f]
        self.assertEqual(events[:2], ["insert", "power-on"])
        self.assertEqual(events.count("apdu"), 10)
        self.assertEqual(events[-1], "remove")
        self.assertEqual(self.replay(path, "omnikey-3121-extended"), recorded)
        os.unlink(path)

    def test_the_recording_in_the_tree_replays(self):
        with open(self.RECORDING) as f:
            recorded = [json.loads(line) for line in f]
        challenge = [e for e in recorded if e.get("command") == "0084000008"][0]["response"]
        self.assertEqual(self.replay(self.RECORDING, "cherry-st-short"), list(bytes.fromhex(challenge)))


class VpcdCardsOverUSB(unittest.TestCase):
    """The same card behind USB readers (umockdev) of each exchange level,
    with our driver and with Debian's libccid on the same devices."""
    CONFIG = "/tmp/sccid-vpcd-%d.json" % os.getpid()
    PROFILES = ("omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "winbond-char")

    def args(self, profile, port):
        if profile != "winbond-char":
            return ["--usb", "--profile", profile, "--card", "vpcd:%d" % port]
        # A character-level reader whose VID:PID both drivers list (from the corpus).
        with open(self.CONFIG, "w") as f:
            json.dump({"readers": [{"descriptorFile": DESCRIPTORS, "entry": "Winbond.txt",
                                    "cards": ["vpcd:%d" % port]}]}, f)
        return ["--usb", "--config", self.CONFIG]

    def run_script(self, profile, driver):
        port = free_port()
        extra = ["--driver", driver] if driver else []
        with PrivatePCSCD(*(self.args(profile, port) + extra), env={"SWIFTCCID_MAX_EXCHANGE_MS": "20000"}) as pcscd:
            self.assertIn("libccid.so" if driver else "libswiftccid.so", pcscd.log_text())
            reader = named("SIM1000")
            with Vicc(port) as vicc:
                wait_for(lambda: present(reader), timeout=20, what="vicc inserted")
                iso7816_script(self, reader)
                self.assertNotIn("Traceback", vicc.text())
            wait_for(lambda: not present(reader), timeout=20, what="removal when vicc exits")
            with OpenPGPCard(port):
                wait_for(lambda: present(reader), timeout=20, what="the OpenPGP card inserted")
                openpgp_script(self, reader)
                if profile == SHORT_APDU_ONLY:
                    extended_get_data_refused(self, reader, pcscd)
                else:
                    gpg_card_status(self, "%s.gnupg-usb-%s-%s" % (DIR, profile, "libccid" if driver else "ours"))

    def test_vicc_over_usb_with_our_driver(self):
        for profile in self.PROFILES:
            with self.subTest(profile=profile):
                self.run_script(profile, None)

    @unittest.skipUnless(os.path.isdir(LIBCCID), "Debian's libccid is not installed")
    def test_vicc_over_usb_with_libccid(self):
        for profile in self.PROFILES:
            with self.subTest(profile=profile):
                self.run_script(profile, LIBCCID)

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.CONFIG):
            os.unlink(cls.CONFIG)


if __name__ == "__main__":
    unittest.main()
