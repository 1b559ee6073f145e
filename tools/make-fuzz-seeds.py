#!/usr/bin/python3
"""Writes Fuzz/seeds/<target>.hex: seed inputs for each fuzz target, one hex
string per line, from real data (the reader corpus, pcsc-tools' ATR list,
the relay vectors) and a few hand-made exchanges.

usage: make-fuzz-seeds.py READERS_DIR (data/ccid-readers)
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = sys.argv[1]
out = os.path.join(ROOT, "Fuzz", "seeds")
os.makedirs(out, exist_ok=True)


def chunks(*parts):
    """The length-prefixed chunk format the engine and driver targets read."""
    b = b""
    for p in parts:
        for i in range(0, max(len(p), 1), 255):
            piece = p[i:i + 255]
            b += bytes([len(piece)]) + piece
    return b


def write(name, seeds):
    seen, lines = set(), []
    for s in seeds:
        if s not in seen:
            seen.add(s)
            lines.append(s.hex())
    with open(os.path.join(out, name + ".hex"), "w") as f:
        f.write("\n".join(lines) + "\n")


descriptors = [bytes.fromhex(d["descriptor_hex"]) for d in json.load(open(os.path.join(shared, "descriptors.json")))]
config_head = bytes([9, 2, 0, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 3, 0x0B, 0, 0, 0])
endpoints = bytes([7, 5, 1, 2, 64, 0, 0, 7, 5, 0x82, 2, 64, 0, 0, 7, 5, 0x83, 3, 8, 0, 16])
write("class-descriptor", descriptors + [config_head + d + endpoints for d in descriptors[:50]])

atrs = [bytes.fromhex("3BD6180080B1806D1F038051006110309E"), bytes.fromhex("3F96188001805100611030 9F".replace(" ", "")),
        bytes.fromhex("3BD6180081B1807D1F038051006110308F")]
try:
    for line in open("/usr/share/pcsc/smartcard_list.txt", errors="replace"):
        if re.match(r"^3[BF]( [0-9A-F]{2})+\s*$", line):
            atrs.append(bytes.fromhex(line.replace(" ", "").strip()))
        if len(atrs) >= 300:
            break
except OSError:
    pass
write("atr", atrs)

replies = [bytes.fromhex(h) for h in [
    "80020000000000000000 9000".replace(" ", ""), "800000000000010000 00".replace(" ", ""),
    "81000000000001000000", "81000000000001400100", "82070000000001000000 1100fe00000000".replace(" ", ""),
    "8300000000000100000000", "84080000000001000000 a00f000080250000".replace(" ", ""), "5003", "510001ff"]]
commands = [bytes.fromhex(h) for h in ["62000000000001010000", "6f05000000000200000000a4040000", "65000000000003000000",
                                       "6d050000000004000000 1100fe0000".replace(" ", "")]]
write("ccid-messages", replies + commands)

write("pps", [bytes([1, 0xFF, 0x11, 0x18, 0xF6]), bytes([0, 0xFF, 0x00, 0xFF]), bytes([0x81, 0xFF, 0x11, 0x96, 0x78])])

vectors = []
for line in open(os.path.join(ROOT, "docs", "relay-vectors.txt")):
    if "\t" in line and not line.startswith("#"):
        vectors.append(bytes.fromhex(line.split("\t", 1)[1].strip()))
write("relay-frames", [chunks(v) for v in vectors] + [chunks(*vectors)])

# T=1: IFSC, IFSD, flags, then the card's blocks (LRC).
def block(nad, pcb, info):
    b = bytes([nad, pcb, len(info)]) + info
    lrc = 0
    for x in b:
        lrc ^= x
    return b + bytes([lrc])
write("t1-host", [bytes([32, 254, 0]) + chunks(block(0, 0x00, b"\x90\x00")),
                  bytes([32, 254, 2]) + chunks(block(0, 0xE1, b"\xfe"), block(0, 0x00, b"\x90\x00")),
                  bytes([16, 254, 0]) + chunks(block(0, 0x80, b""), block(0, 0xC3, b"\x02"), block(0, 0x20, b"\x01\x02"),
                                               block(0, 0x90, b""), block(0, 0x40, b"\x90\x00"))])
# T=0: the TPDU header, then the card's procedure bytes and data.
write("t0-character", [bytes([0x80, 0x34, 0x00, 0x10, 0x10]) + chunks(b"\x34", bytes(range(16)) + b"\x90", b"\x00"),
                       bytes([0x80, 0x32, 0x00, 0x00, 0x04]) + chunks(b"\x60", b"\xcd", b"\x90\x00"),
                       bytes([0x80, 0x34, 0x00, 0x10, 0x10]) + chunks(b"\x6c", b"\x10")])
# An APDU-level reader's T=0 transport: the APDU's shape, then the card's answers.
write("t0-reader", [b"\x00" + chunks(b"\x6c\x10", bytes(range(16)) + b"\x90\x00"),
                    b"\x01" + chunks(b"\x61\x03", b"\x00\x01\x02\x90\x00"),
                    b"\x02" + chunks(*([b"\x90\x00"] * 3), b"\x61\x00", bytes(256) + b"\x61\x2c", bytes(44) + b"\x90\x00"),
                    b"\x00" + chunks(*([b"\x61\x00"] * 20))])
# The driver: descriptor choice, then reader replies (odd lengths get the right bSeq).
power = bytes.fromhex("80110000000000000000") + atrs[0]
write("driver", [bytes([i]) + chunks(power + b"\x00", bytes.fromhex("82070000000001000000") + bytes.fromhex("1100fe00000000") + b"\x00",
                                     bytes.fromhex("80020000000001000000") + b"\x90\x00" + b"\x00") for i in range(4)] +
      # ICCD tokens (first byte bit 6; bit 5: version B): every answer is a control answer (empty: a stall),
      # a request that sends data gets a byte it ignores. A: power off, status idle, the ATR; a TPDU's
      # header, status "SW ready", SW. B: power off, power on, the ATR as a data block; a piece, its answer.
      [b"\x40" + chunks(b"x", b"\x00", atrs[0], b"x", b"\x20", b"\x90\x00"),
       b"\x60" + chunks(b"x", b"x", b"\x00" + atrs[0], b"x", b"\x80\x01\x00", b"\x00\x90\x00")])
