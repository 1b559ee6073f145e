#!/usr/bin/python3
"""make vm-bench: figures over the real kernel's USB. In the VM test's QEMU
guest (TCG), one gadget reader (configfs + FunctionFS on dummy_hcd; the
SpringCard E518 profile, whose 65,554-byte messages carry a 64 KiB APDU
whole) is served in turn by our direct mode, our worker mode and Debian's
libccid, rounds alternating between them: short APDUs and 64 KiB extended
APDUs per second and p50/p99 latency (tests/bench/loadgen.c in the guest,
every answer checked), and the CPU that ccid-sim (the gadget side), pcscd and
the attach worker spent per APDU. Reported, not asserted: under TCG every
figure is an emulated machine's. The release is SWIFTCCID_VM_RELEASE."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vm"))
import image  # noqa: E402
import machine  # noqa: E402

PROFILE = "springcard-e518-2slot-extended"
MODES = ("direct", "workers", "libccid")
LABELS = {"direct": "ours, direct", "workers": "ours, worker", "libccid": "libccid"}


def run(vm, rounds, short_count, big_count, log=print):
    """`rounds` alternating rounds (after a warm-up) on a reader plugged now;
    returns {mode: {workload: [round results]}}."""
    plugged = vm.guest("plug", PROFILE)
    results = {mode: {"short": [], "64k": []} for mode in MODES}
    try:
        for round in range(rounds + 1):
            for mode in MODES:
                vm.guest("bench-mode", mode, plugged["instance"], plugged["serial"], timeout=180)
                for workload, count in (("short", short_count), ("64k", big_count)):
                    r = vm.guest("bench", plugged["serial"], workload, "--count", str(count), timeout=900)
                    if round > 0:
                        results[mode][workload].append(r)
            log("vm-bench: round %d of %d done" % (round, rounds))
    finally:
        vm.guest("bench-mode", "direct", plugged["instance"], plugged["serial"], timeout=180)
        vm.guest("unplug", plugged["name"], plugged["serial"])
    return results


def paired(a, b):
    ratios = sorted(x["rate"] / y["rate"] for x, y in zip(a, b))
    return statistics.median(ratios), ratios[0], ratios[-1]


def report(results, release):
    rounds = len(results["direct"]["short"])
    print("\nReal kernel USB (QEMU TCG guest, %s; gadget reader %s), %d alternating rounds" % (release, PROFILE, rounds))
    print("%-14s %-8s %9s %9s %9s   %s" % ("", "workload", "APDU/s", "p50 µs", "p99 µs",
                                          "CPU µs/APDU: ccid-sim  pcscd  worker"))
    for mode in MODES:
        for workload in ("short", "64k"):
            rows = results[mode][workload]
            m = sorted(rows, key=lambda r: r["rate"])[len(rows) // 2]
            cpu = {k: statistics.median(r["cpu_us_per_apdu"][k] for r in rows) for k in ("ccid-sim", "pcscd", "workers")}
            print("%-14s %-8s %9.1f %9.0f %9.0f   %21.0f %6.0f %7.0f" % (
                LABELS[mode], workload, m["rate"], m["p50_us"], m["p99_us"], cpu["ccid-sim"], cpu["pcscd"], cpu["workers"]))
    print("Goals (median paired ratio of APDU/s, range):")
    for workload in ("short", "64k"):
        r = paired(results["direct"][workload], results["libccid"][workload])
        print("  %-5s direct ÷ libccid %.2f (%.2f–%.2f), goal ≥ 1.00: %s" % (workload, *r, "met" if r[0] >= 1 else "MISSED"))
        r = paired(results["workers"][workload], results["direct"][workload])
        print("  %-5s worker ÷ direct  %.2f (%.2f–%.2f), goal ≥ 0.90: %s" % (workload, *r, "met" if r[0] >= 0.9 else "MISSED"))
    print("(the gadget side is not the limit when ccid-sim's CPU per APDU is well under the latency)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--short", type=int, default=300, help="short APDUs per round")
    ap.add_argument("--big", type=int, default=20, help="64 KiB APDUs per round")
    args = ap.parse_args()
    release = os.environ.get("SWIFTCCID_VM_RELEASE", "bookworm")
    if release not in image.RELEASES:
        sys.exit("SWIFTCCID_VM_RELEASE must be one of %s" % ", ".join(image.RELEASES))
    with machine.Machine(release) as vm:
        vm.guest("install")
        vm.guest("simulator")
        vm.guest("use", "ours")
        results = run(vm, args.rounds, args.short, args.big)
    report(results, release)


if __name__ == "__main__":
    main()
