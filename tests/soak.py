#!/usr/bin/python3
"""Soak: several USB readers (ccid-sim --usb, pcscd's hotplug, our driver over
libusb), several concurrent clients, and random card insert/remove and reader
unplug/replug, for a bounded time. Every response is checked; pcscd's file
descriptors and threads must not grow, its RSS only boundedly.

usage: soak.py [--seconds N] [--clients N] [--sim build/ccid-sim]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smartcard import scard as S  # noqa: E402

from pcsc import Context, OK, SELECT_TEST_APPLET, PCSCError  # noqa: E402
from simharness import DIR, PrivatePCSCD, reader_names, seq, wait_for  # noqa: E402

PROFILES = ["omnikey-3121-extended", "gemalto-ct30-tpdu", "springcard-e518-2slot-extended", "cherry-st-short"]
EXTENDED = {"omnikey-3121-extended", "gemalto-ct30-tpdu", "springcard-e518-2slot-extended"}


def proc_stats(pid):
    fds = len(os.listdir("/proc/%d/fd" % pid))
    status = dict(l.split(":", 1) for l in open("/proc/%d/status" % pid).read().splitlines() if ":" in l)
    return {"fds": fds, "threads": int(status["Threads"]), "rss_kb": int(status["VmRSS"].split()[0])}


class Soak:
    def __init__(self, pcscd, seconds, clients, seed):
        self.pcscd = pcscd
        self.seed = seed
        self.seconds = seconds
        self.clients = clients
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = {}
        self.wrong = []
        self.worst = 0.0
        self.stop = threading.Event()
        self.profiles = {}          # serial → profile, for readers plugged now

    def note_error(self, what):
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def client(self, rng):
        while not self.stop.is_set():
            names = [n for n in reader_names() if "(SIM" in n]
            if not names:
                time.sleep(0.1)
                continue
            name = rng.choice(names)
            serial = name.split("(")[1].split(")")[0]
            profile = self.profiles.get(serial, "")
            try:
                with Context() as c:
                    card = c.connect(name, rng.choice([S.SCARD_PROTOCOL_T0, S.SCARD_PROTOCOL_T1,
                                                       S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1]))
                    for _ in range(rng.randint(1, 20)):
                        self.exchange(card, rng, profile in EXTENDED)
                    card.disconnect(rng.choice([S.SCARD_LEAVE_CARD, S.SCARD_RESET_CARD]))
            except PCSCError as e:
                self.note_error(S.SCardGetErrorMessage(e.rv).strip().rstrip("."))

    def exchange(self, card, rng, extended):
        n = rng.choice([1, 16, 100, 255, 256] + ([1000, 4096] if extended else []))
        kind = rng.choice(["case2", "case3", "select"])
        start = time.monotonic()
        if kind == "select":
            command, expected = SELECT_TEST_APPLET, OK
        elif kind == "case2":
            if n > 256:
                command, expected = [0x80, 0x00, 0x04, 0x5A, 0x00, n >> 8, n & 0xFF], [0x5A] * n + OK
            else:
                command, expected = [0x80, 0x00, 0x04, 0x5A, n & 0xFF], [0x5A] * n + OK
        else:
            data = seq(min(n, 255)) if n <= 255 else seq(n)
            command = ([0x80, 0x12, 0x01, 0x80, len(data)] if len(data) <= 255
                       else [0x80, 0x12, 0x01, 0x80, 0x00, len(data) >> 8, len(data) & 0xFF]) + data
            expected = OK
        answer = card.transmit(command)
        elapsed = time.monotonic() - start
        with self.lock:
            self.worst = max(self.worst, elapsed)
            if answer == expected:
                self.ok += 1
            else:
                self.wrong.append((command[:7], answer[-4:], len(answer)))

    def chaos(self, rng):
        while not self.stop.wait(rng.uniform(0.3, 1.5)):
            listing = self.pcscd.sim("list").stdout.strip().splitlines()
            plugged = [l.split("\t") for l in listing if not l.endswith("unplugged")]
            action = rng.choice(["remove", "insert", "insert", "unplug", "plug"])
            if action == "plug" or not plugged:
                profile = rng.choice(PROFILES)
                r = self.pcscd.sim("plug", profile)
                if r.returncode == 0:
                    fields = r.stdout.strip().split("\t")
                    self.profiles["SIM%d" % (1000 + int(fields[0]))] = profile
                continue
            reader = rng.choice(plugged)
            if action == "unplug" and len(plugged) > 1:
                self.pcscd.sim("unplug", reader[1])
            elif action == "remove":
                self.pcscd.sim("remove", reader[1])
            else:
                self.pcscd.sim("insert", reader[1], "--card", rng.choice(["compliance", "compliance-inverse"]))

    def run(self):
        rng = random.Random(self.seed)
        for i, p in enumerate(PROFILES[:3]):
            self.profiles["SIM%d" % (1000 + i)] = p
        time.sleep(2)
        pid = self.pcscd.pcscd_pid
        before = proc_stats(pid)
        threads = [threading.Thread(target=self.client, args=(random.Random(rng.random()),)) for _ in range(self.clients)]
        threads.append(threading.Thread(target=self.chaos, args=(random.Random(rng.random()),)))
        for t in threads:
            t.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads:
            t.join(60)
        # Back to the starting shape (three readers, four slots) on fresh devices, so that
        # counts compare and whatever unplugged readers left behind would show.
        for line in self.pcscd.sim("list").stdout.strip().splitlines():
            if not line.endswith("unplugged"):
                self.pcscd.sim("unplug", line.split("\t")[1])
        try:
            wait_for(lambda: not reader_names(), timeout=30, what="all readers gone")
        except AssertionError:
            print("readers left: %r" % reader_names())
            print(self.pcscd.sim("list").stdout)
            raise
        for p in PROFILES[:3]:
            self.pcscd.sim("plug", p)
        try:
            wait_for(lambda: len(reader_names()) == 4, timeout=30, what="three fresh readers")
        except AssertionError:
            print("readers now: %r" % reader_names())
            print(self.pcscd.sim("list").stdout)
            raise
        time.sleep(2)
        after = proc_stats(pid)
        return before, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None, help="the run's random seed (default: from the clock; printed)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    config = DIR + "-soak.json"
    with open(config, "w") as f:
        json.dump({"readers": [{"profile": p, "cards": ["compliance"]} for p in PROFILES[:3]]}, f)
    try:
        with PrivatePCSCD("--usb", "--config", config, env={"SWIFTCCID_MAX_EXCHANGE_MS": "5000"}) as pcscd:
            wait_for(lambda: len(reader_names()) >= 4, what="the soak readers")
            soak = Soak(pcscd, args.seconds, args.clients, seed)
            before, after = soak.run()
            alive = pcscd.pcscd_alive()
    finally:
        os.unlink(config)
    print("soak: %d s, %d clients, seed %d (again: --seed %d)" % (args.seconds, args.clients, seed, seed))
    print("  APDUs answered correctly: %d" % soak.ok)
    print("  wrong answers: %d" % len(soak.wrong))
    for what, n in sorted(soak.errors.items(), key=lambda kv: -kv[1]):
        print("  error %-40s %d" % (what, n))
    print("  worst APDU latency: %.3f s" % soak.worst)
    print("  pcscd before: %s" % before)
    print("  pcscd after:  %s" % after)
    failures = []
    if not alive:
        failures.append("pcscd died")
    if soak.wrong:
        failures.append("wrong answers: %r" % soak.wrong[:5])
    if soak.ok == 0:
        failures.append("no APDU succeeded")
    if after["fds"] > before["fds"] + 2:
        failures.append("pcscd file descriptors grew %d → %d" % (before["fds"], after["fds"]))
    if after["threads"] > before["threads"] + 2:
        failures.append("pcscd threads grew %d → %d" % (before["threads"], after["threads"]))
    if after["rss_kb"] > before["rss_kb"] + 32 * 1024:
        failures.append("pcscd RSS grew by more than 32 MiB")
    if soak.worst > 5.0 + 2.0:
        failures.append("an APDU took %.1f s, beyond the 5 s cap" % soak.worst)
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
