"""Test glue: a private pcscd with our driver and ccid-sim readers.

libpcsclite caches the server socket path per process, so every scenario in
one test process uses the same directory (and so the same socket path);
scenarios run one after another.
"""
import os
import signal
import subprocess
import time

from pcsc import seq  # noqa: F401 (tests import it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.environ.get("CCID_SIM", os.path.join(ROOT, "build", "ccid-sim"))
DIR = "/tmp/sccid-it-%d" % os.getpid()
SOCKET = os.path.join(DIR, "pcscd", "pcscd.comm")
os.environ["PCSCLITE_CSOCK_NAME"] = SOCKET

# The built-in "o2micro-oz776-char" profile has the Oz776's descriptor but not
# its firmware's defects (only 9600 bps, no PPS). Where a test drives it as a
# textbook character-level reader (PPS, T=1), the driver's quirks for those
# defects (D4, R3) are switched off; tests/test_quirks.py shows them at work.
TEXTBOOK_CHARACTER_READER = {"SWIFTCCID_QUIRKS_OFF": "D4+R3"}


class PrivatePCSCD:
    """`ccid-sim pcscd` for the length of a `with` block. With another
    `directory` than DIR, this process's pyscard cannot reach it (libpcsclite
    keeps one socket per process): use `socket` from a child process."""

    def __init__(self, *args, env=None, wait_for_readers=True, directory=DIR):
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.dir = directory
        self.socket = os.path.join(directory, "pcscd", "pcscd.comm")
        self.log = directory + ".pcscd.log"
        # ccid-sim's own log lines go to a file: a pipe nobody reads could fill and stall it.
        self.sim_log = directory + ".ccid-sim.log"
        self.proc = None
        self.wait_for_readers = wait_for_readers
        self.umockdev_dir = None

    def __enter__(self):
        cmd = [SIM, "pcscd", "--dir", self.dir, "--pcscd-log", self.log] + self.args
        with open(self.sim_log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=self.env)
        first = self.proc.stdout.readline().strip()
        if first != "PCSCLITE_CSOCK_NAME=" + self.socket:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("ccid-sim pcscd did not start: %r %s" % (first, self.sim_log_text()))
        if "--usb" in self.args:
            second = self.proc.stdout.readline().strip()
            if second.startswith("UMOCKDEV_DIR="):
                self.umockdev_dir = second.split("=", 1)[1]
        try:
            self.pcscd_pid = pcscd_pid(self.dir)
            if self.wait_for_readers:
                wait_for(lambda: len(reader_names()) > 0, what="pcscd lists readers")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def mock_env(self):
        """Environment in which another program sees the simulated USB devices."""
        return dict(os.environ, UMOCKDEV_DIR=self.umockdev_dir, LD_PRELOAD="libumockdev-preload.so.0")

    def sim(self, *args):
        """Runs a `ccid-sim` subcommand against this simulator."""
        return subprocess.run([SIM] + list(args) + ["--dir", self.dir], capture_output=True, text=True, timeout=20)

    def pcscd_alive(self):
        try:
            os.kill(self.pcscd_pid, 0)
            return True
        except OSError:
            return False

    def sim_log_text(self):
        """What ccid-sim has logged so far."""
        with open(self.sim_log, errors="replace") as f:
            return f.read()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def __exit__(self, *exc):
        stop(self.proc)
        self.proc.stdout.close()
        return False


def stop(proc, timeout=15):
    """SIGTERM, and SIGKILL if that was not enough within `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pcscd_pid(directory=DIR):
    with open(os.path.join(directory, "pcscd", "pcscd.pid")) as f:
        return int(f.read().strip("\0\n "))


def wait_for(predicate, timeout=10.0, what="condition"):
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def reader_names():
    from smartcard.scard import (SCardEstablishContext, SCardListReaders, SCardReleaseContext,
                                 SCARD_SCOPE_USER, SCARD_S_SUCCESS)
    rv, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    if rv != SCARD_S_SUCCESS:
        return []
    try:
        rv, readers = SCardListReaders(ctx, [])
        return list(readers) if rv == SCARD_S_SUCCESS else []
    finally:
        SCardReleaseContext(ctx)


