"""The bench's C tools (load generator, do-nothing IFD handler), built here
with gcc, and the statistics every figure is printed with: medians of paired
ratios over alternating rounds, with their range."""
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def _pkg(*args):
    return subprocess.run(["pkg-config"] + list(args) + ["libpcsclite"], capture_output=True, text=True,
                          check=True).stdout.split()


class Tools:
    """loadgen, the do-nothing handler (with its reader.conf) and the dlopen
    clock preloaded into pcscd, built in `workdir`."""

    def __init__(self, workdir):
        self.workdir = workdir
        cflags = _pkg("--cflags")
        self.null_so = os.path.join(workdir, "libnullifd.so")
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", self.null_so,
                        os.path.join(HERE, "nullifd.c")] + cflags, check=True)
        self.null_conf = os.path.join(workdir, "null.conf")
        with open(self.null_conf, "w") as f:
            f.write('FRIENDLYNAME "Null IFD"\nDEVICENAME /dev/null\nLIBPATH %s\n' % self.null_so)
        self.dlopen_clock = os.path.join(workdir, "libdlopenclock.so")
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", self.dlopen_clock,
                        os.path.join(HERE, "dlopenclock.c"), "-ldl"], check=True)
        self.loadgen = os.path.join(workdir, "loadgen")
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", self.loadgen, os.path.join(HERE, "loadgen.c")]
                       + cflags + _pkg("--libs") + ["-lpthread"], check=True)


    def hex_arg(self, data):
        """A loadgen hex argument: @FILE when too long for the command line."""
        if len(data) < 4096:
            return hexs(data)
        path = os.path.join(self.workdir, "apdu-%d.hex" % len(os.listdir(self.workdir)))
        with open(path, "w") as f:
            f.write(hexs(data))
        return "@" + path


def hexs(data):
    return bytes(data).hex()


class WrongAnswers(Exception):
    pass


def load(tools, readers, apdu, expect, count, rounds, clients=1, protocol=1, setup=None, env=None, together=False,
         warmup=True, cpu_pids=()):
    """Runs loadgen: `rounds` alternating rounds over `readers` (plus one
    warm-up round, dropped). Returns one list of round results per reader,
    or one list for all of them `together`. Raises WrongAnswers if any answer
    was wrong."""
    total = rounds + (1 if warmup else 0)
    cmd = [tools.loadgen, "--rounds", str(total), "--count", str(count), "--clients", str(clients),
           "--protocol", str(protocol), "--apdu", tools.hex_arg(apdu), "--expect", tools.hex_arg(expect)]
    if setup:
        cmd += ["--setup", "%s=%s" % (hexs(setup[0]), hexs(setup[1]))]
    if together:
        cmd.append("--together")
    for pid in cpu_pids:
        cmd += ["--cpu-pid", str(pid)]
    r = subprocess.run(cmd + list(readers), capture_output=True, text=True, env=env, timeout=1800)
    results = [json.loads(line) for line in r.stdout.splitlines()]
    wrong = [x for x in results if x["wrong"] or x["error"]]
    if r.returncode != 0 or wrong or len(results) != total * (1 if together else len(readers)):
        raise WrongAnswers("loadgen failed (exit %d): %s %s" % (r.returncode, r.stderr.strip(), wrong[:3]))
    first = 1 if warmup else 0
    if together:
        return [[x for x in results if x["round"] >= first]]
    return [[x for x in results if x["reader"] == i and x["round"] >= first] for i in range(len(readers))]


def readers(tools, socket):
    """The readers of the pcscd at `socket` (from a child: see simharness.PrivatePCSCD)."""
    r = subprocess.run([tools.loadgen, "--list"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PCSCLITE_CSOCK_NAME=socket))
    return r.stdout.splitlines() if r.returncode == 0 else []


def median_round(rounds):
    return sorted(rounds, key=lambda r: r["rate"])[len(rounds) // 2]


class Paired:
    """Our rounds beside the floor's, paired round by round (drift on a shared
    machine hits both members of a pair alike)."""

    def __init__(self, ours, floor):
        self.ours, self.floor = median_round(ours), median_round(floor)
        self.ratios = sorted(a["rate"] / b["rate"] for a, b in zip(ours, floor))
        # Time per APDU above the floor's, per pair, in µs.
        self.extra_us = sorted((1 / a["rate"] - 1 / b["rate"]) * 1e6 for a, b in zip(ours, floor))

    @property
    def ratio(self):
        return statistics.median(self.ratios)

    @property
    def extra(self):
        return statistics.median(self.extra_us)

    def ratio_text(self):
        return "%.2f (%.2f–%.2f)" % (self.ratio, self.ratios[0], self.ratios[-1])


def ratio_row(name, p, note=""):
    o, f = p.ours, p.floor
    return "%-34s %9.0f %7.0f %8.0f  %9.0f %7.0f %8.0f  %-18s %s" % (
        name, o["rate"], o["p50_us"], o["p99_us"], f["rate"], f["p50_us"], f["p99_us"], p.ratio_text(), note)


RATIO_HEADER = "%-34s %9s %7s %8s  %9s %7s %8s  %-18s %s" % (
    "workload", "ours/s", "p50 µs", "p99 µs", "floor/s", "p50 µs", "p99 µs", "ratio (min–max)", "")
