"""USB ICCD tokens (bInterfaceProtocol 1 and 2: class requests on the control
pipe, no bulk pipes) from the corpus, as simulated tokens through pcscd:
the SchlumbergerSema e-gate (version A: T=0, a status byte to poll) and the
Gemalto PDT (version B: APDUs, chained, answers that ask to poll later).
Our driver on the relay, over umockdev and through attach workers; Debian's
libccid on the same USB devices as the reference; the requests on the wire."""
import json
import os
import subprocess
import tempfile
import unittest

from smartcard import scard as S

from pcsc import OK, SELECT_TEST_APPLET, Context, PCSCError, seq
from simharness import DIR, ROOT, PrivatePCSCD, reader_names, wait_for
from test_attach import ATTACH, WORKERS, exec_start
from test_usb import named

CORPUS = os.path.join(ROOT, "data", "ccid-readers", "descriptors.json")
LIBCCID = "/usr/lib/pcsc/drivers/ifd-ccid.bundle"
# (corpus entry, ICCD version, pcscd's name for it over USB)
E_GATE = ("e-gate.txt", "A", "SchlumbergerSema")
PDT = ("Gemalto_PDT.txt", "B", "Gemalto PDT")
FOUR_K = [0x80, 0x00, 0x04, 0x5A, 0x00, 0x10, 0x00]


def config(*tokens, cards=("compliance",)):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"readers": [{"descriptorFile": CORPUS, "entry": entry, "iccd": version, "cards": list(cards)}
                           for entry, version, _ in tokens]}, f)
    f.close()
    return f.name


def t0(card, apdu):
    """Under T=0 a case 4 answers 61xx: the data comes by GET RESPONSE, as an application fetches it."""
    r = card.transmit(apdu)
    if card.protocol == S.SCARD_PROTOCOL_T0 and len(r) == 2 and r[0] == 0x61:
        r = card.transmit([0x00, 0xC0, 0x00, 0x00, r[1]])
    return r


def short_script():
    """(name, APDU, exact answer): SELECT, cases 1 to 4, and a command that keeps the card busy 8 × 50 ms."""
    return [("SELECT", SELECT_TEST_APPLET, OK),
            ("case 1", [0x80, 0x30, 0x00, 0x00], OK),
            ("case 2", [0x80, 0x34, 0x00, 0xFF, 0xFF], seq(255) + OK),
            ("case 2, 256", [0x80, 0x34, 0x01, 0x00, 0x00], seq(256) + OK),
            ("case 3", [0x80, 0x32, 0x00, 0x00, 0xFF] + seq(255), OK),
            ("case 4", [0x80, 0x36, 0x00, 0x10, 0x10] + seq(16) + [0x00], seq(16) + OK),
            ("busy card", [0x80, 0x38, 0x00, 0x08], OK)]


class ICCDTokens(unittest.TestCase):
    def check_ours(self, reader, version):
        with Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
            self.assertEqual(card.protocol, S.SCARD_PROTOCOL_T0 if version == "A" else S.SCARD_PROTOCOL_T1)
            for name, apdu, expected in short_script():
                self.assertEqual(t0(card, apdu), expected, name)
            # Extended APDUs: version A under T=0 in ENVELOPE / GET RESPONSE, version B chained.
            self.assertEqual(t0(card, FOUR_K), [0x5A] * 4096 + OK)
            self.assertEqual(t0(card, [0x80, 0x3A, 0x00, 0x00, 0x00, 0x10, 0x00] + seq(4096)), OK)
            card.disconnect(S.SCARD_RESET_CARD)

    def test_relay_tokens_under_our_driver(self):
        with PrivatePCSCD("--config", config(E_GATE, PDT)) as pcscd:
            wait_for(lambda: len(reader_names()) == 2, what="both tokens")
            names = sorted(reader_names())
            self.assertIn("ICCD version A: power off, on, off at open", pcscd.log_text())
            self.assertIn("ICCD version B: power off, on, off at open", pcscd.log_text())
            self.check_ours(next(n for n in names if "[sim0]" in n), "A")
            self.check_ours(next(n for n in names if "[sim1]" in n), "B")

    def test_usb_tokens_under_our_driver_and_libccid(self):
        """Over umockdev: ours answers everything; libccid, on the same devices,
        answers the short APDUs alike (its extended-APDU results are printed, not asserted)."""
        with PrivatePCSCD("--config", config(E_GATE, PDT), "--usb", wait_for_readers=False):
            wait_for(lambda: len(reader_names()) == 2, what="both tokens")
            self.check_ours(named("SIM1000"), "A")
            self.check_ours(named("SIM1001"), "B")
        seen = []
        with PrivatePCSCD("--config", config(E_GATE, PDT), "--usb", "--driver", LIBCCID, wait_for_readers=False):
            wait_for(lambda: len(reader_names()) == 2, what="both tokens under libccid")
            for serial, version in (("SIM1000", "A"), ("SIM1001", "B")):
                with Context() as c:
                    card = c.connect(named(serial), S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
                    for name, apdu, expected in short_script():
                        self.assertEqual(t0(card, apdu), expected, "libccid, ICCD-%s, %s" % (version, name))
                    try:
                        r = t0(card, FOUR_K)
                        seen.append("ICCD-%s 4 KiB case 2E: %d bytes, %s" % (version, len(r), "right" if r == [0x5A] * 4096 + OK else "wrong"))
                    except PCSCError as e:
                        seen.append("ICCD-%s 4 KiB case 2E: %s" % (version, e))
        print("\nlibccid: " + "; ".join(seen))

    def test_worker_mode_relays_the_control_requests(self):
        os.makedirs(WORKERS, exist_ok=True)
        env = {"SWIFTCCID_USB_WORKERS": "1", "SWIFTCCID_RELAY_DIR": WORKERS}
        workers = []
        with PrivatePCSCD("--config", config(E_GATE, PDT), "--usb", env=env, wait_for_readers=False) as pcscd:
            try:
                instances = ("001-002", "001-003")
                # As systemd would: the workers start once the devices are there.
                nodes = [os.path.join(pcscd.umockdev_dir, "dev", "bus", "usb", *i.split("-")) for i in instances]
                wait_for(lambda: all(os.path.exists(n) for n in nodes), what="both tokens' nodes")
                for instance in instances:
                    argv = exec_start(instance)
                    argv[0] = ATTACH
                    workers.append(subprocess.Popen(argv, env=dict(pcscd.mock_env(), SWIFTCCID_RELAY_DIR=WORKERS),
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
                    sock = os.path.join(WORKERS, "usb-%s.sock" % instance)
                    wait_for(lambda: os.path.exists(sock) or workers[-1].poll() is not None, what=sock)
                try:
                    wait_for(lambda: len(reader_names()) == 2, timeout=20, what="both tokens through their workers")
                except AssertionError:
                    for w in workers:
                        w.terminate()
                    raise AssertionError("workers: %r; pcscd: %s" % ([w.communicate(timeout=10)[1][-1500:] for w in workers],
                                                                     pcscd.log_text()[-3000:]))
                self.assertIn("via usb:0973/0003:libudev:0:/dev/bus/usb/001/002", pcscd.log_text())
                self.check_ours(named("SIM1000"), "A")
                self.check_ours(named("SIM1001"), "B")
                out = subprocess.run([ATTACH, "doctor", "--drivers", os.path.join(ROOT, "build"), "001-003"],
                                     capture_output=True, text=True, timeout=30,
                                     env=dict(pcscd.mock_env(), SWIFTCCID_RELAY_DIR=WORKERS)).stdout
                self.assertIn("  - a USB ICCD version B token: no bulk pipes, every exchange a class request on the "
                              "control pipe (docs/iccd.md)\n", out)
            finally:
                for w in workers:
                    w.terminate()
                    w.wait(timeout=10)
                    w.stderr.close()

    def test_token_without_a_chip_then_with_one(self):
        """No interrupt endpoint: pcscd polls the token's status; the chip comes and goes."""
        with PrivatePCSCD("--config", config(PDT, cards=[None])) as pcscd:
            name = reader_names()[0]
            with Context() as c:
                self.assertEqual(c.state(name) & S.SCARD_STATE_EMPTY, S.SCARD_STATE_EMPTY)
                self.assertEqual(pcscd.sim("insert", "sim0", "--card", "compliance").returncode, 0)
                wait_for(lambda: c.state(name) & S.SCARD_STATE_PRESENT, what="the chip seen")
                card = c.connect(name, S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                card.disconnect(S.SCARD_LEAVE_CARD)
                self.assertEqual(pcscd.sim("remove", "sim0").returncode, 0)
                wait_for(lambda: c.state(name) & S.SCARD_STATE_EMPTY, what="the chip gone")


def control_trace(pcap):
    """(bRequest, wValue, data out, answer) of each class request in the capture, as hex strings."""
    out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "usb.urb_type", "-e", "usb.bmRequestType",
                          "-e", "usb.setup.bRequest", "-e", "usb.setup.wValue", "-e", "usb.data_fragment",
                          "-e", "usb.control.Response"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("tshark: " + out.stderr)
    trace, pending = [], None
    for line in out.stdout.splitlines():
        urb, rtype, request, value, data, answer = (line + "\t" * 6).split("\t")[:6]
        if urb == "'S'" and rtype in ("0x21", "0xa1"):
            pending = ("%02x" % int(request), value[2:], data)
        elif urb == "'C'" and pending:
            trace.append(pending + (answer,))
            pending = None
    return trace


class ICCDWire(unittest.TestCase):
    """The class requests each version's exchange is made of, from ccid-sim's capture."""
    PCAP = DIR + ".iccd.pcap"

    def tearDown(self):
        if os.path.exists(self.PCAP):
            os.unlink(self.PCAP)

    def exchange(self, token, apdus):
        with PrivatePCSCD("--config", config(token), "--pcap", self.PCAP):
            with Context() as c:
                card = c.connect(reader_names()[0], S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
                self.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
                for apdu, expected in apdus:
                    self.assertEqual(card.transmit(apdu), expected)
                card.disconnect(S.SCARD_LEAVE_CARD)
        trace = control_trace(self.PCAP)
        start = trace.index(next(t for t in trace if t[0] == "65" and t[2].startswith("00a40400")))
        return trace[start:]

    def test_version_a_header_status_data_status_word(self):
        trace = self.exchange(E_GATE, [([0x80, 0x32, 0x00, 0x00, 0x10] + seq(16), OK),
                                       ([0x80, 0x34, 0x00, 0x04, 0x04], seq(4) + OK)])
        case3 = trace.index(("65", "0000", "8032000010", ""))
        self.assertEqual(trace[case3:case3 + 5], [
            ("65", "0000", "8032000010", ""),        # the header
            ("a0", "0000", "", "10"),                # the card wants the data
            ("65", "0000", bytes(seq(16)).hex(), ""),
            ("a0", "0000", "", "20"),                # SW1 SW2 ready
            ("6f", "0000", "", "9000")])
        case2 = trace.index(("65", "0000", "8034000404", ""))
        self.assertEqual(trace[case2:case2 + 5], [
            ("65", "0000", "8034000404", ""),
            ("a0", "0000", "", "10"),                # the card has data
            ("6f", "0000", "", "00010203"),
            ("a0", "0000", "", "20"),
            ("6f", "0000", "", "9000")])

    def test_version_b_chains_and_polls(self):
        busy = [0x80, 0x38, 0x00, 0x04]
        long_case3 = [0x80, 0x32, 0x00, 0x00, 0xFF] + seq(255)
        trace = self.exchange(PDT, [(busy, OK), (long_case3, OK)])
        at = trace.index(("65", "0000", "80380004", ""))
        # 200 ms of work: the token asks twice to poll again after 100 ms (0x000A × 10 ms).
        self.assertEqual(trace[at:at + 4], [
            ("65", "0000", "80380004", ""),
            ("6f", "0000", "", "800a00"),
            ("6f", "0000", "", "800a00"),
            ("6f", "0000", "", "009000")])
        apdu = bytes(long_case3).hex()
        at = trace.index(("65", "0100", apdu[:502], ""))
        # 260 bytes in pieces of dwMaxCCIDMessageLength - 10 = 251: "begins" then "ends", in wValue's high byte.
        self.assertEqual(trace[at:at + 4], [
            ("65", "0100", apdu[:502], ""),
            ("6f", "0000", "", "10"),
            ("65", "0200", apdu[502:], ""),
            ("6f", "0000", "", "009000")])


if __name__ == "__main__":
    unittest.main()
