"""The guest's side of the VM test (run through the agent): install and purge
our Debian packages, plug and unplug gadget readers and time what follows,
switch drivers and modes, bring pcscd up through its socket and watch it exit
on its own, and run the conformance checks of tests/pcsc.py against the
guest's pcscd. Prints one JSON object; a failed check exits non-zero with its
traceback.

pcscd is the distribution's: socket-activated, `--auto-exit`. Switching
driver or mode stops it, and the next client's connection starts it again;
the scenarios' clients come often enough (well within its 60 s) to keep it
up, except where a scenario waits for it to go."""
import argparse
import glob
import json
import os
import subprocess
import sys
import time
import unittest

from smartcard import scard as S

from pcsc import Context, OK, PCSCError, SELECT_TEST_APPLET, check_cases_at_every_length, check_extended_apdus, \
    reference_script, seq, transmit_cut_short

DRIVERS = "/usr/lib/pcsc/drivers"
PARKED = "/usr/lib/pcsc/drivers.parked"
BUNDLES = {"ours": "ifd-swiftccid.bundle", "libccid": "ifd-ccid.bundle"}
WORKERS = "/etc/swiftccid/usb-workers"
SIM_DIR = "/run/ccid-sim"
HERE = os.path.dirname(os.path.abspath(__file__))
DEBS = os.path.join(HERE, "debs")
SNAPSHOT = "/var/lib/swiftccid-vm/files-before-install.json"
# What a snapshot leaves out: kernel and runtime trees, logs, caches, dpkg's
# own database, and the test's scripts. /run/swiftccid and /etc/swiftccid are
# checked by name after the purge.
NOT_SNAPSHOT = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache", "/var/lib/dpkg",
                "/var/lib/systemd", "/var/lib/swiftccid-vm", "/usr/lib/swiftccid-vm",
                # useradd's backups, from the test's own pcscd user (`unprivileged`).
                "/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-")
# pcscd as upstream pcsc-lite 2.x runs it: as its own user.
UNPRIVILEGED = "/etc/systemd/system/pcscd.service.d/50-swiftccid-vm-user.conf"
# Where pcscd asks polkit about its clients (pcsc-lite 2.x), polkit answers a
# non-root caller only for actions it owns: upstream's policy names the pcscd
# user as their owner, Debian's (pcscd as root) does not.
POLKIT_POLICY = "/usr/share/polkit-1/actions/org.debian.pcsc-lite.policy"
POLKIT_OWNER = '    <annotate key="org.freedesktop.policykit.owner">unix-user:pcscd</annotate>\n'



def sh(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (" ".join(argv), r.stdout, r.stderr))
    return r


def sim(*args, check=True):
    """ccid-sim's CLI against the gadget simulator."""
    return sh("/usr/bin/ccid-sim", args[0], "--dir", SIM_DIR, *args[1:], check=check)


def wait(predicate, timeout, what, interval=0.02):
    limit = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError("timed out after %.0f s waiting for %s\n%s" % (timeout, what, pcscd_evidence()))
        time.sleep(interval)


def pcscd_evidence():
    """What pcscd's threads wait in, and its, the workers' and the units' last
    journal lines: CI keeps only the end of the output, which a failed wait's
    message reaches."""
    lines = []
    for pid in pcscd_pids():
        for task in sorted(glob.glob("/proc/%s/task/*" % pid)):
            try:
                with open(task + "/comm") as c, open(task + "/wchan") as w:
                    lines.append("pcscd thread %s: %s in %s" % (os.path.basename(task), c.read().strip(), w.read().strip()))
            except OSError:
                pass
    journal = sh("journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-n", "400", check=False).stdout
    lines += [l for l in journal.splitlines() if "pcscd" in l or "ccid-attach" in l or "swiftccid" in l][-40:]
    return "\n".join(lines)


def readers():
    # pyscard's SCardListReaders can raise SystemError as the list empties (a binding bug): ask again.
    for _ in range(5):
        try:
            with Context() as c:
                return c.readers()
        except PCSCError:
            return []
        except SystemError:
            time.sleep(0.05)
    return []


def reader_for(marker, slot=0):
    names = [n for n in readers() if marker in n and n.endswith(" %02X" % slot)]
    return names[0] if len(names) == 1 else None


def usable(reader):
    """A card answers SELECT (the compliance card) or anything at all (other cards)."""
    try:
        with Context() as c:
            card = c.connect(reader)
            card.transmit(SELECT_TEST_APPLET)
            card.disconnect()
            return True
    except PCSCError:
        return False


def unit_state(instance):
    return sh("systemctl", "is-active", "swiftccid-attach@%s.service" % instance, check=False).stdout.strip()


def instance_of(location):
    """'/dev/bus/usb/003/002 (dummy_udc.0)' -> '003-002'."""
    parts = location.split()[0].split("/")
    return "%s-%s" % (parts[-2], parts[-1])


def service_active(unit):
    return sh("systemctl", "is-active", unit, check=False).stdout.strip() == "active"


def pcscd_pids():
    return sh("pgrep", "-x", "pcscd", check=False).stdout.split()


def stop_pcscd():
    """pcscd gone, its socket still listening: the next client starts it."""
    sh("systemctl", "stop", "pcscd.service")
    wait(lambda: not pcscd_pids(), 30, "pcscd to exit")
    if not service_active("pcscd.socket"):
        raise AssertionError("pcscd.socket is not listening")


def use(args):
    """Exactly one driver bundle in pcscd's directory, worker mode on or off;
    pcscd stopped, so that the next client's connection starts it with them."""
    stop_pcscd()
    os.makedirs(PARKED, exist_ok=True)
    for name, bundle in BUNDLES.items():
        here, parked = os.path.join(DRIVERS, bundle), os.path.join(PARKED, bundle)
        if name == args.driver and os.path.exists(parked):
            os.rename(parked, here)
        elif name != args.driver and os.path.exists(here):
            os.rename(here, parked)
    if args.workers:
        os.makedirs(os.path.dirname(WORKERS), exist_ok=True)
        open(WORKERS, "w").close()
    elif os.path.exists(WORKERS):
        os.unlink(WORKERS)
    if not args.no_client:
        # A client's connection starts pcscd through its socket, with this driver and mode.
        wait(lambda: readers() is not None and service_active("pcscd.service"), 30, "pcscd started by a client")
    return {"drivers": sorted(os.listdir(DRIVERS)), "workers": os.path.exists(WORKERS)}


# The VM bench (tests/vm_bench.py): tests/bench/loadgen.c, built on the host.
LOADGEN = os.path.join(HERE, "loadgen")
BENCH_WORKLOADS = {"short": ([0x80, 0x34, 0x00, 0x10, 0x10], seq(16) + OK),
                   "64k": ([0x80, 0x00, 0x04, 0x5A, 0x00, 0xFF, 0xFF], [0x5A] * 65535 + OK)}


def bench_mode(args):
    """A plugged reader (`instance`) served by our direct mode, our worker mode
    or libccid; returns once a client has used it."""
    stop_pcscd()
    # Direct mode and libccid claim the device themselves: no worker may hold it.
    sh("systemctl", "stop", "swiftccid-attach@%s.service" % args.instance, check=False)
    use(argparse.Namespace(driver="libccid" if args.mode == "libccid" else "ours", workers=args.mode == "workers",
                           no_client=True))
    if args.mode == "workers":
        # udev started workers when readers were plugged; this one was plugged before worker mode.
        sh("systemctl", "start", "swiftccid-attach@%s.service" % args.instance)
    reader = wait(lambda: reader_for("(%s)" % args.serial), 60, "pcscd to list %s" % args.serial)
    wait(lambda: usable(reader), 30, "%s usable" % reader)
    return {"reader": reader, "workers": workers(), "pcscd": pcscd_pids()}


def cpu_ns(pids):
    """CPU time of every thread of `pids` so far (schedstat: ns, not ticks)."""
    total = 0
    for pid in pids:
        for stat in glob.glob("/proc/%s/task/*/schedstat" % pid):
            try:
                with open(stat) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass   # a thread that ended meanwhile
    return total


def bench(args):
    """One round of a workload through the guest's pcscd (loadgen), with the
    CPU that ccid-sim, pcscd and attach workers spent on it."""
    apdu, expect = BENCH_WORKLOADS[args.workload]
    reader = reader_for("(%s)" % args.serial)
    if not reader:
        raise AssertionError("no reader (%s)" % args.serial)
    with open("/tmp/bench-apdu.hex", "w") as f:
        f.write(bytes(apdu).hex())
    with open("/tmp/bench-expect.hex", "w") as f:
        f.write(bytes(expect).hex())
    sim_pids = sh("pgrep", "-f", "/usr/bin/ccid-sim serve", check=False).stdout.split()
    parts = {"ccid-sim": sim_pids, "pcscd": pcscd_pids(), "workers": workers()}
    before = {k: cpu_ns(v) for k, v in parts.items()}
    r = sh(LOADGEN, "--rounds", "1", "--count", str(args.count), "--apdu", "@/tmp/bench-apdu.hex",
           "--expect", "@/tmp/bench-expect.hex", "--setup", "%s=%s" % (bytes(SELECT_TEST_APPLET).hex(), bytes(OK).hex()),
           reader, check=False)
    result = [json.loads(line) for line in r.stdout.splitlines()]
    if r.returncode != 0 or len(result) != 1 or result[0]["wrong"] or result[0]["error"]:
        raise AssertionError("loadgen: exit %d %s %s" % (r.returncode, r.stdout, r.stderr))
    result = result[0]
    result["cpu_us_per_apdu"] = {k: (cpu_ns(v) - before[k]) / 1e3 / result["apdus"] for k, v in parts.items()}
    return result


def restore_drivers(args):
    """Every bundle back where its package put it."""
    stop_pcscd()
    for bundle in os.listdir(PARKED) if os.path.isdir(PARKED) else []:
        os.rename(os.path.join(PARKED, bundle), os.path.join(DRIVERS, bundle))
    if os.path.isdir(PARKED):
        os.rmdir(PARKED)
    return {"drivers": sorted(os.listdir(DRIVERS))}


def files():
    found = set()
    for top, dirs, names in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in NOT_SNAPSHOT and d != "__pycache__"]
        found.update(p for p in (os.path.join(top, n) for n in names + dirs) if p not in NOT_SNAPSHOT)
    return found


def install(args):
    """Our packages, installed as a user would: dpkg -i. Nothing may be
    enabled or started; pcscd is not restarted."""
    with open(SNAPSHOT, "w") as f:
        json.dump(sorted(files()), f)
    pcscd_before = pcscd_pids()
    debs = sorted(glob.glob(os.path.join(DEBS, "*.deb")))
    r = sh("dpkg", "-i", *debs)
    listed = sh("dpkg-query", "-W", "-f=${Package} ${Status}\n", "swiftccid", "ccid-sim").stdout.splitlines()
    return {"dpkg": r.stdout + r.stderr, "packages": listed,
            "units": sh("systemctl", "list-units", "--all", "--plain", "--no-legend", "swiftccid-attach*", check=False).stdout.split("\n"),
            "unit_files": sh("systemctl", "list-unit-files", "--plain", "--no-legend", "swiftccid-attach*", check=False).stdout.split("\n"),
            "pcscd_before": pcscd_before, "pcscd_after": pcscd_pids(),
            "rule": os.path.exists("/usr/lib/udev/rules.d/60-swiftccid.rules") or os.path.exists("/lib/udev/rules.d/60-swiftccid.rules")}


def purge(args):
    """dpkg --purge both packages: every file they or their programs left goes."""
    sh("systemctl", "stop", "ccid-sim.service", check=False)
    restore_drivers(args)
    r = sh("dpkg", "--purge", "swiftccid", "ccid-sim")
    sh("systemctl", "daemon-reload")
    with open(SNAPSHOT) as f:
        before = set(json.load(f))
    after = files()
    return {"dpkg": r.stdout + r.stderr, "added": sorted(after - before), "removed": sorted(before - after),
            "left": [p for p in ("/etc/swiftccid", "/run/swiftccid", "/usr/libexec/swiftccid") if os.path.lexists(p)],
            "packages": sh("dpkg-query", "-W", "-f=${Package} ${Status}\n", "swiftccid", "ccid-sim", check=False).stdout.splitlines()}


def simulator(args):
    """The gadget simulator as a transient unit, with no reader of its own until `plug`."""
    sh("systemctl", "stop", "ccid-sim.service", check=False)
    sh("systemctl", "reset-failed", "ccid-sim.service", check=False)
    sh("systemd-run", "--unit=ccid-sim", "--property=Type=exec", "/usr/bin/ccid-sim", "serve", "--gadget", "--dir", SIM_DIR,
       "--profile", args.profile, "--card", "none")
    wait(lambda: sim("list", check=False).returncode == 0, 30, "ccid-sim")
    sim("unplug", "0")
    return {"udcs": sorted(os.listdir("/sys/class/udc"))}


def usb_power(location):
    """The device's USB power management attributes, as udev's rules left them."""
    sh("udevadm", "settle", "--timeout=10", check=False)
    syspath = sh("udevadm", "info", "--query=path", "--name=" + location.split()[0]).stdout.strip()
    out = {}
    for name in ("control", "persist"):
        with open("/sys%s/power/%s" % (syspath, name)) as f:
            out[name] = f.read().strip()
    return out


def plug(args):
    started = time.monotonic()
    line = sim("plug", args.profile, "--card", args.card).stdout.strip()
    fields = line.split("\t")
    name, location = fields[1], fields[5]
    serial = "SIM%d" % (1000 + int(fields[0]))
    out = {"name": name, "serial": serial, "location": location, "instance": instance_of(location)}
    try:
        if args.workers:
            wait(lambda: unit_state(out["instance"]) == "active", 30, "swiftccid-attach@%s active" % out["instance"])
            out["unit_active_s"] = time.monotonic() - started
        if args.no_client:
            return out
        wait(lambda: reader_for("(%s)" % serial), 30, "pcscd to list %s" % serial)
        out["listed_s"] = time.monotonic() - started
        out["power"] = usb_power(location)

        # The name is looked up again until it answers: pcscd may first list a
        # reader for another interface of a composite device, which the driver
        # then refuses and pcscd drops (the VM test saw it once, under load).
        def usable_reader():
            reader = reader_for("(%s)" % serial)
            return reader if reader and (args.card == "none" or usable(reader)) else None
        out["reader"] = wait(usable_reader, 30, "a usable reader (%s)" % serial)
        out["usable_s"] = time.monotonic() - started
        return out
    except AssertionError:
        # Unplugged, so that a failed plug leaves no gadget for the next scenario.
        sim("unplug", name, check=False)
        raise


def unplug(args):
    started = time.monotonic()
    sim("unplug", args.name)
    out = {}
    wait(lambda: not any("(%s)" % args.serial in n for n in readers()), 30, "pcscd to drop %s" % args.serial)
    out["reader_gone_s"] = time.monotonic() - started
    if args.instance:
        wait(lambda: unit_state(args.instance) in ("inactive", "failed", "unknown"), 30, "the unit to stop")
        out["unit_stopped_s"] = time.monotonic() - started
        out["unit_result"] = sh("systemctl", "show", "-P", "Result", "swiftccid-attach@%s.service" % args.instance).stdout.strip()
    return out


def conformance(args):
    test = unittest.TestCase()
    reader = reader_for("(%s)" % args.serial, args.slot)
    for protocol in (S.SCARD_PROTOCOL_T1, S.SCARD_PROTOCOL_T0):
        check_cases_at_every_length(test, reader, protocol, args.apdu_level)
    check_extended_apdus(test, reader, args.extended)
    return {"reader": reader}


def card_events(args):
    """Card out and in, as a PC/SC client sees it (SCardGetStatusChange)."""
    test = unittest.TestCase()
    reader = reader_for("(%s)" % args.serial)
    with Context() as c:
        state = c.state(reader)
        test.assertTrue(state & S.SCARD_STATE_PRESENT)
        sim("remove", args.name)
        state = c.state(reader, state, timeout_ms=10000)
        test.assertTrue(state is not None and state & S.SCARD_STATE_EMPTY, "removal not seen")
        sim("insert", args.name, "--card", "compliance")
        state = c.state(reader, state, timeout_ms=10000)
        test.assertTrue(state is not None and state & S.SCARD_STATE_PRESENT, "insertion not seen")
        card = c.connect(reader, S.SCARD_PROTOCOL_T1)
        test.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
        card.disconnect()
    return {"reader": reader}


def unplug_mid_apdu(args):
    """The reader stops answering (fault: stuck) and is unplugged during the APDU:
    the client's error comes at once, not at the 20 s deadline; pcscd stays."""
    test = unittest.TestCase()
    reader = reader_for("(%s)" % args.serial)
    with Context() as c:
        card = c.connect(reader, S.SCARD_PROTOCOL_T1)
        sim("fault", args.name, "stuck")
        seconds = transmit_cut_short(test, card, lambda: sim("unplug", args.name))
    wait(lambda: not any("(%s)" % args.serial in n for n in readers()), 30, "pcscd to drop %s" % args.serial)
    test.assertEqual(sh("systemctl", "is-active", "pcscd.service", check=False).stdout.strip(), "active")
    return {"cut_to_error_s": seconds}


def reference(args):
    reader = reader_for(args.marker)
    return {"reader": reader, "script": [list(step) for step in reference_script(reader, t0=not args.t1_only,
                                                                                t1=not args.t0_only)]}


def interfaces(args):
    """The interfaces the kernel enumerated for the device with this serial number: {number: class}."""
    base = "/sys/bus/usb/devices"
    for dev in os.listdir(base):
        try:
            with open(os.path.join(base, dev, "serial")) as f:
                if f.read().strip() != args.serial:
                    continue
        except OSError:
            continue
        out = {}
        for entry in os.listdir(base):
            if entry.startswith(dev + ":1."):
                with open(os.path.join(base, entry, "bInterfaceClass")) as f:
                    out[entry.split(".")[-1]] = f.read().strip()
        return {"interfaces": out}
    raise AssertionError("no USB device with serial %s" % args.serial)


def foreign(args):
    """A reader we did not write (QEMU's usb-ccid): wait for it, then its card's ATR and answers."""
    started = time.monotonic()
    reader = wait(lambda: reader_for(args.marker), 60, "pcscd to list %s" % args.marker)
    listed = time.monotonic() - started
    with Context() as c:
        state = wait(lambda: (c.state(reader) or 0) & S.SCARD_STATE_PRESENT, 30, "a card in %s" % reader)
        card = c.connect(reader)
        out = {"reader": reader, "listed_s": listed, "protocol": card.protocol, "state": state,
               "atr": card.attribute(S.SCARD_ATTR_ATR_STRING), "answers": []}
        for apdu in ([0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00],
                     [0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00],
                     [0x80, 0xCA, 0x9F, 0x7F, 0x00], [0x00, 0xB0, 0x00, 0x00, 0x00]):
            answer = card.transmit(apdu)
            out["answers"].append(answer)
            if len(answer) == 2 and answer[0] == 0x61:
                out["answers"].append(card.transmit([0x00, 0xC0, 0x00, 0x00, answer[1]]))
        card.disconnect(S.SCARD_RESET_CARD)
    return out


def gone(args):
    wait(lambda: not any(args.marker in n for n in readers()), 30, "pcscd to drop %s" % args.marker)
    return {}


def churn(args):
    """Readers plugged one right after another, then unplugged the same way, for some rounds."""
    for _ in range(args.rounds):
        plugged = []
        for profile in args.profiles.split(","):
            fields = sim("plug", profile, "--card", "compliance").stdout.strip().split("\t")
            plugged.append((fields[1], "SIM%d" % (1000 + int(fields[0]))))
        if args.use:
            for _, serial in plugged:
                reader = wait(lambda: reader_for("(%s)" % serial), 30, "pcscd to list %s" % serial)
                wait(lambda: usable(reader), 30, "%s usable" % reader)
        for name, _ in plugged:
            sim("unplug", name)
    leftovers = {}

    def settled():
        leftovers.update(census(args))
        return not (leftovers["units"] or leftovers["workers"] or leftovers["sockets"] or leftovers["readers"]
                    or leftovers["gadgets"])
    try:
        wait(settled, 30, "everything to go", interval=0.2)
    except AssertionError as e:
        raise AssertionError("%s; left: %s" % (e, json.dumps(leftovers)))
    return leftovers


def workers():
    return sorted(sh("pgrep", "-x", "ccid-attach", check=False).stdout.split())


def pcscd_state(args):
    return {"service": sh("systemctl", "is-active", "pcscd.service", check=False).stdout.strip(),
            "socket": sh("systemctl", "is-active", "pcscd.socket", check=False).stdout.strip(),
            "pids": pcscd_pids(), "workers": workers(),
            "user": sh("ps", "-o", "user=", "-C", "pcscd", check=False).stdout.split()}


def first_client(args):
    """With pcscd gone: a client connects (pcscd.socket starts pcscd), waits
    until every reader of `markers` is listed and answers SELECT, and leaves."""
    if pcscd_pids():
        raise AssertionError("pcscd is running before the first client: %s" % pcscd_pids())
    started = time.monotonic()
    names = {}
    for marker in args.markers:
        names[marker] = wait(lambda: reader_for(marker), 60, "pcscd to list %s" % marker)
    listed = time.monotonic() - started
    for marker in args.markers:
        wait(lambda: usable(names[marker]), 30, "%s usable" % names[marker])
    return {"listed_s": listed, "usable_s": time.monotonic() - started, "readers": sorted(readers()),
            "pcscd": pcscd_pids(), "workers": workers()}


def wait_exit(args):
    """pcscd exits by itself once no client is left (--auto-exit); its socket stays.

    pcsc-lite 1.9.9 can lose a race here: on SIGALRM its signal thread sets
    the flag its main loop checks 1 ms after select() is interrupted; when the
    flag comes later, the main loop sleeps in select() until a client
    connects, and then exits without serving it. Seen under TCG with libccid
    as with us. Its signature is exact: a bare connection makes that pcscd
    exit at once, where a pcscd that has not decided to go would serve it."""
    started = time.monotonic()
    try:
        wait(lambda: not pcscd_pids(), args.timeout, "pcscd to exit on its own", interval=0.2)
        return {"exit_s": time.monotonic() - started, "race": False, "state": pcscd_state(args)}
    except AssertionError:
        stuck = pcscd_pids()
    import socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect("/run/pcscd/pcscd.comm")
    try:
        wait(lambda: not any(p in stuck for p in pcscd_pids()), 5, "pcscd %s to exit once its main loop woke" % stuck)
    finally:
        probe.close()
    # systemd started a new pcscd for the probe's queued connection: it is not the one under test.
    sh("systemctl", "stop", "pcscd.service")
    wait(lambda: not pcscd_pids(), 30, "the probe's pcscd to stop")
    return {"exit_s": time.monotonic() - started, "race": True, "state": pcscd_state(args)}


def reload(args):
    """systemctl reload pcscd (pcscd --hotplug) with readers attached: the
    same pcscd keeps the same readers, which keep working."""
    before = {"pcscd": pcscd_pids(), "readers": sorted(readers()), "workers": workers()}
    sh("systemctl", "reload", "pcscd.service")
    time.sleep(2)   # pcscd rescans asynchronously: give a wrong rescan the time to show
    for marker in args.markers:
        reader = wait(lambda: reader_for(marker), 30, "pcscd to list %s" % marker)
        wait(lambda: usable(reader), 30, "%s usable" % reader)
    return {"before": before, "after": {"pcscd": pcscd_pids(), "readers": sorted(readers()), "workers": workers()}}


def unprivileged(args):
    """pcscd as its own user: the pcscd user and group and the drop-in
    upstream's unit has (User=pcscd, RuntimeDirectory=pcscd), or back to root."""
    stop_pcscd()
    if args.state == "on":
        if sh("getent", "passwd", "pcscd", check=False).returncode != 0:
            sh("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", "pcscd")
        os.makedirs(os.path.dirname(UNPRIVILEGED), exist_ok=True)
        with open(UNPRIVILEGED, "w") as f:
            f.write("[Service]\nUser=pcscd\nRuntimeDirectory=pcscd\nRuntimeDirectoryPreserve=true\n")
        polkit_owner(True)
    else:
        polkit_owner(False)
        if os.path.exists(UNPRIVILEGED):
            os.unlink(UNPRIVILEGED)
            os.rmdir(os.path.dirname(UNPRIVILEGED))
        sh("userdel", "pcscd", check=False)
        sh("groupdel", "pcscd", check=False)
        # pcscd's runtime directory, made pcscd's by the drop-in, is root's again.
        os.chown("/run/pcscd", 0, 0)
    # swiftccid-generator reads the groups at daemon-reload.
    sh("systemctl", "daemon-reload")
    return {"user": sh("getent", "passwd", "pcscd", check=False).stdout.strip(),
            "generated": sorted(glob.glob("/run/systemd/generator/swiftccid-attach@*/*"))}


def polkit_owner(on):
    """pcscd's polkit actions owned by the pcscd user (as upstream's policy has them), or as Debian ships them."""
    if not os.path.exists(POLKIT_POLICY):
        return
    with open(POLKIT_POLICY) as f:
        text = f.read()
    if on and POLKIT_OWNER not in text:
        text = text.replace("</description>\n", "</description>\n" + POLKIT_OWNER)
    elif not on:
        text = text.replace(POLKIT_OWNER, "")
    with open(POLKIT_POLICY, "w") as f:
        f.write(text)
    # polkitd reads actions when it starts.
    sh("systemctl", "try-restart", "polkit.service")


def perms(args):
    """Owner, group and mode of a device node or socket, and whether `nobody`
    (another unprivileged user) may open it."""
    st = os.stat(args.path)
    import grp
    import pwd
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])" if args.path.endswith(".sock")
             else "import sys\nopen(sys.argv[1], 'r+b')")
    r = sh("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", probe, args.path,
           check=False)
    return {"owner": pwd.getpwuid(st.st_uid).pw_name, "group": grp.getgrgid(st.st_gid).gr_name,
            "mode": "%o" % (st.st_mode & 0o777), "nobody": "PermissionError" if "PermissionError" in r.stderr
            else ("ok" if r.returncode == 0 else r.stderr.strip().splitlines()[-1])}


def doctor(args):
    r = sh("/usr/libexec/swiftccid/ccid-attach", "doctor", args.instance, check=False)
    return {"rc": r.returncode, "out": r.stdout, "err": r.stderr}


def census(args):
    """What is left: attach units, workers, sockets, readers, gadgets."""
    units = sh("systemctl", "list-units", "--all", "--plain", "--no-legend", "swiftccid-attach@*", check=False).stdout.split("\n")
    return {"units": [u.split()[0] for u in units if u.strip()],
            "workers": sh("pgrep", "-x", "ccid-attach", check=False).stdout.split(),
            "sockets": sorted(glob.glob("/run/swiftccid/*.sock")),
            "readers": readers(),
            "gadgets": sorted(os.listdir("/sys/kernel/config/usb_gadget"))}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("use")
    a.add_argument("driver", choices=sorted(BUNDLES))
    a.add_argument("--workers", action="store_true")
    a.add_argument("--no-client", action="store_true", help="leave pcscd stopped, for socket activation")
    sub.add_parser("install")
    sub.add_parser("purge")
    sub.add_parser("restore-drivers")
    sub.add_parser("pcscd-state")
    a = sub.add_parser("first-client")
    a.add_argument("markers", nargs="+")
    a = sub.add_parser("wait-exit")
    a.add_argument("--timeout", type=float, default=150)
    a = sub.add_parser("reload")
    a.add_argument("markers", nargs="+")
    a = sub.add_parser("simulator")
    a.add_argument("--profile", default="omnikey-3121-extended")
    a = sub.add_parser("plug")
    a.add_argument("profile")
    a.add_argument("--card", default="compliance")
    a.add_argument("--workers", action="store_true")
    a.add_argument("--no-client", action="store_true", help="do not connect to pcscd (which would start it)")
    a = sub.add_parser("unplug")
    a.add_argument("name")
    a.add_argument("serial")
    a.add_argument("--instance")
    a = sub.add_parser("conformance")
    a.add_argument("serial")
    a.add_argument("--slot", type=int, default=0)
    a.add_argument("--extended", action="store_true")
    a.add_argument("--apdu-level", action="store_true", help="the reader fetches T=0 responses itself")
    a = sub.add_parser("card-events")
    a.add_argument("name")
    a.add_argument("serial")
    a = sub.add_parser("unplug-mid-apdu")
    a.add_argument("name")
    a.add_argument("serial")
    a = sub.add_parser("reference")
    a.add_argument("marker")
    a.add_argument("--t1-only", action="store_true", help="the reader's dwProtocols has T=1 only (a token)")
    a.add_argument("--t0-only", action="store_true", help="the reader's dwProtocols has T=0 only (an ICCD version A token)")
    a = sub.add_parser("interfaces")
    a.add_argument("serial")
    a = sub.add_parser("foreign")
    a.add_argument("marker")
    a = sub.add_parser("gone")
    a.add_argument("marker")
    a = sub.add_parser("churn")
    a.add_argument("profiles")
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--use", action="store_true", help="wait until each reader is usable before unplugging")
    sub.add_parser("census")
    a = sub.add_parser("unprivileged")
    a.add_argument("state", choices=["on", "off"])
    a = sub.add_parser("perms")
    a.add_argument("path")
    a = sub.add_parser("doctor")
    a.add_argument("instance")
    a = sub.add_parser("bench-mode")
    a.add_argument("mode", choices=["direct", "workers", "libccid"])
    a.add_argument("instance")
    a.add_argument("serial")
    a = sub.add_parser("bench")
    a.add_argument("serial")
    a.add_argument("workload", choices=sorted(BENCH_WORKLOADS))
    a.add_argument("--count", type=int, default=100)
    args = p.parse_args()
    result = {"use": use, "simulator": simulator, "plug": plug, "unplug": unplug, "conformance": conformance,
              "card-events": card_events, "unplug-mid-apdu": unplug_mid_apdu, "reference": reference, "interfaces": interfaces, "foreign": foreign, "gone": gone,
              "churn": churn, "census": census, "install": install, "purge": purge, "restore-drivers": restore_drivers,
              "pcscd-state": pcscd_state, "first-client": first_client, "wait-exit": wait_exit,
              "reload": reload, "unprivileged": unprivileged, "perms": perms, "doctor": doctor,
              "bench-mode": bench_mode, "bench": bench}[args.command](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
