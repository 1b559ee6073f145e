"""Test glue for the quirk tests: a simulated reader with a real device's
identity, descriptor and firmware release (data/ccid-readers) and the
defect a quirk exists for (ccid-sim's "firmwareBugs"), under pcscd with the
quirks as shipped or some switched off; and the exchanges the tests make."""
import json
import os
import subprocess
import tempfile

from smartcard import scard as S

from pcsc import OK, SELECT_TEST_APPLET, Context, features, seq, tlv_properties
from simharness import DIR, ROOT, SIM, PrivatePCSCD, reader_names, wait_for
from test_capture import ccid_messages

ATTACH = os.path.join(ROOT, "build", "ccid-attach")
CORPUS = os.path.join(ROOT, "data", "ccid-readers", "descriptors.json")
VERIFY_FEATURE, MODIFY_FEATURE, TLV_FEATURE = 0x06, 0x07, 0x12
T0_OR_T1 = S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1


def case2(n):
    """The test card's case 2 for n (1–256) bytes: command and exact answer."""
    return [0x80, 0x34, n >> 8 & 1, n & 0xFF, n & 0xFF], seq(n) + OK


def case2e(n, value=0x5A):
    """The test card's extended case 2: `value` n times."""
    return [0x80, 0x00, 0x04, value, 0x00, n >> 8, n & 0xFF], [value] * n + OK


def descriptor(entry):
    with open(CORPUS) as f:
        return next(e["descriptor_hex"] for e in json.load(f) if e["file"] == entry)


def with_features(hex_descriptor, features):
    """The descriptor with another dwFeatures (offset 40, little-endian): a firmware release's own."""
    raw = bytearray.fromhex(hex_descriptor)
    raw[40:44] = features.to_bytes(4, "little")
    return raw.hex()


class Reader:
    """One simulated reader (`ccid-sim pcscd --config`) under pcscd, quirks as
    shipped or some switched off; `name` is its PC/SC name once listed."""

    def __init__(self, entry, bcd, bugs=(), off=None, features=None, expect_listed=True, pcap=None, card="compliance",
                 usb=False, cards=None):
        self.config = {"descriptorFile": CORPUS, "entry": entry, "bcdDevice": "0x%04X" % bcd,
                       "firmwareBugs": list(bugs), "cards": cards if cards is not None else [card]}
        if features is not None:
            self.config["descriptor"] = with_features(descriptor(entry), features)
            del self.config["descriptorFile"], self.config["entry"]
            vid, pid = entry_ids(entry)
            self.config.update(vendorID=vid, productID=pid)
        self.env = {"SWIFTCCID_QUIRKS_OFF": off} if off else {}
        self.expect_listed = expect_listed
        self.args = (["--pcap", pcap] if pcap else []) + (["--usb"] if usb else [])

    def __enter__(self):
        self.file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"readers": [self.config]}, self.file)
        self.file.close()
        self.pcscd = PrivatePCSCD("--config", self.file.name, *self.args, env=self.env,
                                  wait_for_readers=self.expect_listed)
        self.pcscd.__enter__()
        names = reader_names()
        self.name = names[0] if names else None
        return self

    def __exit__(self, *exc):
        self.pcscd.__exit__(*exc)
        os.unlink(self.file.name)
        return False

    def counts(self):
        """Bulk-out and bulk-in messages the reader has seen so far."""
        out = subprocess.run([SIM, "list", "--counts", "--dir", DIR], capture_output=True, text=True, check=True).stdout
        return tuple(int(x) for x in out.splitlines()[0].split("\t")[2:4])

    def refused(self, why):
        """The driver refused the reader at open, saying `why` in pcscd's log."""
        wait_for(lambda: why in self.pcscd.log_text(), timeout=15, what="the driver's refusal in pcscd's log")
        return reader_names() == []


def entry_ids(entry):
    with open(CORPUS) as f:
        e = next(e for e in json.load(f) if e["file"] == entry)
    return e["idVendor"], e["idProduct"]


def transmit(reader, apdu, protocols=T0_OR_T1):
    """The test applet selected, then `apdu`'s answer."""
    with Context() as c:
        card = c.connect(reader, protocols)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            return card.transmit(apdu)
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


def session(r, apdu, answer, protocols=T0_OR_T1):
    """Connect, SELECT, `apdu` (its exact answer checked): the protocol pcscd
    settled on and the reader's message counts before the disconnect."""
    with Context() as c:
        card = c.connect(r.name, protocols)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            assert card.transmit(apdu) == answer, "wrong answer to %s" % bytes(apdu).hex()
            return card.protocol, r.counts()
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


def ifs_requests(pcap):
    """How many S(IFS request) blocks the host sent (XfrBlock 0x6F whose T=1 PCB, after 10 header bytes and NAD, is 0xC1)."""
    return sum(1 for kind, line in ccid_messages(pcap, raw=True) if kind == "0x6f" and line[22:24] == "c1")


def feature_tags(reader):
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            return set(features(card)), tlv_properties(card)
        finally:
            card.disconnect(S.SCARD_LEAVE_CARD)


def set_parameters(pcap):
    """abProtocolData of every SetParameters (0x61) the host sent, as bytes."""
    return [bytes.fromhex(line[20:]) for kind, line in ccid_messages(pcap, raw=True) if kind == "0x61"]


def pin_verify(validation=0x02, messages=0x01, extra=0x0408):
    """PIN_VERIFY_STRUCTURE (PC/SC Part 10) for the test card's VERIFY, PIN of 4 to 8 ASCII digits, 8-byte block."""
    apdu = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
    return [0x1E, 0x00, 0x82, 0x08, 0x00, extra & 0xFF, extra >> 8, validation, messages, 0x09, 0x04, 0x00,
            0x00, 0x00, 0x00, len(apdu), 0, 0, 0] + apdu


def pin_modify(validation=0x02, messages=0x03):
    """PIN_MODIFY_STRUCTURE: old and new PIN, the new one entered twice."""
    apdu = [0x00, 0x24, 0x00, 0x01, 0x10] + [0xFF] * 16
    return [0x1E, 0x00, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, validation, messages, 0x09, 0x04,
            0x00, 0x01, 0x02, 0, 0, 0, len(apdu), 0, 0, 0] + apdu


def pin_entry(reader, feature, structure):
    """The answer to a PIN entry on the pad (the simulated user types 1234), after SELECT."""
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            assert card.transmit(SELECT_TEST_APPLET) == OK
            return card.control(features(card)[feature], structure)
        finally:
            card.disconnect(S.SCARD_RESET_CARD)


def escape(reader, command):
    """SCardControl(IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE): a CCID Escape, its answer."""
    with Context() as c:
        card = c.connect(reader, T0_OR_T1)
        try:
            return card.control(S.SCARD_CTL_CODE(1), command)
        finally:
            card.disconnect(S.SCARD_LEAVE_CARD)
