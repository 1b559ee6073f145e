"""Scale: one pcscd with 16 simulated readers (its reader limit) of mixed
exchange levels and 16 clients at once, one per reader.

Over the relay, beside a second pcscd holding 16 do-nothing readers (the
floor). Under umockdev, beside Debian's libccid on the same USB readers. The
pcscds of a comparison run side by side and rounds alternate between them.
Under umockdev, also pcscd's memory, threads and
fds with 4 readers (one of each profile, each used) and with 16: the cost of
each further reader, without the one-off cost of code first run for a new
exchange level.""" 
import json
import os

import simharness
from pcsc import OK, SELECT_TEST_APPLET, seq
import pcscload

LIBCCID = "/usr/lib/pcsc/drivers/ifd-ccid.bundle"
# Extended APDU, short APDU and TPDU level (libccid's character level is not
# compared: its T=1 there is not one the simulated reader speaks).
PROFILES = ["omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "acr38u-tpdu"] * 4
APDU = [0x80, 0x34, 0x00, 0x10, 0x10]
EXPECT = seq(16) + OK
PER_READER = 150
RELAY_PROFILES = ["omnikey-3121-extended", "cherry-st-short", "gemalto-ct30-tpdu", "o2micro-oz776-char"] * 4
RELAY_PER_READER = 1000


def resources(pid):
    """pcscd's resident memory (kB), threads and open fds."""
    status = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.split()
    return {"rss_kb": int(status["VmRSS"][0]), "threads": int(status["Threads"][0]),
            "fds": len(os.listdir("/proc/%d/fd" % pid))}


def library_memory_kb(pid, name):
    """Resident and anonymous kB of the mappings of the library whose path
    ends in `name` (pcscd's smaps): file pages are page cache, shared with every
    process mapping the file; anonymous ones (relocated data, its .bss) are
    what it costs pcscd alone."""
    totals, inside = {"rss": 0, "private": 0}, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:   # a mapping's header line
                inside = len(fields) >= 6 and fields[5].endswith(name)
            elif inside and fields[0] == "Rss:":
                totals["rss"] += int(fields[1])
            elif inside and fields[0] == "Anonymous:":
                totals["private"] += int(fields[1])
    return totals


class Side:
    """One pcscd (ours or libccid) and its readers."""

    def __init__(self, tools, label, args, directory):
        self.tools, self.label = tools, label
        self.pcscd = simharness.PrivatePCSCD(*args, wait_for_readers=False, directory=directory,
                                             env=simharness.TEXTBOOK_CHARACTER_READER)
        self.env = None

    def __enter__(self):
        self.pcscd.__enter__()
        self.env = dict(os.environ, PCSCLITE_CSOCK_NAME=self.pcscd.socket)
        return self

    def __exit__(self, *exc):
        return self.pcscd.__exit__(*exc)

    def readers(self):
        return pcscload.readers(self.tools, self.pcscd.socket)

    def plug(self, profiles):
        for profile in profiles:
            r = self.pcscd.sim("plug", profile)
            if r.returncode != 0:
                raise RuntimeError("%s: plug %s: %s" % (self.label, profile, r.stderr))

    def wait_readers(self, n):
        simharness.wait_for(lambda: len(self.readers()) == n, timeout=60, what="%s: %d readers" % (self.label, n))

    def load(self, readers, count, rounds=1, warmup=False):
        return pcscload.load(self.tools, readers, APDU, EXPECT, count, rounds, env=self.env, together=True,
                             warmup=warmup, setup=(SELECT_TEST_APPLET, OK))[0]

    def resources(self):
        return resources(self.pcscd.pcscd_pid)


def alternate(sides, names, per_reader, rounds):
    """`rounds` rounds (after a warm-up) alternating between the sides; each side's round results."""
    results = {side.label: [] for side in sides}
    for round in range(rounds + 1):
        for side in sides:
            result = side.load(names[side.label], per_reader)
            if round > 0:
                results[side.label] += result
    return results


def print_rates(results, first, second):
    print("%-9s %10s %8s %8s %8s" % ("", "APDU/s", "p50 µs", "p99 µs", "wrong"))
    for label, rows in results.items():
        m = pcscload.median_round(rows)
        print("%-9s %10.0f %8.0f %8.0f %8d" % (label, m["rate"], m["p50_us"], m["p99_us"],
                                              sum(r["wrong"] for r in rows)))
    p = pcscload.Paired(results[first], results[second])
    print("%s ÷ %s, aggregate APDU/s: %s" % (first, second, p.ratio_text()))


def relay(tools, rounds, workdir):
    print("\nScale over the relay: 16 readers in one pcscd (4 each of %s), 16 clients at once, one per reader,"
          % ", ".join(RELAY_PROFILES[:4]))
    print("beside a second pcscd with 16 do-nothing readers; %d alternating rounds of %d APDUs per reader"
          " (80 34 00 10 10), every answer checked" % (rounds, RELAY_PER_READER))
    config = os.path.join(workdir, "scale-relay.json")
    empty = os.path.join(workdir, "no-readers.json")
    nulls = os.path.join(workdir, "null16.conf")
    with open(config, "w") as f:
        json.dump({"readers": [{"profile": p, "cards": ["compliance"]} for p in RELAY_PROFILES]}, f)
    with open(empty, "w") as f:
        json.dump({"readers": []}, f)
    with open(nulls, "w") as f:
        for i in range(16):
            f.write('FRIENDLYNAME "Null IFD %d"\nDEVICENAME /dev/null\nLIBPATH %s\n\n' % (i, tools.null_so))
    base = simharness.DIR + "-scale-"
    with Side(tools, "ours", ["--config", config], base + "relay") as ours, \
            Side(tools, "floor", ["--config", empty, "--reader-conf", nulls], base + "null") as floor:
        for side in (ours, floor):
            side.wait_readers(16)
        names = {side.label: side.readers() for side in (ours, floor)}
        print_rates(alternate((ours, floor), names, RELAY_PER_READER, rounds), "ours", "floor")


def run(tools, rounds, workdir):
    relay(tools, rounds, workdir)
    print("\nScale under umockdev: 16 USB readers (umockdev; 4 each of %s), 16 clients at once, one per reader;"
          % ", ".join(PROFILES[:4]))
    print("our bundle and libccid in two pcscds side by side, %d alternating rounds of %d APDUs per reader"
          " (80 34 00 10 10, 16 bytes out), every answer checked" % (rounds, PER_READER))
    if not os.path.isdir(LIBCCID):
        print("  libccid is not installed (%s): nothing to compare with" % LIBCCID)
        return
    base = simharness.DIR + "-scale-"
    usb = ["--usb", "--profile", PROFILES[0]]
    with Side(tools, "ours", usb, base + "ours") as ours, Side(tools, "libccid", usb + ["--driver", LIBCCID], base + "ccid") as ccid:
        sides = (ours, ccid)
        four, sixteen = {}, {}
        for side in sides:
            side.wait_readers(1)
            side.plug(PROFILES[1:4])
            side.wait_readers(4)
            side.load(side.readers(), 50)
            four[side.label] = side.resources()
            side.plug(PROFILES[4:])
            side.wait_readers(16)
        names = {side.label: side.readers() for side in sides}
        results = alternate(sides, names, PER_READER, rounds)
        for side in sides:
            sixteen[side.label] = side.resources()
        print_rates(results, "ours", "libccid")
        print("(umockdev carries each USB transfer's whole buffer through a socket, so these rates say more about"
              " the\n transfer sizes a driver asks for than about the driver: libccid reads 65 KiB transfers,"
              " ours its reader's\n dwMaxCCIDMessageLength in whole packets)")
        print("\npcscd's resources      %10s %10s %12s" % ("4 readers", "16 readers", "per reader"))
        for label in ("ours", "libccid"):
            for key, unit in (("rss_kb", "RSS kB"), ("threads", "threads"), ("fds", "fds")):
                a, b = four[label][key], sixteen[label][key]
                print("  %-8s %-11s %10d %10d %12.1f" % (label, unit, a, b, (b - a) / 12))
        print("  (goal: per reader no worse than libccid)")
        for key in ("rss_kb", "threads", "fds"):
            per = {label: (sixteen[label][key] - four[label][key]) / 12 for label in four}
            verdict = "met" if per["ours"] <= per["libccid"] else "MISSED"
            print("  %-8s ours %.1f, libccid %.1f per reader: %s" % (key, per["ours"], per["libccid"], verdict))
