"""The VM test's agent, in the guest on a serial port (the host's control
console): one JSON request per line, {"id", "argv", "timeout", "input"},
answered with one JSON line {"id", "rc", "out", "err", "seconds"}. Requests
run one at a time; long-lived programs are started with systemd-run."""
import json
import os
import subprocess
import sys
import time
import tty


def main(port):
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    out = os.fdopen(os.dup(fd), "w", buffering=1)
    out.write(json.dumps({"ready": True}) + "\n")
    pending = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            time.sleep(0.1)
            continue
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError:
                out.write(json.dumps({"error": "bad request line"}) + "\n")
                continue
            out.write(json.dumps(handle(request)) + "\n")


def handle(request):
    started = time.monotonic()
    answer = {"id": request.get("id")}
    try:
        r = subprocess.run(request["argv"], input=request.get("input", ""), capture_output=True, text=True,
                           errors="replace", timeout=request.get("timeout", 60), env=dict(os.environ, **request.get("env", {})))
        answer.update(rc=r.returncode, out=r.stdout, err=r.stderr)
    except subprocess.TimeoutExpired as e:
        answer.update(rc=-1, out=str(e.stdout or ""), err="timed out after %ss" % request.get("timeout", 60))
    except OSError as e:
        answer.update(rc=-2, out="", err=str(e))
    answer["seconds"] = time.monotonic() - started
    return answer


if __name__ == "__main__":
    main(sys.argv[1])
