"""Send a udev-processed event ("udev" netlink group, libudev's wire format)
to the network namespace this process runs in, as systemd-udevd does after
running its rules: the way a container's systemd (which has no real USB
device to see) is told that a device came or went.

usage (inside the container's netns): udev_event.py KEY=VALUE ...
"""
import socket
import struct
import sys

NETLINK_KOBJECT_UEVENT = 15
UDEV_GROUP = 2


def murmur2(data, seed=0):
    """systemd's string_hash32: MurmurHash2 of the bytes, seed 0."""
    m, r = 0x5BD1E995, 24
    h = (seed ^ len(data)) & 0xFFFFFFFF
    i, n = 0, len(data)
    while n >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
        i, n = i + 4, n - 4
    if n == 3:
        h ^= data[i + 2] << 16
    if n >= 2:
        h ^= data[i + 1] << 8
    if n >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def message(props):
    body = b"".join(("%s=%s" % kv).encode() + b"\0" for kv in props.items())
    header = b"libudev\0" + struct.pack(">I", 0xFEEDCAFE) + struct.pack("=III", 40, 40, len(body))
    header += struct.pack(">II", murmur2(props.get("SUBSYSTEM", "").encode()), murmur2(props.get("DEVTYPE", "").encode()))
    header += struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)   # tag bloom: all ones passes any tag filter
    return header + body


def send(props):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_KOBJECT_UEVENT)
    try:
        s.bind((0, 0))
        s.sendto(message(props), (0, UDEV_GROUP))
    finally:
        s.close()


if __name__ == "__main__":
    send(dict(a.split("=", 1) for a in sys.argv[1:]))
