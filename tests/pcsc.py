"""Thin helpers over pyscard's raw PC/SC API (smartcard.scard)."""
from smartcard import scard as S


class PCSCError(Exception):
    def __init__(self, what, rv):
        super().__init__("%s: %s (0x%08X)" % (what, S.SCardGetErrorMessage(rv), rv & 0xFFFFFFFF))
        self.rv = rv


def check(what, rv):
    if rv != S.SCARD_S_SUCCESS:
        raise PCSCError(what, rv)


class Context:
    """A PC/SC context; card handles it opened and a test left open are
    disconnected when it ends, also when the test failed."""

    def __enter__(self):
        rv, self.ctx = S.SCardEstablishContext(S.SCARD_SCOPE_USER)
        check("SCardEstablishContext", rv)
        self.cards = []
        return self

    def __exit__(self, *exc):
        try:
            for card in self.cards:
                card.disconnect()
        finally:
            S.SCardReleaseContext(self.ctx)

    def readers(self):
        rv, readers = S.SCardListReaders(self.ctx, [])
        check("SCardListReaders", rv)
        return readers

    def connect(self, reader, protocols=S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1, mode=S.SCARD_SHARE_SHARED):
        rv, card, proto = S.SCardConnect(self.ctx, reader, mode, protocols)
        if rv == S.SCARD_E_PROTO_MISMATCH:
            # pcscd keeps the protocol a previous client (opensc-tool, pcsc_scan) left; reset the card to choose anew.
            rv, other, _ = S.SCardConnect(self.ctx, reader, mode, S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1)
            check("SCardConnect %s" % reader, rv)
            S.SCardDisconnect(other, S.SCARD_RESET_CARD)
            rv, card, proto = S.SCardConnect(self.ctx, reader, mode, protocols)
        check("SCardConnect %s" % reader, rv)
        handle = Card(card, proto)
        self.cards.append(handle)
        return handle

    def state(self, reader, current=S.SCARD_STATE_UNAWARE, timeout_ms=0):
        rv, states = S.SCardGetStatusChange(self.ctx, timeout_ms, [(reader, current)])
        if rv == S.SCARD_E_TIMEOUT:
            return None
        check("SCardGetStatusChange", rv)
        return states[0][1]


class Card:
    """A card handle; `with` disconnects it (resetting the card) on the way out."""

    def __init__(self, handle, protocol):
        self.handle = handle
        self.protocol = protocol
        self.connected = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()

    def transmit(self, apdu):
        pci = S.SCARD_PCI_T1 if self.protocol == S.SCARD_PROTOCOL_T1 else S.SCARD_PCI_T0
        rv, response = S.SCardTransmit(self.handle, pci, list(apdu))
        check("SCardTransmit", rv)
        return response

    def attribute(self, attr):
        rv, value = S.SCardGetAttrib(self.handle, attr)
        check("SCardGetAttrib 0x%X" % attr, rv)
        return value

    def control(self, code, data=()):
        rv, response = S.SCardControl(self.handle, code, list(data))
        check("SCardControl 0x%X" % code, rv)
        return response

    def disconnect(self, disposition=S.SCARD_RESET_CARD):
        """Once; what it returns is not checked: the reader may be gone, which some tests make it."""
        if self.connected:
            self.connected = False
            S.SCardDisconnect(self.handle, disposition)


SELECT_TEST_APPLET = [0x00, 0xA4, 0x04, 0x00, 0x06, 0xA0, 0x00, 0x00, 0x00, 0x18, 0xFF]
OK = [0x90, 0x00]


def features(card):
    """CM_IOCTL_GET_FEATURE_REQUEST as {tag: control code}."""
    raw = card.control(S.SCARD_CTL_CODE(3400))
    out = {}
    for i in range(0, len(raw), 6):
        out[raw[i]] = int.from_bytes(bytes(raw[i + 2:i + 6]), "big")
    return out


def tlv_properties(card):
    codes = features(card)
    raw = card.control(codes[0x12])
    out, i = {}, 0
    while i + 2 <= len(raw):
        tag, n = raw[i], raw[i + 1]
        out[tag] = int.from_bytes(bytes(raw[i + 2:i + 2 + n]), "little") if tag != 0x08 else bytes(raw[i + 2:i + 2 + n])
        i += 2 + n
    return out


def seq(n):
    return [i & 0xFF for i in range(n)]


def check_cases_at_every_length(test, reader, protocol, apdu_level):
    """The test card's cases 1-4 at every short length. Under T=0 a case 4
    answers 61xx and the application sends GET RESPONSE, except through an
    APDU-level reader, which fetches the response itself (ISO/IEC 7816-3
    §12.2) and returns the data and 9000."""
    seq = [i & 0xFF for i in range(256)]
    with Context() as c:
        card = c.connect(reader, protocol)
        test.assertEqual(card.protocol, protocol)
        test.assertEqual(card.transmit(SELECT_TEST_APPLET), OK)
        test.assertEqual(card.transmit([0x80, 0x30, 0x00, 0x00]), OK, "case 1")
        for n in range(1, 257):
            test.assertEqual(card.transmit([0x80, 0x34, n >> 8, n & 0xFF, n & 0xFF]), seq[:n] + OK, "case 2, %d" % n)
            if n == 256:
                continue
            test.assertEqual(card.transmit([0x80, 0x32, 0x00, 0x00, n] + seq[:n]), OK, "case 3, %d" % n)
            answer = card.transmit([0x80, 0x36, 0x00, n, n] + seq[:n] + [0x00])
            if protocol == S.SCARD_PROTOCOL_T1 or apdu_level:
                test.assertEqual(answer, seq[:n] + OK, "case 4, %d" % n)
            else:
                test.assertEqual(answer, [0x61, n], "case 4 (T=0), %d" % n)
                test.assertEqual(card.transmit([0x00, 0xC0, 0x00, 0x00, n]), seq[:n] + OK)
        card.disconnect(S.SCARD_RESET_CARD)


def check_extended_apdus(test, reader, extended):
    """Extended cases 2 and 3 up to 65535 bytes under T=1, or their refusal by a short-APDU reader."""
    with Context() as c:
        card = c.connect(reader, S.SCARD_PROTOCOL_T1)
        for n in (257, 4096, 65535):
            command = [0x80, 0x00, 0x04, 0xA5, 0x00, n >> 8, n & 0xFF]
            if not extended:
                with test.assertRaises(PCSCError):
                    card.transmit(command)
                continue
            out = card.transmit(command)
            test.assertEqual(out, [0xA5] * n + OK, "extended case 2, %d" % n)
            test.assertEqual(card.transmit([0x80, 0x12, 0x01, 0x80, 0x00, n >> 8, n & 0xFF] + seq(n)), OK)
        card.disconnect()


def reference_script(reader, t0=True, t1=True):
    """ATR and responses to a fixed APDU script, under T=1 then T=0, or only
    the protocol the reader speaks (a token: T=1; an ICCD version A token: T=0)."""
    out = []
    with Context() as c:
        for protocol in [p for p, wanted in ((S.SCARD_PROTOCOL_T1, t1), (S.SCARD_PROTOCOL_T0, t0)) if wanted]:
            card = c.connect(reader, protocol)
            out.append(("atr", card.attribute(S.SCARD_ATTR_ATR_STRING)))
            for apdu in ([0x80, 0x30, 0x00, 0x00], SELECT_TEST_APPLET, [0x80, 0x34, 0x00, 0x01, 0x01],
                         [0x80, 0x34, 0x00, 0xFF, 0xFF], [0x80, 0x34, 0x01, 0x00, 0x00],
                         [0x80, 0x32, 0x00, 0x00, 0x80] + seq(0x80), [0x80, 0x36, 0x00, 0x10, 0x10] + seq(0x10) + [0],
                         [0x80, 0x00, 0x04, 0x42, 0x08], [0x00, 0xB0, 0x00, 0x00, 0x00]):
                out.append((protocol, apdu[:5], card.transmit(apdu)))
            card.disconnect(S.SCARD_RESET_CARD)
    return out



def transmit_cut_short(test, card, cut, bound=3.0):
    """Starts an APDU the reader will never answer (its fault set to stuck),
    calls `cut()` a second later (unplug, kill the worker…) and checks the
    client gets an error within `bound` seconds of it."""
    import threading
    import time
    outcome = {}

    def transmit():
        try:
            card.transmit([0x80, 0x00, 0x04, 0x01, 0x02])
            outcome["error"] = None
        except PCSCError as e:
            outcome["error"] = e
        outcome["done"] = time.monotonic()
    t = threading.Thread(target=transmit)
    t.start()
    time.sleep(1.0)
    cut_at = time.monotonic()
    cut()
    t.join(30)
    test.assertFalse(t.is_alive(), "the APDU never returned")
    test.assertIsNotNone(outcome["error"], "the APDU cannot have succeeded")
    test.assertLess(outcome["done"] - cut_at, bound, "%.1f s from the cut to the client's error" % (outcome["done"] - cut_at))
    return outcome["done"] - cut_at
