"""The guest's side of the VM test (run through the agent): plug and unplug
gadget readers and time what follows, switch drivers and modes, and run the
conformance checks of tests/pcsc.py against the guest's pcscd. Prints one
JSON object; a failed check exits non-zero with its traceback."""
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
    reference_script, transmit_cut_short

DRIVERS = "/usr/lib/pcsc/drivers"
PARKED = "/usr/lib/pcsc/drivers.parked"
BUNDLES = {"ours": "ifd-swiftccid.bundle", "libccid": "ifd-ccid.bundle"}
WORKERS = "/etc/swiftccid/usb-workers"
SIM_DIR = "/run/ccid-sim"


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
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


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


def use(args):
    """Exactly one driver bundle in pcscd's directory, worker mode on or off, pcscd restarted."""
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
    sh("systemctl", "restart", "pcscd.service")
    wait(lambda: sh("systemctl", "is-active", "pcscd.service", check=False).stdout.strip() == "active", 30, "pcscd")
    wait(lambda: readers() is not None and os.path.exists("/run/pcscd/pcscd.comm"), 30, "pcscd's socket")
    return {"drivers": sorted(os.listdir(DRIVERS)), "workers": os.path.exists(WORKERS)}


def simulator(args):
    """The gadget simulator as a transient unit, with no reader of its own until `plug`."""
    sh("systemctl", "stop", "ccid-sim.service", check=False)
    sh("systemctl", "reset-failed", "ccid-sim.service", check=False)
    sh("systemd-run", "--unit=ccid-sim", "--property=Type=exec", "/usr/bin/ccid-sim", "serve", "--gadget", "--dir", SIM_DIR,
       "--profile", args.profile, "--card", "none")
    wait(lambda: sim("list", check=False).returncode == 0, 30, "ccid-sim")
    sim("unplug", "0")
    return {"udcs": sorted(os.listdir("/sys/class/udc"))}


def plug(args):
    started = time.monotonic()
    line = sim("plug", args.profile, "--card", args.card).stdout.strip()
    fields = line.split("\t")
    name, location = fields[1], fields[5]
    serial = "SIM%d" % (1000 + int(fields[0]))
    out = {"name": name, "serial": serial, "location": location, "instance": instance_of(location)}
    if args.workers:
        wait(lambda: unit_state(out["instance"]) == "active", 30, "swiftccid-attach@%s active" % out["instance"])
        out["unit_active_s"] = time.monotonic() - started
    out["reader"] = wait(lambda: reader_for("(%s)" % serial), 30, "pcscd to list %s" % serial)
    out["listed_s"] = time.monotonic() - started
    if args.card != "none":
        wait(lambda: usable(out["reader"]), 30, "%s usable" % out["reader"])
    out["usable_s"] = time.monotonic() - started
    return out


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
        check_cases_at_every_length(test, reader, protocol)
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
    return {"reader": reader, "script": [list(step) for step in reference_script(reader)]}


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
    a = sub.add_parser("simulator")
    a.add_argument("--profile", default="omnikey-3121-extended")
    a = sub.add_parser("plug")
    a.add_argument("profile")
    a.add_argument("--card", default="compliance")
    a.add_argument("--workers", action="store_true")
    a = sub.add_parser("unplug")
    a.add_argument("name")
    a.add_argument("serial")
    a.add_argument("--instance")
    a = sub.add_parser("conformance")
    a.add_argument("serial")
    a.add_argument("--slot", type=int, default=0)
    a.add_argument("--extended", action="store_true")
    a = sub.add_parser("card-events")
    a.add_argument("name")
    a.add_argument("serial")
    a = sub.add_parser("unplug-mid-apdu")
    a.add_argument("name")
    a.add_argument("serial")
    a = sub.add_parser("reference")
    a.add_argument("marker")
    a = sub.add_parser("foreign")
    a.add_argument("marker")
    a = sub.add_parser("gone")
    a.add_argument("marker")
    a = sub.add_parser("churn")
    a.add_argument("profiles")
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--use", action="store_true", help="wait until each reader is usable before unplugging")
    sub.add_parser("census")
    args = p.parse_args()
    result = {"use": use, "simulator": simulator, "plug": plug, "unplug": unplug, "conformance": conformance,
              "card-events": card_events, "unplug-mid-apdu": unplug_mid_apdu, "reference": reference, "foreign": foreign, "gone": gone,
              "churn": churn, "census": census}[args.command](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
