#!/usr/bin/python3
"""make bench: our driver's figures through a real pcscd, each beside a floor
measured in the same run. Not a test: these machines are shared and noisy, so
nothing is asserted about time; every answer is still checked byte for byte.

1. Throughput and latency per exchange level: pcscd + libswiftccid.so +
   ccid-sim over the relay, beside a do-nothing IFD handler in the same pcscd,
   driven by a C client over libpcsclite (tests/bench/loadgen.c).
2. Scale: 16 readers and 16 clients in one pcscd; pcscd's memory, fds and
   threads per reader, beside libccid on the same umockdev readers.
3. Startup: dlopen of the bundle to the first reader listed, and pcscd's
   memory with the driver loaded and no reader, beside libccid.
The VM's real-kernel-USB figures are `make vm-bench`."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "bench"))
import simharness  # noqa: E402
from pcsc import OK, SELECT_TEST_APPLET, seq  # noqa: E402
import pcscload  # noqa: E402
from pcscload import Paired, load  # noqa: E402
import scale  # noqa: E402
import startup  # noqa: E402

N = 65535
CASE1 = ("case 1", [0x80, 0x30, 0x00, 0x00], OK)
CASE2 = ("case 2, 16 bytes out", [0x80, 0x34, 0x00, 0x10, 0x10], seq(16) + OK)
CASE2E = ("case 2E, 65535 bytes out", [0x80, 0x00, 0x04, 0x5A, 0x00, N >> 8, N & 0xFF], [0x5A] * N + OK)
CASE3E = ("case 3E, 65535 bytes in", [0x80, 0x12, 0x01, 0x80, 0x00, N >> 8, N & 0xFF] + seq(N), OK)

# (title, profile, [(apdu, protocol, APDUs per round, clients, goal key)], environment and ccid-sim options)
NO_POLLING = ({"SWIFTCCID_RELAY_SPIN_US": "0"}, ["--spin-us", "0"])
SESSIONS = [
    ("Short APDU level (Cherry ST, cherry-st-short)", "cherry-st-short",
     [(CASE1, 1, 3000, 1, "apdu"), (CASE2, 1, 3000, 1, None)]),
    ("Extended APDU level, 65,554-byte messages: APDUs travel whole (SpringCard E518)", "springcard-e518-2slot-extended",
     [(CASE1, 1, 3000, 1, "apdu"), (CASE2E, 1, 300, 1, "64k"), (CASE3E, 1, 300, 1, "64k"),
      (CASE1, 1, 3000, 4, None), (CASE1, 1, 3000, 16, None)]),
    ("Extended APDU level, 271-byte messages: APDUs chain (OMNIKEY 3x21)", "omnikey-3121-extended",
     [(CASE1, 1, 3000, 1, "apdu"), (CASE2E, 1, 40, 1, None), (CASE3E, 1, 40, 1, None)]),
    ("TPDU level (Gemalto IDBridge CT30: IFSC 128, IFSD 254)", "gemalto-ct30-tpdu",
     [(CASE1, 1, 3000, 1, "t1"), (CASE2E, 1, 40, 1, None), (CASE3E, 1, 40, 1, None),
      (CASE1, 0, 3000, 1, None), (CASE2, 0, 3000, 1, None)]),
    ("Character level (O2Micro Oz776: the driver reads every byte the card sends)", "o2micro-oz776-char",
     [(CASE1, 1, 2000, 1, "char"), (CASE1, 0, 2000, 1, "char"), (CASE2, 0, 2000, 1, None)],
     (simharness.TEXTBOOK_CHARACTER_READER, [])),
    # Without polling, CPU per APDU is work (and sleeping and waking), not waiting: the driver's own cost.
    ("No polling at either relay end (SWIFTCCID_RELAY_SPIN_US=0, --spin-us 0): extended APDU level, 271-byte messages",
     "omnikey-3121-extended", [(CASE1, 1, 3000, 1, None), (CASE2E, 1, 40, 1, None), (CASE3E, 1, 40, 1, None)],
     NO_POLLING),
]

GOALS = {"apdu": ("case 1 at APDU level (short and extended)", 0.90),
         "t1": ("case 1 at TPDU level, T=1", 0.80),
         "64k": ("64 KiB extended APDUs, whole messages (bytes/s)", 0.60),
         "char": ("case 1 at character level", 0.80)}


def message_counts():
    """Bulk-out CCID messages of each simulated reader so far."""
    out = subprocess.run([simharness.SIM, "list", "--counts", "--dir", simharness.DIR], capture_output=True,
                         text=True, check=True).stdout
    return [int(line.split("\t")[2]) for line in out.splitlines()]


def cpu_per_apdu(ours, floor):
    """Median CPU µs per APDU: pcscd in our rounds, pcscd in the floor's, ccid-sim in ours."""
    def per(rows, i):
        return statistics.median(r["cpu_us"][i] / r["apdus"] for r in rows)
    return per(ours, 0), per(floor, 0), per(ours, 1)


def throughput(tools, rounds, scale_factor):
    achieved = {}
    for title, profile, workloads, *options in SESSIONS:
        env, sim_args = options[0] if options else ({}, [])
        with simharness.PrivatePCSCD("--profile", profile, "--reader-conf", tools.null_conf, *sim_args, env=env) as pcscd:
            readers = simharness.reader_names()
            ours = next(r for r in readers if "[sim0]" in r and r.endswith("00"))
            floor = next(r for r in readers if r.startswith("Null IFD"))
            print("\n%s\n%s" % (title, pcscload.RATIO_HEADER))
            for (name, apdu, expect), protocol, count, clients, goal in workloads:
                count = max(8, int(count * scale_factor))
                before = message_counts()[0]
                pids = (pcscd.pcscd_pid, pcscd.proc.pid)
                ours_rounds, floor_rounds = load(tools, [ours, floor], apdu, expect, count, rounds, clients=clients,
                                                 protocol=protocol, setup=(SELECT_TEST_APPLET, OK), cpu_pids=pids)
                sent = (rounds + 1) * count + clients
                per_apdu = (message_counts()[0] - before) / sent
                p = Paired(ours_rounds, floor_rounds)
                label = "%s, T=%d%s" % (name, protocol, ", %d clients" % clients if clients > 1 else "")
                cpu = cpu_per_apdu(ours_rounds, floor_rounds)
                note = "%.1f msg/APDU; CPU µs/APDU: pcscd %.0f (floor %.0f), ccid-sim %.0f" % (per_apdu, *cpu)
                if per_apdu > 2.5:
                    note += "; %.1f µs/msg above floor" % (p.extra / per_apdu)
                print(pcscload.ratio_row(label, p, note), flush=True)
                if goal:
                    achieved.setdefault(goal, []).append((title.split(" (")[0] + ": " + label, p))
    print("\nGoals (median paired ratio to the floor, same run):")
    for key, (what, target) in GOALS.items():
        for label, p in achieved.get(key, []):
            print("  %-22s ≥ %.2f  %-16s %s  %s" % (what.split(" (")[0][:22], target, p.ratio_text(),
                                                 "met" if p.ratio >= target else "MISSED", label))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", default=simharness.SIM)
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds per figure (plus one warm-up)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the APDUs per round")
    ap.add_argument("--only", choices=["throughput", "scale", "startup"], action="append")
    args = ap.parse_args()
    simharness.SIM = args.sim
    parts = args.only or ["throughput", "scale", "startup"]
    with tempfile.TemporaryDirectory(prefix="sccid-bench") as work:
        tools = pcscload.Tools(work)
        print("%d alternating rounds per figure after a warm-up; ratio = our APDU/s ÷ the floor's in the same round,"
              " median and range over the rounds." % args.rounds)
        print("Floor: a do-nothing IFD handler (tests/bench/nullifd.c) in the same pcscd, answering the same bytes.")
        print("Load: tests/bench/loadgen.c over libpcsclite; every answer checked byte for byte.")
        print("CPU: per APDU, of pcscd (with our driver; with the floor's) and of ccid-sim, from their threads'"
              " schedstat;\n both relay ends poll briefly before sleeping (SWIFTCCID_RELAY_SPIN_US, --spin-us), which"
              " counts as CPU.")
        if "throughput" in parts:
            throughput(tools, args.rounds, args.scale)
        if "scale" in parts:
            scale.run(tools, args.rounds, work)
        if "startup" in parts:
            startup.run(tools, args.rounds, work)


if __name__ == "__main__":
    main()
