"""The IFD handler API as pcscd calls it: libswiftccid.so loaded with
ctypes (dlopen, like pcscd), entry points called directly — including the
calls pcscd makes unlocked from other threads, and hostile arguments."""
import ctypes
import json
import os
import resource
import subprocess
import tempfile
import threading
import time
import unittest

from simharness import ROOT, SIM

SO = os.path.join(ROOT, "build", "ifd-swiftccid.bundle", "Contents", "Linux", "libswiftccid.so")
DWORD = ctypes.c_ulong
RC = ctypes.c_long
IFD_SUCCESS, IFD_ERROR_TAG, IFD_COMMUNICATION_ERROR = 0, 600, 612
IFD_RESPONSE_TIMEOUT, IFD_ICC_PRESENT, IFD_ICC_NOT_PRESENT, IFD_NO_SUCH_DEVICE, IFD_ERROR_INSUFFICIENT_BUFFER = 613, 615, 616, 617, 618
IFD_POWER_UP, IFD_POWER_DOWN = 500, 501
TAG_IFD_ATR, TAG_IFD_SLOT_THREAD_SAFE, TAG_IFD_THREAD_SAFE, TAG_IFD_SLOTS_NUMBER = 0x0303, 0x0FAC, 0x0FAD, 0x0FAE
TAG_IFD_SIMULTANEOUS_ACCESS, TAG_IFD_POLLING_THREAD_KILLABLE, TAG_IFD_STOP_POLLING_THREAD = 0x0FAF, 0x0FB1, 0x0FB2
TAG_IFD_POLLING_THREAD_WITH_TIMEOUT, TAG_IFD_DEVICE_REMOVED = 0x0FB3, 0x0FB4
POLL = ctypes.CFUNCTYPE(RC, DWORD, ctypes.c_int)
STOP = ctypes.CFUNCTYPE(RC, DWORD)


class IOHeader(ctypes.Structure):
    _fields_ = [("Protocol", DWORD), ("Length", DWORD)]


class IFDHandlerABI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = ctypes.CDLL(SO)
        for name, args in {
            "IFDHCreateChannelByName": [DWORD, ctypes.c_char_p], "IFDHCreateChannel": [DWORD, DWORD],
            "IFDHCloseChannel": [DWORD], "IFDHICCPresence": [DWORD],
            "IFDHGetCapabilities": [DWORD, DWORD, ctypes.POINTER(DWORD), ctypes.c_void_p],
            "IFDHSetCapabilities": [DWORD, DWORD, DWORD, ctypes.c_void_p],
            "IFDHSetProtocolParameters": [DWORD, DWORD, ctypes.c_ubyte, ctypes.c_ubyte, ctypes.c_ubyte, ctypes.c_ubyte],
            "IFDHPowerICC": [DWORD, DWORD, ctypes.c_void_p, ctypes.POINTER(DWORD)],
            "IFDHTransmitToICC": [DWORD, IOHeader, ctypes.c_void_p, DWORD, ctypes.c_void_p, ctypes.POINTER(DWORD), ctypes.c_void_p],
            "IFDHControl": [DWORD, DWORD, ctypes.c_void_p, DWORD, ctypes.c_void_p, DWORD, ctypes.POINTER(DWORD)],
        }.items():
            f = getattr(cls.lib, name)
            f.argtypes, f.restype = args, RC
        cls.dir = tempfile.mkdtemp(prefix="sccid-abi")
        config = os.path.join(cls.dir, "readers.json")
        with open(config, "w") as f:
            json.dump({"readers": [
                {"profile": "acr1281u-3slot-extended", "cards": ["compliance", None, "compliance-crypto"]},
                {"profile": "cherry-st-short", "cards": ["compliance"]},
            ]}, f)
        cls.sim = subprocess.Popen([SIM, "serve", "--dir", cls.dir, "--config", config], stdout=subprocess.PIPE, text=True)
        cls.sim.stdout.readline()
        cls.sim.stdout.readline()
        cls.name = ("relay:%s/sim0.sock" % cls.dir).encode()

    @classmethod
    def tearDownClass(cls):
        cls.sim.terminate()
        cls.sim.wait()

    def sim_cmd(self, *args):
        subprocess.run([SIM] + list(args) + ["--dir", self.dir], check=True, capture_output=True, timeout=10)

    def cap(self, lun, tag, size=64):
        buf = (ctypes.c_ubyte * size)()
        n = DWORD(size)
        rc = self.lib.IFDHGetCapabilities(lun, tag, ctypes.byref(n), buf)
        return rc, bytes(buf[:n.value])

    def power_up(self, lun):
        atr = (ctypes.c_ubyte * 33)()
        n = DWORD(33)
        self.assertEqual(self.lib.IFDHPowerICC(lun, IFD_POWER_UP, atr, ctypes.byref(n)), IFD_SUCCESS)
        return bytes(atr[:n.value])

    def transmit(self, lun, apdu, size=65538 + 16):
        tx = (ctypes.c_ubyte * len(apdu))(*apdu)
        rx = (ctypes.c_ubyte * size)()
        n = DWORD(size)
        rc = self.lib.IFDHTransmitToICC(lun, IOHeader(2, 8), tx, len(apdu), rx, ctypes.byref(n), None)
        return rc, list(rx[:n.value])

    def test_multi_slot_channels_polling_and_removal(self):
        L = self.lib
        base = 0x30000
        for slot in range(3):
            self.assertEqual(L.IFDHCreateChannelByName(base + slot, self.name), IFD_SUCCESS)
        self.assertEqual(L.IFDHCreateChannelByName(base + 3, self.name), IFD_COMMUNICATION_ERROR)   # no slot 3
        self.assertEqual(self.cap(base, TAG_IFD_SLOTS_NUMBER), (IFD_SUCCESS, b"\x03"))
        self.assertEqual(self.cap(base, TAG_IFD_THREAD_SAFE), (IFD_SUCCESS, b"\x01"))
        self.assertEqual(self.cap(base, TAG_IFD_SLOT_THREAD_SAFE), (IFD_SUCCESS, b"\x01"))
        self.assertEqual(self.cap(base, TAG_IFD_SIMULTANEOUS_ACCESS), (IFD_SUCCESS, b"\xff"))
        self.assertEqual(self.cap(base, TAG_IFD_POLLING_THREAD_KILLABLE), (IFD_SUCCESS, b"\x00"))
        self.assertEqual(self.cap(base, 0x12345)[0], IFD_ERROR_TAG)
        self.assertEqual(self.cap(0x7F0000, TAG_IFD_SLOTS_NUMBER)[0], IFD_NO_SUCH_DEVICE)
        self.assertEqual(self.cap(base, TAG_IFD_ATR, size=0)[0], IFD_SUCCESS)   # no card powered: empty ATR
        self.assertEqual(L.IFDHICCPresence(base + 1), IFD_ICC_NOT_PRESENT)
        self.assertEqual(L.IFDHICCPresence(base + 2), IFD_ICC_PRESENT)

        # Polling functions: timeout, card event, stop (also before the wait starts).
        rc, raw = self.cap(base, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT)
        self.assertEqual((rc, len(raw)), (IFD_SUCCESS, ctypes.sizeof(ctypes.c_void_p)))
        poll = POLL(int.from_bytes(raw, "little"))
        stop = STOP(int.from_bytes(self.cap(base, TAG_IFD_STOP_POLLING_THREAD)[1], "little"))
        t = time.monotonic()
        self.assertEqual(poll(base + 1, 200), IFD_SUCCESS)
        self.assertGreaterEqual(time.monotonic() - t, 0.15)
        result = []
        th = threading.Thread(target=lambda: result.append(poll(base + 1, 10000)))
        th.start()
        time.sleep(0.2)
        self.sim_cmd("insert", "sim0", "--slot", "1")
        th.join(5)
        self.assertEqual(result, [IFD_SUCCESS])
        self.assertEqual(L.IFDHICCPresence(base + 1), IFD_ICC_PRESENT)
        stop(base + 2)
        t = time.monotonic()
        self.assertEqual(poll(base + 2, 10000), IFD_SUCCESS)
        self.assertLess(time.monotonic() - t, 1.0)

        # Hostile arguments.
        self.assertEqual(L.IFDHGetCapabilities(base, TAG_IFD_SLOTS_NUMBER, None, None), IFD_COMMUNICATION_ERROR)
        self.assertEqual(self.cap(base, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT, size=4)[0], IFD_ERROR_INSUFFICIENT_BUFFER)
        self.assertEqual(self.power_up(base), bytes.fromhex("3BD6180080B1806D1F038051006110309E"))
        self.assertEqual(L.IFDHSetProtocolParameters(base, 2, 0, 0, 0, 0), IFD_SUCCESS)
        self.assertEqual(L.IFDHSetProtocolParameters(base, 0, 0, 0, 0, 0), 607)
        self.assertEqual(self.transmit(base, [0x80, 0x00, 0x04, 0x33, 0x10]), (IFD_SUCCESS, [0x33] * 16 + [0x90, 0x00]))
        self.assertEqual(self.transmit(base, [0x80, 0x00, 0x04, 0x33, 0x10], size=4)[0], IFD_ERROR_INSUFFICIENT_BUFFER)
        self.assertEqual(self.transmit(base, [0x80, 0x32])[0], IFD_COMMUNICATION_ERROR)
        self.assertEqual(L.IFDHTransmitToICC(base, IOHeader(2, 8), None, 5, None, None, None), IFD_COMMUNICATION_ERROR)
        out = DWORD(0)
        self.assertEqual(L.IFDHControl(base, 0x42000000 + 1234, None, 0, None, 0, ctypes.byref(out)), 606)
        self.assertEqual(L.IFDHControl(base, 0x42000000 + 3400, None, 0, None, 0, ctypes.byref(out)), IFD_ERROR_INSUFFICIENT_BUFFER)

        # A Transmit in flight when the device is declared gone ends now, not after the card.
        self.assertEqual(self.transmit(base, [0x00, 0xA4, 0x04, 0x00, 0x06, 0xA0, 0x00, 0x00, 0x00, 0x18, 0xFF])[1], [0x90, 0x00])
        self.power_up(base + 2)
        self.assertEqual(self.transmit(base + 2, [0x00, 0xA4, 0x04, 0x00, 0x06, 0xA0, 0x00, 0x00, 0x00, 0x18, 0xFF])[1], [0x90, 0x00])
        # Waiting for a busy card (time extensions every 200 ms for 1.5 s) costs no CPU.
        before = resource.getrusage(resource.RUSAGE_SELF)
        self.assertEqual(self.transmit(base, [0x80, 0x38, 0x00, 30])[1], [0x90, 0x00])
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.assertLess(cpu, 0.3, "waiting for time extensions burned %.2f s of CPU" % cpu)

        result = []
        th = threading.Thread(target=lambda: result.append(self.transmit(base, [0x80, 0x38, 0x00, 0xC8])[0]))
        t = time.monotonic()
        th.start()
        time.sleep(0.5)
        # The hotplug thread asks whether we take TAG_IFD_DEVICE_REMOVED (pcscd sets it only then),
        # then says the device is gone (pcscd does this unlocked).
        size, value = ctypes.c_ulong(1), (ctypes.c_ubyte * 1)()
        self.assertEqual(L.IFDHGetCapabilities(base, TAG_IFD_DEVICE_REMOVED, ctypes.byref(size), value), IFD_SUCCESS)
        self.assertEqual((size.value, value[0]), (1, 1))
        flag = (ctypes.c_ubyte * 1)(1)
        self.assertEqual(L.IFDHSetCapabilities(base, TAG_IFD_DEVICE_REMOVED, 1, flag), IFD_SUCCESS)
        th.join(5)
        self.assertLess(time.monotonic() - t, 2.0, "in-flight Transmit did not end with the device")
        self.assertNotEqual(result, [IFD_SUCCESS])
        # Not IFD_NO_SUCH_DEVICE once removed: it would make pcscd rescan beside its own removal.
        self.assertEqual(self.transmit(base, [0x80, 0x30, 0x00, 0x00])[0], IFD_COMMUNICATION_ERROR)
        # Neither "absent" (pcscd 1.9.9's polling thread would then clear the flag that
        # ends it, and the removal would wait forever) nor NO_SUCH_DEVICE (a USB rescan).
        self.assertEqual(L.IFDHICCPresence(base), IFD_COMMUNICATION_ERROR)
        self.assertEqual(self.transmit(base + 2, [0x80, 0x30, 0x00, 0x00])[0], IFD_COMMUNICATION_ERROR)   # same device
        for slot in range(3):
            self.assertEqual(L.IFDHCloseChannel(base + slot), IFD_SUCCESS)
        self.assertEqual(L.IFDHCloseChannel(base), IFD_NO_SUCH_DEVICE)
        # The simulator lets a new client in once the last slot closed.
        self.assertEqual(L.IFDHCreateChannelByName(base, self.name), IFD_SUCCESS)
        self.power_up(base)
        self.assertEqual(self.transmit(base, [0x00, 0xA4, 0x04, 0x00, 0x06, 0xA0, 0x00, 0x00, 0x00, 0x18, 0xFF])[1], [0x90, 0x00])
        # pcscd closes the channel ~500 ms into a Transmit that is still running.
        result = []
        th = threading.Thread(target=lambda: result.append(self.transmit(base, [0x80, 0x38, 0x00, 0xC8])[0]))
        t = time.monotonic()
        th.start()
        time.sleep(0.5)
        self.assertEqual(L.IFDHCloseChannel(base), IFD_SUCCESS)
        th.join(5)
        self.assertLess(time.monotonic() - t, 2.0, "in-flight Transmit outlived CloseChannel")
        self.assertEqual(len(result), 1)
        self.assertNotEqual(result[0], IFD_SUCCESS)

    def test_device_names(self):
        L = self.lib
        for bad in [b"", b"bogus", b"relay:", b"relay:relative/path", b"relay:/nonexistent/x.sock", b"relay:/" + b"a" * 200]:
            self.assertEqual(L.IFDHCreateChannelByName(0x50000, bad), IFD_COMMUNICATION_ERROR, bad)
        self.assertEqual(L.IFDHCreateChannelByName(0x50000, None), IFD_COMMUNICATION_ERROR)
        for bad in [b"usb:", b"usb:08e6/3437", b"usb:08e6/3437:libudev:0:/dev/bus/usb/../002",
                    b"usb:08e6/3437:libudev:0:/dev/bus/usb/001/999"]:
            self.assertEqual(L.IFDHCreateChannelByName(0x50000, bad), IFD_COMMUNICATION_ERROR, bad)
        # Well formed, but no such device (this kernel has no USB): gone, at once.
        t = time.monotonic()
        self.assertEqual(L.IFDHCreateChannelByName(0x50000, b"usb:08e6/3437:libudev:0:/dev/bus/usb/001/002"), IFD_NO_SUCH_DEVICE)
        self.assertLess(time.monotonic() - t, 1.0)

    def test_create_channel_by_number(self):
        """reader.conf with CHANNELID only: channel N is $SWIFTCCID_RELAY_DIR/channel-N.sock."""
        L = self.lib
        channels = tempfile.mkdtemp(prefix="sccid-ch")
        os.symlink(os.path.join(self.dir, "sim1.sock"), os.path.join(channels, "channel-7.sock"))
        os.environ["SWIFTCCID_RELAY_DIR"] = channels
        try:
            self.assertEqual(L.IFDHCreateChannel(0x60000, 7), IFD_SUCCESS)
            self.assertEqual(L.IFDHCreateChannel(0x70000, 8), IFD_COMMUNICATION_ERROR)
            self.assertEqual(self.power_up(0x60000)[:2], b"\x3b\xd6")
            # A short-APDU reader: extended APDUs are refused with an error, short ones work.
            self.assertEqual(self.transmit(0x60000, [0x80, 0x00, 0x04, 0x01, 0x00, 0x01, 0x00])[0], IFD_COMMUNICATION_ERROR)
            self.assertEqual(self.transmit(0x60000, [0x80, 0x00, 0x04, 0x01, 0x02]), (IFD_SUCCESS, [1, 1, 0x90, 0x00]))
            self.assertEqual(L.IFDHPowerICC(0x60000, IFD_POWER_DOWN, None, None), IFD_SUCCESS)
            self.assertEqual(L.IFDHCloseChannel(0x60000), IFD_SUCCESS)
        finally:
            del os.environ["SWIFTCCID_RELAY_DIR"]


if __name__ == "__main__":
    unittest.main()
