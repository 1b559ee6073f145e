"""A relay server that misbehaves on purpose, speaking the protocol of
docs/relay-protocol.md from the same vectors the Swift tests use."""
import os
import random
import socket
import struct
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATR = bytes.fromhex("3BD6180080B1806D1F038051006110309E")


def vector(name):
    with open(os.path.join(ROOT, "docs", "relay-vectors.txt")) as f:
        for line in f:
            if line.startswith(name + "\t"):
                return bytes.fromhex(line.split("\t")[1].strip())
    raise KeyError(name)


def frame(kind, payload):
    return bytes([kind]) + struct.pack(">I", len(payload)) + payload


def ccid(kind, slot, seq, status, error, specific, data=b""):
    return bytes([kind]) + struct.pack("<I", len(data)) + bytes([slot, seq, status, error, specific]) + data


MODES = {
    "garbage-hello": "sends an HTTP answer instead of a hello",
    "garbage-reply": "answers APDUs with random bytes",
    "length-lie": "answers with a CCID dwLength far beyond the frame",
    "wrong-seq": "answers APDUs with the wrong sequence number",
    "wrong-slot": "answers APDUs for another slot",
    "silence": "never answers an APDU",
    "truncated": "sends half a frame, then hangs up",
    "oversized": "announces a 2 GiB frame",
    "unknown-frame": "sends a frame type that does not exist",
    "time-extension-storm": "asks for more time, forever",
}


class HostileRelay:
    def __init__(self, path, mode):
        self.path, self.mode = path, mode
        # Seeded: a garbage reply that breaks something breaks it on every run.
        self.rng = random.Random(0x6A5)
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        try:
            if self.mode == "garbage-hello":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                conn.recv(1)
                return
            conn.sendall(vector("hello_cherry"))
            while True:
                header = self.read(conn, 5)
                kind, length = header[0], struct.unpack(">I", header[1:])[0]
                payload = self.read(conn, length)
                if kind == 0x20:   # CONTROL: done, no data
                    conn.sendall(frame(0x21, payload[:4] + b"\0"))
                elif kind == 0x10:
                    self.bulk(conn, payload)
        except (OSError, EOFError):
            pass
        finally:
            conn.close()

    @staticmethod
    def read(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def bulk(self, conn, msg):
        kind, slot, seq = msg[0], msg[5], msg[6]
        reply = None
        if kind == 0x65 or kind == 0x63:   # GetSlotStatus, IccPowerOff
            reply = ccid(0x81, slot, seq, 0x00, 0, 0)
        elif kind == 0x62:                 # IccPowerOn
            reply = ccid(0x80, slot, seq, 0x00, 0, 0, ATR)
        elif kind == 0x61:                 # SetParameters: echo
            reply = ccid(0x82, slot, seq, 0x00, 0, msg[7], msg[10:])
        elif kind == 0x6F:
            reply = self.misbehave(conn, slot, seq)
        else:
            reply = ccid(0x81, slot, seq, 0x40, 0, 0)
        if reply is not None:
            conn.sendall(frame(0x11, reply))

    def misbehave(self, conn, slot, seq):
        m = self.mode
        if m == "garbage-reply":
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(0, 40)))
        if m == "length-lie":
            return bytes([0x80]) + struct.pack("<I", 0xFFFFFFF0) + bytes([slot, seq, 0, 0, 0]) + b"\x90\x00"
        if m == "wrong-seq":
            return ccid(0x80, slot, (seq + 1) & 0xFF, 0, 0, 0, b"\x90\x00")
        if m == "wrong-slot":
            return ccid(0x80, (slot + 3) & 0xFF, seq, 0, 0, 0, b"\x90\x00")
        if m == "silence":
            return None
        if m == "truncated":
            conn.sendall(bytes([0x11]) + struct.pack(">I", 100) + b"\x80" * 10)
            conn.shutdown(socket.SHUT_RDWR)
            return None
        if m == "oversized":
            conn.sendall(bytes([0x11]) + struct.pack(">I", 0x7FFFFFFF) + b"\x80" * 16)
            return None
        if m == "unknown-frame":
            conn.sendall(frame(0x77, b"\x00" * 8))
            return None
        if m == "time-extension-storm":
            def storm():
                try:
                    for _ in range(400):
                        conn.sendall(frame(0x11, ccid(0x80, slot, seq, 0x80, 0xFF, 0)))
                        threading.Event().wait(0.05)
                except OSError:
                    pass
            threading.Thread(target=storm, daemon=True).start()
            return None
        raise ValueError(m)

    def close(self):
        self.stop = True
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
