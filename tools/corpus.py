#!/usr/bin/python3
"""make corpus: every distinct CCID class descriptor of the reader corpus
(data/ccid-readers/descriptors.json) as a simulated reader holding the
compliance card, through a real pcscd: over the relay with our driver, and as
USB devices (umockdev) with our driver and with Debian's libccid. Each reader
gets SELECT, cases 1 to 4 and a 4 KiB case 2E, every answer checked.

A reader passes, is rightly refused (its firmware is one the driver's quirk
table refuses, or its descriptor says it cannot carry what
was asked: a short-APDU reader and the 4 KiB APDU, messages too small for a
short APDU), or fails. Prints one line per descriptor and mode, then totals.
`--sample` runs a fixed sample (tests/test_corpus_sample.py uses it)."""
import argparse
import json
import os
import plistlib
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from smartcard import scard as S  # noqa: E402
import simharness  # noqa: E402
from pcsc import Context, OK, PCSCError, SELECT_TEST_APPLET, seq, tlv_properties  # noqa: E402

CORPUS = os.path.join(ROOT, "data", "ccid-readers", "descriptors.json")
LIBCCID = "/usr/lib/pcsc/drivers/ifd-ccid.bundle"
MODES = ("relay-ours", "usb-ours", "usb-libccid")
# pcscd holds 16 readers, a slot counting as one.
BATCH_SLOTS = 16
# Corpus files of the fixed sample: readers that negotiate with the card
# themselves (dwFeatures 0x80 or 0x40) at TPDU level, a character-level one,
# short- and extended-APDU readers, a multi-slot one, USB ICCD tokens of
# version A (e-gate) and B (Gemalto PDT; the KONA token declares character level).
SAMPLE = ("SCR3310.txt", "SafeNet_eToken_7300.txt", "Nitrokey_Storage.txt", "CherrySmartTerminalST2XXX.txt",
          "Gemalto_IDBridge_CT30.txt", "ACS_ACR1251_Dual_Reader.txt", "CardMan3121.txt",
          "HID_Global_Crescendo_Key_0x0028.txt", "SCL010.txt", "ACS_ACR39U_ICC_Reader.txt", "Oz776S.txt",
          "KEBTechnology_KONA_USB_SmartCard.txt", "e-gate.txt", "Gemalto_PDT.txt")


class Descriptor:
    def __init__(self, entry, name):
        self.entry = entry
        self.file = name
        self.bytes = bytes.fromhex(entry["descriptor_hex"])
        b = self.bytes
        self.slots = b[4] + 1
        self.protocols = int.from_bytes(b[6:10], "little")
        self.features = int.from_bytes(b[40:44], "little")
        self.max_message = int.from_bytes(b[44:48], "little")
        self.level = {0: "character", 1: "TPDU", 2: "short APDU", 4: "extended APDU"}.get((self.features >> 16) & 7, "unknown")

    def config(self):
        e = self.entry
        c = {"descriptor": e["descriptor_hex"], "vendorID": e["idVendor"], "productID": e["idProduct"],
             "manufacturer": "corpus", "product": e.get("iProduct") or self.file, "cards": ["compliance"]}
        if self.bcd_device is not None:
            c["bcdDevice"] = "0x%04X" % self.bcd_device
        if self.iccd:
            # A token on the control pipe; an interrupt endpoint only if its dump has one.
            c["iccd"] = self.iccd
            c["interruptEndpoint"] = self.field("bNumEndpoints") == "1"
        return c

    def field(self, name):
        """The first value of `name:` in the reader's corpus file, as text; None if absent."""
        path = os.path.join(ROOT, "data", "ccid-readers", "txt", self.entry["file"])
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip().startswith(name + ":"):
                        return line.split(":", 1)[1].split()[0]
        except OSError:
            return None
        return None

    @property
    def bcd_device(self):
        """The reader's firmware release from its corpus file ("bcdDevice: 5.25" is 0x0525): drivers refuse
        some old firmware, and the simulated reader should be the one the corpus describes."""
        text = self.field("bcdDevice")
        try:
            major, _, minor = text.partition(".")
            return int(major, 16) << 8 | int(minor or "0", 16)
        except (AttributeError, ValueError):
            return None

    @property
    def iccd(self):
        """"A" or "B" for a USB ICCD token (bInterfaceProtocol 1 or 2, no bulk endpoints), else None. A device
        of protocol 1 with bulk endpoints (the ActivCard V2 dump) is a CCID reader that labels itself oddly."""
        protocol, endpoints = self.field("bInterfaceProtocol"), self.field("bNumEndpoints")
        if protocol in ("1", "2") and endpoints in ("0", "1"):
            return "A" if protocol == "1" else "B"
        return None

    def cannot_carry(self, apdu_length, extended):
        """Why the descriptor says this APDU cannot go through, or None."""
        if extended and self.level == "short APDU":
            return "short-APDU reader: no extended APDUs"
        if self.level in ("short APDU", "extended APDU") and apdu_length + 10 > self.max_message and not extended:
            return "messages of %d bytes cannot carry a %d-byte APDU" % (self.max_message, apdu_length)
        return None


def distinct(path=CORPUS, only=None):
    """One Descriptor per distinct descriptor (the first file holding it); `only`: those some of these files hold."""
    with open(path) as f:
        entries = sorted(json.load(f), key=lambda e: e["file"])
    wanted = {e.get("descriptor_hex") for e in entries if e["file"] in only} if only else None
    seen, out, names = set(), [], set()
    for entry in entries:
        hexs = entry.get("descriptor_hex") or ""
        if len(hexs) == 108 and hexs not in seen and (wanted is None or hexs in wanted):
            seen.add(hexs)
            # A file with several interfaces holds several descriptors.
            name, n = entry["file"], 2
            while name in names:
                name, n = "%s#%d" % (entry["file"], n), n + 1
            names.add(name)
            out.append(Descriptor(entry, name))
    return out


def claimed_ids(mode):
    """VID:PIDs whose USB devices pcscd hands to the mode's driver (its Info.plist list)."""
    if mode.endswith("libccid"):
        with open(os.path.join(LIBCCID, "Contents", "Info.plist"), "rb") as f:
            plist = plistlib.load(f)
        return {(int(v, 16), int(p, 16)) for v, p in zip(plist["ifdVendorID"], plist["ifdProductID"])}
    ids = set()
    with open(os.path.join(ROOT, "bundle", "readers.txt")) as f:
        for line in f:
            if line.startswith("0x"):
                vid, pid = line.split(":")[:2]
                ids.add((int(vid, 16), int(pid, 16)))
    return ids


def script(d):
    """(name, APDU, expected response, extended) in order; SELECT first."""
    return [("SELECT", SELECT_TEST_APPLET, OK, False),
            ("case 1", [0x80, 0x30, 0x00, 0x00], OK, False),
            ("case 2", [0x80, 0x34, 0x00, 0x10, 0x10], seq(16) + OK, False),
            ("case 3", [0x80, 0x32, 0x00, 0x00, 0x10] + seq(16), OK, False),
            ("case 4", [0x80, 0x36, 0x00, 0x10, 0x10] + seq(16) + [0x00], seq(16) + OK, False),
            ("4 KiB case 2E", [0x80, 0x00, 0x04, 0x5A, 0x00, 0x10, 0x00], [0x5A] * 4096 + OK, True)]


def exchange(card, apdu, protocol):
    """T=0 at TPDU and character level answers a case 4 with 61xx: fetch it, as an application does."""
    r = card.transmit(apdu)
    if protocol == S.SCARD_PROTOCOL_T0 and len(r) == 2 and r[0] == 0x61:
        r = card.transmit([0x00, 0xC0, 0x00, 0x00, r[1]])
    return r


def check(d, reader):
    """("pass" | "refused" | "fail", detail) for one reader."""
    refused = []
    try:
        with Context() as c:
            card = c.connect(reader, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
            # What the driver says it carries (Part 10's dwMaxAPDUDataSize, 0: short APDUs only): a
            # driver may drive a reader below the level its descriptor claims, for a firmware defect.
            try:
                short_only = tlv_properties(card).get(0x0A) == 0
            except (PCSCError, KeyError):
                short_only = False
            for name, apdu, expected, extended in script(d):
                why = d.cannot_carry(len(apdu), extended) or \
                    (extended and short_only and "the driver drives it at short-APDU level: no extended APDUs")
                try:
                    got = exchange(card, apdu, card.protocol)
                except PCSCError as e:
                    if why:
                        refused.append("%s (%s)" % (name, why))
                        continue
                    return "fail", "%s: %s" % (name, e)
                if got != expected:
                    return "fail", "%s: answered %s" % (name, bytes(got[:8]).hex() + ("…" if len(got) > 8 else ""))
            card.disconnect(S.SCARD_RESET_CARD)
    except PCSCError as e:
        return "fail", "connect: %s" % e
    # A short-APDU reader refusing the extended APDU answers right: that is a pass.
    others = [r for r in refused if "no extended APDUs" not in r]
    if others:
        return "refused", "; ".join(others)
    return "pass", "; ".join("%s rightly refused" % r for r in refused)


def batches(descriptors):
    batch, slots = [], 0
    for d in descriptors:
        if batch and slots + d.slots > BATCH_SLOTS:
            yield batch
            batch, slots = [], 0
        batch.append(d)
        slots += d.slots
    if batch:
        yield batch


def firmware_refusal(pcscd, mode, d, i):
    """("refused", why) when our driver refused reader `i` of the batch at open
    for its firmware (the quirk table's O1 gate, as the reference driver does), from pcscd's log."""
    if mode.endswith("libccid"):
        return None
    key = "sim%d.sock:" % i if mode.startswith("relay") else \
        "usb:%s/%s:" % (d.entry["idVendor"][2:].lower(), d.entry["idProduct"][2:].lower())
    for line in pcscd.log_text().splitlines():
        if key in line and " is older than " in line:
            return "refused", line[line.index("firmware "):line.index(")") + 1]
    return None


def run_mode(mode, descriptors, workdir, log):
    """Results by descriptor name. Over USB, pcscd gives a device only to a
    driver listing its VID:PID: the others are "not claimed", not tried."""
    results = {}
    if mode.startswith("usb"):
        claimed = claimed_ids(mode)
        for d in descriptors:
            if (int(d.entry["idVendor"], 16), int(d.entry["idProduct"], 16)) not in claimed:
                results[d.file] = ("not claimed", "the driver's list does not name %s:%s" % (d.entry["idVendor"], d.entry["idProduct"]))
                log(mode, d, *results[d.file])
        descriptors = [d for d in descriptors if d.file not in results]
    for batch in batches(descriptors):
        config = os.path.join(workdir, "corpus.json")
        with open(config, "w") as f:
            json.dump({"readers": [d.config() for d in batch]}, f)
        args = ["--config", config] + (["--usb"] if mode.startswith("usb") else []) + \
            (["--driver", LIBCCID] if mode.endswith("libccid") else [])
        try:
            with simharness.PrivatePCSCD(*args, wait_for_readers=False) as pcscd:
                marker = (lambda i: "(SIM%d)" % (1000 + i)) if mode.startswith("usb") else (lambda i: "[sim%d]" % i)
                def slot0(names, i):
                    return next((n for n in names if marker(i) in n and n.endswith(" 00")), None)
                try:
                    simharness.wait_for(lambda: all(slot0(simharness.reader_names(), i) for i in range(len(batch))),
                                        timeout=20, what="readers")
                except AssertionError:
                    pass   # those not listed fail below
                names = simharness.reader_names()
                for i, d in enumerate(batch):
                    reader = slot0(names, i)
                    results[d.file] = check(d, reader) if reader else firmware_refusal(pcscd, mode, d, i) \
                        or ("fail", "not listed by pcscd")
                    log(mode, d, *results[d.file])
        except RuntimeError as e:
            for d in batch:
                results[d.file] = ("fail", "simulator: %s" % e)
                log(mode, d, *results[d.file])
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", action="store_true", help="only the fixed sample")
    ap.add_argument("--only", help="only these corpus files (comma-separated)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    descriptors = distinct(only=SAMPLE if args.sample else args.only.split(",") if args.only else None)
    modes = [m.strip() for m in args.modes.split(",")]
    if not os.path.isdir(LIBCCID):
        modes = [m for m in modes if not m.endswith("libccid")]

    def log(mode, d, outcome, detail):
        level = "ICCD-%s" % d.iccd if d.iccd else d.level
        print("%-13s %-11s %-14s %-44s %s" % (mode, outcome, level, d.file[:44], detail), flush=True)

    all_results = {}
    with tempfile.TemporaryDirectory(prefix="sccid-corpus") as work:
        for mode in modes:
            all_results[mode] = run_mode(mode, descriptors, work, log)
    print("\n%d distinct descriptors" % len(descriptors))
    for mode, results in all_results.items():
        counts = {k: sum(1 for r in results.values() if r[0] == k) for k in ("pass", "refused", "fail", "not claimed")}
        print("  %-13s pass %d, rightly refused %d, fail %d, not claimed by the driver %d" % (
            mode, counts["pass"], counts["refused"], counts["fail"], counts["not claimed"]))
    if len(all_results) > 1 and "usb-libccid" in all_results:
        ours, theirs = all_results.get("usb-ours") or all_results["relay-ours"], all_results["usb-libccid"]
        ok = ("pass", "refused")
        only_ours = sorted(f for f in ours if ours[f][0] in ok and theirs.get(f, ("fail",))[0] == "fail")
        only_theirs = sorted(f for f in ours if ours[f][0] == "fail" and theirs.get(f, ("fail",))[0] in ok)
        print("  pass with ours, fail with libccid (USB): %d%s" % (len(only_ours), ": " + ", ".join(only_ours) if only_ours else ""))
        print("  fail with ours, pass with libccid (USB): %d%s" % (len(only_theirs), ": " + ", ".join(only_theirs) if only_theirs else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1)
    failed = any(r[0] == "fail" for m, results in all_results.items() if not m.endswith("libccid") for r in results.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
