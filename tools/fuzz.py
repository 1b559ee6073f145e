#!/usr/bin/python3
"""Runs the libFuzzer targets of Fuzz/ccid-fuzz (built by `make fuzz`).

For each target: first every input in Fuzz/regressions/<target>/ (crashes
found before, kept as regression tests), then fuzzing for --seconds from the
seeds (Fuzz/seeds/<target>.hex) plus the corpus grown by earlier local runs
(.fuzz-corpus/, not in git). A crash or leak fails the run and leaves its
input in Fuzz/crashes/ to be turned into a regression file.

usage: fuzz.py BINARY [--seconds N] [TARGET...]
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["ccid-messages", "class-descriptor", "atr", "pps", "relay-frames", "t1-host", "t0-character", "driver",
           "wire-structures", "t0-reader"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("targets", nargs="*", default=TARGETS)
    args = ap.parse_args()
    crashes = os.path.join(ROOT, "Fuzz", "crashes")
    os.makedirs(crashes, exist_ok=True)
    failed = []
    print("%-18s %12s %10s %8s" % ("target", "executions", "exec/s", "corpus"))
    for target in args.targets:
        env = dict(os.environ, SWIFTCCID_FUZZ_TARGET=target, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        regressions = os.path.join(ROOT, "Fuzz", "regressions", target)
        if os.path.isdir(regressions) and os.listdir(regressions):
            files = [os.path.join(regressions, f) for f in sorted(os.listdir(regressions))]
            r = subprocess.run([args.binary] + files, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-3000:])
                failed.append(target + " (regression)")
                continue
        corpus = os.path.join(ROOT, ".fuzz-corpus", target)
        os.makedirs(corpus, exist_ok=True)
        with open(os.path.join(ROOT, "Fuzz", "seeds", target + ".hex")) as f:
            for line in f:
                data = bytes.fromhex(line.strip())
                with open(os.path.join(corpus, "seed-" + hashlib.sha1(data).hexdigest()), "wb") as out:
                    out.write(data)
        r = subprocess.run([args.binary, corpus, "-max_total_time=%d" % args.seconds, "-print_final_stats=1",
                            "-timeout=10", "-rss_limit_mb=2048", "-artifact_prefix=%s/%s-" % (crashes, target)],
                           env=env, capture_output=True, text=True)
        units = re.search(r"stat::number_of_executed_units: (\d+)", r.stderr)
        rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", r.stderr)
        print("%-18s %12s %10s %8d" % (target, units.group(1) if units else "?", rate.group(1) if rate else "?",
                                       len(os.listdir(corpus))))
        sys.stdout.flush()
        if r.returncode != 0:
            print(r.stderr[-4000:])
            failed.append(target)
    if failed:
        print("fuzzing failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
