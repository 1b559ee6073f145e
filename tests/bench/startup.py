"""Startup: from pcscd's dlopen() of the driver to the first reader a client
sees listed (one USB reader under umockdev, found by pcscd's hotplug at
start), and pcscd's memory and threads: with no driver and no reader, with
the reader, and after its only reader went. Our bundle beside libccid, in
alternating rounds. The dlopen time comes from tests/bench/dlopenclock.c
preloaded into pcscd; the listing time from loadgen --first-reader, polling
every 0.5 ms on the same clock."""
import json
import os
import statistics
import subprocess

import simharness
import pcscload
from scale import LIBCCID, library_memory_kb, resources

PROFILE = "omnikey-3121-extended"


def one_start(tools, label, driver_args, library, directory):
    """Starts pcscd with one reader; returns its figures."""
    log = directory + ".dlopen"
    if os.path.exists(log):
        os.unlink(log)
    socket = os.path.join(directory, "pcscd", "pcscd.comm")
    waiter = subprocess.Popen([tools.loadgen, "--first-reader"], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PCSCLITE_CSOCK_NAME=socket))
    env = {"LD_PRELOAD": tools.dlopen_clock, "BENCH_DLOPEN_LOG": log, "BENCH_DLOPEN_MATCH": library}
    try:
        pcscd = simharness.PrivatePCSCD("--usb", "--profile", PROFILE, *driver_args, env=env,
                                        wait_for_readers=False, directory=directory)
        with pcscd:
            listed = float(waiter.communicate(timeout=30)[0])
            # Our library's constructor dlopen()s itself (RTLD_NOLOAD), inside pcscd's call: the outermost call counts.
            with open(log) as f:
                calls = [[float(x) for x in line.split()[:2]] for line in f]
            dlopen_start, dlopen_end = min(c[0] for c in calls), max(c[1] for c in calls)
            figures = {"startup_ms": (listed - dlopen_start) * 1e3, "dlopen_ms": (dlopen_end - dlopen_start) * 1e3}
            pid = pcscd.pcscd_pid
            figures["with_reader"] = resources(pid)
            figures["library"] = library_memory_kb(pid, library)
            r = pcscd.sim("unplug", "sim0")
            if r.returncode != 0:
                raise RuntimeError("%s: unplug: %s" % (label, r.stderr))
            simharness.wait_for(lambda: not pcscload.readers(tools, socket), timeout=30, what="%s: no reader" % label)
            simharness.wait_for(lambda: "Unloading reader driver" in pcscd.log_text(), timeout=30,
                                what="%s: pcscd unloading the driver" % label)
            figures["after_unplug"] = resources(pid)
            return figures
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def bare_pcscd(directory, workdir):
    """pcscd's resources with no driver and no reader."""
    empty = os.path.join(workdir, "no-readers.json")
    with open(empty, "w") as f:
        json.dump({"readers": []}, f)
    with simharness.PrivatePCSCD("--config", empty, wait_for_readers=False, directory=directory) as pcscd:
        return resources(pcscd.pcscd_pid)


def run(tools, rounds, workdir):
    print("\nStartup: one USB reader (umockdev, %s) found by pcscd's hotplug when it starts; %d alternating rounds"
          % (PROFILE, rounds))
    if not os.path.isdir(LIBCCID):
        print("  libccid is not installed (%s): nothing to compare with" % LIBCCID)
        return
    base = simharness.DIR + "-startup-"
    sides = [("ours", [], "libswiftccid.so"), ("libccid", ["--driver", LIBCCID], "libccid.so")]
    results = {label: [] for label, _, _ in sides}
    for _ in range(rounds):
        for label, args, library in sides:
            results[label].append(one_start(tools, label, args, library, base + label))
    bare = bare_pcscd(base + "bare", workdir)
    print("%-9s %20s %9s %8s %8s %16s %13s" % ("", "dlopen→listed ms", "dlopen ms", "RSS kB", "threads",
                                               "library RSS kB", "RSS after kB"))
    print("%-9s %20s %9s %8d %8d %16s %13s" % ("no driver", "", "", bare["rss_kb"], bare["threads"], "", ""))
    for label, rows in results.items():
        def med(key, sub=None):
            return statistics.median(r[key][sub] if sub else r[key] for r in rows)
        startup = sorted(r["startup_ms"] for r in rows)
        print("%-9s %20s %9.1f %8d %8d %16s %13d" % (
            label, "%.1f (%.1f–%.1f)" % (statistics.median(startup), startup[0], startup[-1]), med("dlopen_ms"),
            med("with_reader", "rss_kb"), med("with_reader", "threads"),
            "%d (%d anon)" % (med("library", "rss"), med("library", "private")), med("after_unplug", "rss_kb")))
    ratios = sorted(a["startup_ms"] / b["startup_ms"] for a, b in zip(results["ours"], results["libccid"]))
    print("ours ÷ libccid, dlopen→listed: %.2f (%.2f–%.2f)" % (statistics.median(ratios), ratios[0], ratios[-1]))
    print("(library RSS: the driver's own mappings: file pages (page cache, shared) and anonymous ones (its own).")
    print(" RSS after: once the only reader went. pcscd then unloads libccid; our library stays mapped,"
          " RTLD_NODELETE,\n so that is pcscd's RSS with our bundle loaded and no reader)")
