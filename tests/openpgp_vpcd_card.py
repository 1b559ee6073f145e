"""The OpenPGP card application of PyPI's smartcard-app-openpgp (Vincent
Pelletier's, an implementation of the OpenPGP card specification 3.4) as a
card process speaking the vpcd protocol, so that it sits in a ccid-sim slot
(`--card vpcd:PORT`): `openpgp_vpcd_card.py PORT`. The package is made for a
USB gadget of its own; this only feeds its Card object the vpcd protocol's
messages. Its `smartcard` package is not pyscard's: run it with
build/pydeps/openpgp first on PYTHONPATH (make pydeps installs it there).
The card lives in memory: each run starts with a blank, unpersonalised card."""
import socket
import struct
import sys

import ZODB
from smartcard import Card, MASTER_FILE_IDENTIFIER
from smartcard.app.openpgp import OpenPGP
from smartcard.utils import transaction_manager


def make_card():
    connection = ZODB.DB(None).open(transaction_manager=transaction_manager)
    with transaction_manager:
        card = connection.root.card = Card(name=b"py-openpgp")
        application = OpenPGP(identifier=b"\x12\x34")
        application.activateSelf()
        card.createFile(card.traverse((MASTER_FILE_IDENTIFIER,)), application)
    return connection, card


def serve(port):
    _connection, card = make_card()
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as stream:
        while True:
            # A buffered read returns all it was asked for, or less at the end of the stream.
            header = stream.read(2)
            if len(header) < 2:
                return
            length = struct.unpack(">H", header)[0]
            message = stream.read(length)
            if len(message) < length:
                return
            if len(message) == 1:
                if message[0] == 4:             # get ATR
                    answer = bytes(card.getATR())
                else:                           # power off, power on, reset: the card keeps no volatile state here
                    continue
            else:
                answer = bytes(card.runAPDU(bytearray(message)))
            sock.sendall(struct.pack(">H", len(answer)) + answer)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
