"""A QEMU guest under TCG, driven from the host: QMP on one UNIX socket,
the guest's agent (agent.py) on a second serial port, the kernel console in
a log file."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import image

CMDLINE = ("console=ttyS0 rdinit=/lib/systemd/systemd panic=-1 loglevel=4 systemd.show_status=0 "
           "mitigations=off nowatchdog random.trust_cpu=on systemd.firstboot=0")


class AgentError(Exception):
    pass


class Machine:
    def __init__(self, release, memory_mb=2048, cpus=2):
        self.release = release
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="sccid-vm-%s-" % release)
        self.console = os.path.join(self.dir, "console.log")
        self.next_id = 0
        self.agent = None
        self.qmp = None

    def __enter__(self):
        vmlinuz, base = image.base(self.release)
        overlay = os.path.join(self.dir, "overlay.cpio")
        image.overlay(overlay)
        initrd = os.path.join(self.dir, "initrd.cpio")
        with open(initrd, "wb") as out:
            for part in (base, overlay):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        os.unlink(overlay)
        self.booted_at = time.monotonic()
        argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(self.cpus),
                "-m", str(self.memory_mb), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-kernel", vmlinuz, "-initrd", initrd, "-append", CMDLINE,
                "-serial", "file:" + self.console,
                "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % self._path("agent.sock"),
                "-serial", "chardev:agent",
                "-qmp", "unix:%s,server=on,wait=off" % self._path("qmp.sock"),
                "-device", "qemu-xhci,id=xhci"]
        self.log = open(os.path.join(self.dir, "qemu.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.qmp = QMP(self._path("qmp.sock"), self.proc)
            self._connect_agent(timeout=240)
            self.boot_seconds = time.monotonic() - self.booted_at
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _connect_agent(self, timeout):
        limit = time.monotonic() + timeout
        while self.agent is None:
            if self.proc.poll() is not None:
                raise AgentError("QEMU exited (%s): %s" % (self.proc.returncode, self.console_tail()))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self._path("agent.sock"))
                self.agent = s
                self.agent_buffer = b""
            except OSError:
                s.close()
                time.sleep(0.2)
        # The agent may not be up yet: ask until it answers.
        while True:
            try:
                self.run(["true"], timeout=3, reply_timeout=3)
                return
            except AgentError:
                if time.monotonic() > limit or self.proc.poll() is not None:
                    raise AgentError("the guest's agent never answered: %s" % self.console_tail())

    def console_tail(self, n=40):
        try:
            with open(self.console, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def run(self, argv, timeout=120, input="", reply_timeout=None):
        """Runs argv in the guest; returns the agent's answer (rc, out, err, seconds)."""
        self.next_id += 1
        ident = self.next_id
        request = {"id": ident, "argv": argv, "timeout": timeout, "input": input}
        self.agent.sendall(json.dumps(request).encode() + b"\n")
        limit = time.monotonic() + (reply_timeout or timeout + 30)
        while True:
            while b"\n" in self.agent_buffer:
                line, self.agent_buffer = self.agent_buffer.split(b"\n", 1)
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("id") == ident and "rc" in answer:
                    return answer
            remaining = limit - time.monotonic()
            if remaining <= 0:
                raise AgentError("no answer to %r" % (argv,))
            self.agent.settimeout(remaining)
            try:
                chunk = self.agent.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                raise AgentError("the agent's console closed")
            self.agent_buffer += chunk

    def check(self, argv, timeout=120):
        answer = self.run(argv, timeout=timeout)
        if answer["rc"] != 0:
            raise AssertionError("%s failed (%s):\n%s%s" % (" ".join(argv), answer["rc"], answer["out"], answer["err"]))
        return answer

    def guest(self, *args, timeout=300):
        """tests/vm/guest.py in the guest; its JSON result."""
        answer = self.check(["/usr/bin/python3", "/usr/lib/swiftccid-vm/guest.py"] + list(args), timeout=timeout)
        return json.loads(answer["out"])

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            try:
                self.qmp.command("quit")
            except Exception:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.qmp:
            self.qmp.file.close()
        for s in (self.agent, self.qmp and self.qmp.sock):
            if s:
                s.close()
        if getattr(self, "log", None):
            self.log.close()
        if os.environ.get("SWIFTCCID_VM_KEEP"):
            print("VM files kept in " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class QMP:
    def __init__(self, path, proc, timeout=30):
        limit = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > limit or proc.poll() is not None:
                    raise AgentError("no QMP socket")
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        json.loads(self.file.readline())
        self.command("qmp_capabilities")

    def command(self, name, **arguments):
        message = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self.file.write(json.dumps(message).encode() + b"\n")
        self.file.flush()
        while True:
            answer = json.loads(self.file.readline())
            if "return" in answer:
                return answer["return"]
            if "error" in answer:
                raise AgentError("QMP %s: %s" % (name, answer["error"]))
