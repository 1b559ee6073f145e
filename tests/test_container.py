"""Real systemd and udev in a container (systemd-nspawn,
booted on a debootstrap root) with our rules, unit and worker installed by `make install DESTDIR=`:
a udev event for a simulated reader starts the templated instance, which runs
ccid-attach with the unit's argv under the unit's sandbox and serves the
reader on the socket systemd made (swiftccid-attach@.socket); reload returns
once the worker has reloaded; the remove event stops both.

The container has no USB: the reader is ccid-sim's umockdev device inside
the container, the event's properties are what the real `udevadm test`
computes with the installed rules for that device, and a drop-in gives the
worker umockdev's preload (and write access to the testbed, which the
preload needs). Everything else is the unit as installed."""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from simharness import ROOT, wait_for
from vm.image import debian_mirror

ROOTFS = os.environ.get("SWIFTCCID_TEST_ROOTFS", "/var/tmp/swiftccid-test-rootfs")
PACKAGES = "systemd,systemd-sysv,udev,kmod,libusb-1.0-0,umockdev,libumockdev0"
EVENT = os.path.join(ROOT, "tests", "udev_event.py")


def build_rootfs():
    """A minimal Debian with systemd and udev, cached between runs (stamp file)."""
    stamp = os.path.join(ROOTFS, ".swiftccid-packages")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == PACKAGES:
                return
    shutil.rmtree(ROOTFS, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "--include=" + PACKAGES, "bookworm", ROOTFS, debian_mirror()],
                   check=True, capture_output=True, timeout=900)
    with open(stamp, "w") as f:
        f.write(PACKAGES)


def install_into_rootfs():
    r = subprocess.run(["make", "-s", "install", "DESTDIR=" + ROOTFS, "PREFIX=/usr"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    # With a writable /sys, udev's trigger would replay the host's devices into the container.
    trigger = os.path.join(ROOTFS, "etc/systemd/system/systemd-udev-trigger.service")
    if os.path.lexists(trigger):
        os.unlink(trigger)
    os.symlink("/dev/null", trigger)
    os.makedirs(os.path.join(ROOTFS, "etc/swiftccid"), exist_ok=True)
    open(os.path.join(ROOTFS, "etc/swiftccid/usb-workers"), "w").close()


class Container:
    def __init__(self):
        self.proc = None
        self.pid1 = None

    def __enter__(self):
        script = ('mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 exec systemd-nspawn -D "$0" '
                  '--volatile=overlay --boot --register=no --keep-unit --private-network --console=read-only')
        self.log = tempfile.NamedTemporaryFile(prefix="sccid-nspawn", suffix=".log", delete=False)
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, ROOTFS],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._find_pid1, timeout=60, what="the container's PID 1")
        wait_for(lambda: self.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded"),
                 timeout=60, what="the container to boot")
        wait_for(lambda: self.run("systemctl", "is-active", "systemd-udevd").stdout.strip() == "active", timeout=30,
                 what="udevd")
        # PID 1 listens to udev only if /run/udev/control existed when it started.
        self.run("systemctl", "daemon-reexec", check=True)
        wait_for(lambda: self.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded"),
                 timeout=30, what="PID 1 after re-exec")
        return self

    def _find_pid1(self):
        nspawn = [p for p in self._children(self.proc.pid) if self._comm(p) == "systemd-nspawn"] or \
                 ([self.proc.pid] if self._comm(self.proc.pid) == "systemd-nspawn" else [])
        for n in nspawn:
            for c in self._children(n):
                if self._comm(c) == "systemd":
                    self.pid1 = c
                    return True
        return False

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    @classmethod
    def _comm(cls, pid):
        return cls._read("/proc/%d/comm" % pid).strip()

    @classmethod
    def _children(cls, pid):
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return []
        return [int(c) for t in tasks for c in cls._read("/proc/%d/task/%s/children" % (pid, t)).split()]

    def run(self, *argv, check=False, env=None, timeout=60):
        cmd = ["nsenter", "-t", str(self.pid1), "-a"] + (["env"] + ["%s=%s" % kv for kv in env.items()] if env else []) + list(argv)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)

    def udev_event(self, props):
        subprocess.run(["nsenter", "-t", str(self.pid1), "-n", "/usr/bin/python3", EVENT] +
                       ["%s=%s" % kv for kv in props.items()], check=True, timeout=30)

    def path(self, inside):
        return "/proc/%d/root%s" % (self.pid1, inside)

    def __exit__(self, *exc):
        if self.pid1 and self.proc.poll() is None:
            self.run("systemctl", "poweroff", "--no-block")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)
        return False


def relay_get_slot_status(path):
    """A relay client in a few lines: HELLO, then PC_to_RDR_GetSlotStatus → RDR_to_PC_SlotStatus."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)

    def frame():
        head = b""
        while len(head) < 5:
            head += s.recv(5 - len(head))
        kind, length = head[0], struct.unpack(">I", head[1:])[0]
        body = b""
        while len(body) < length:
            body += s.recv(length - len(body))
        return kind, body
    kind, hello = frame()
    assert kind == 0x01 and hello[:4] == b"SCCR", (kind, hello[:8])
    s.sendall(bytes([0x10]) + struct.pack(">I", 10) + bytes([0x65, 0, 0, 0, 0, 0, 7, 0, 0, 0]))
    kind, reply = frame()
    s.close()
    return kind, reply


@unittest.skipUnless(shutil.which("systemd-nspawn") and shutil.which("debootstrap"), "systemd-container/debootstrap missing")
class SystemdInAContainer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build_rootfs()
        install_into_rootfs()
        cls.container = Container().__enter__()
        c = cls.container
        c.run("mkdir", "-p", "/run/sim", check=True)
        cls.sim = subprocess.Popen(["nsenter", "-t", str(c.pid1), "-a", "env", "TMPDIR=/run/sim",
                                    "/usr/bin/ccid-sim", "serve", "--usb", "--dir", "/run/sim"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = cls.sim.stdout.readline().strip()
        if not line.startswith("UMOCKDEV_DIR="):
            raise RuntimeError("ccid-sim in the container: %r %s" % (line, cls.sim.stderr.read()))
        cls.testbed = line.split("=", 1)[1]
        dropin = "/run/systemd/system/swiftccid-attach@.service.d"
        c.run("mkdir", "-p", dropin, check=True)
        with open(c.path(dropin + "/umockdev.conf"), "w") as f:
            f.write("[Service]\nEnvironment=LD_PRELOAD=libumockdev-preload.so.0 UMOCKDEV_DIR=%s\nReadWritePaths=/run/sim\n"
                    % cls.testbed)
        c.run("systemctl", "daemon-reload", check=True)

    @classmethod
    def tearDownClass(cls):
        cls.sim.terminate()
        try:
            cls.sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.sim.kill()
        cls.sim.stdout.close()
        cls.sim.stderr.close()
        cls.container.__exit__(None, None, None)

    def event_properties(self, action):
        """What the container's real udev, with our installed rule, makes of the simulated reader."""
        r = self.container.run("udevadm", "test", "--action=" + action, "/sys/devices/1-2",
                               env={"UMOCKDEV_DIR": self.testbed, "LD_PRELOAD": "libumockdev-preload.so.0"})
        props = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l and l.split("=", 1)[0].isupper()
                     and l.split("=", 1)[0].replace("_", "").isalnum())
        self.assertIn("swiftccid-attach@001-002.service", props.get("SYSTEMD_WANTS", ""), r.stdout + r.stderr)
        props["SEQNUM"] = str(int(time.time() * 1000) % 1000000)
        return props

    def unit_state(self, kind="service"):
        return self.container.run("systemctl", "show", "-p", "ActiveState,SubState,MainPID",
                                  "swiftccid-attach@001-002." + kind).stdout

    def test_udev_event_starts_the_sandboxed_worker_and_remove_stops_it(self):
        c = self.container
        c.udev_event(self.event_properties("add"))
        wait_for(lambda: "SubState=running" in self.unit_state(), timeout=20, what="the worker unit running")
        pid = int(dict(l.split("=", 1) for l in self.unit_state().split()).get("MainPID", "0"))
        self.assertGreater(pid, 0)
        argv = c.run("cat", "/proc/%d/cmdline" % pid).stdout.split("\0")[:-1]
        self.assertEqual(argv, ["/usr/libexec/swiftccid/ccid-attach", "attach", "001-002"])
        status = dict(l.split(":", 1) for l in c.run("cat", "/proc/%d/status" % pid).stdout.splitlines() if ":" in l)
        self.assertEqual(status["CapBnd"].strip(), "0000000000000000")
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Seccomp"].strip(), "2")
        # The worker serves the reader: a relay client gets the slot status through it.
        kind, reply = relay_get_slot_status(c.path("/run/swiftccid/usb-001-002.sock"))
        self.assertEqual(kind, 0x11)
        self.assertEqual(reply[0], 0x81)          # RDR_to_PC_SlotStatus
        self.assertEqual(reply[6], 7)             # our bSeq
        journal = c.run("journalctl", "-u", "swiftccid-attach@001-002", "--no-pager").stdout
        self.assertIn("serving 076b:3031", journal)
        self.assertIn("Started swiftccid-attach@001-002.service", journal)
        # The socket is systemd's (socket unit active, passed as fd 3), with the unit's mode.
        self.assertIn("SubState=running", self.unit_state("socket"))
        self.assertTrue(c.run("readlink", "/proc/%d/fd/3" % pid).stdout.startswith("socket:"))
        self.assertEqual(oct(os.stat(c.path("/run/swiftccid/usb-001-002.sock")).st_mode & 0o777), "0o660")
        # Reload is synchronous: when systemctl returns, the worker has re-read its configuration.
        for expected in ("1", "2"):
            r = c.run("systemctl", "reload", "swiftccid-attach@001-002.service")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(c.path("/run/swiftccid/usb-001-002.reloads")) as f:
                self.assertEqual(f.read().strip(), expected)
        self.assertIn("SubState=running", self.unit_state())
        kind, reply = relay_get_slot_status(c.path("/run/swiftccid/usb-001-002.sock"))
        self.assertEqual((kind, reply[0]), (0x11, 0x81))

        c.udev_event(dict(self.event_properties("add"), ACTION="remove"))
        wait_for(lambda: "ActiveState=inactive" in self.unit_state(), timeout=20, what="the worker unit stopped")
        journal = c.run("journalctl", "-u", "swiftccid-attach@001-002", "--no-pager").stdout
        self.assertIn("stopping", journal)
        self.assertIn("Deactivated successfully", journal)
        wait_for(lambda: "ActiveState=inactive" in self.unit_state("socket"), timeout=20, what="the socket unit stopped")
        self.assertFalse(os.path.exists(c.path("/run/swiftccid/usb-001-002.sock")))


if __name__ == "__main__":
    unittest.main()
