#!/bin/bash
# make demo: a private pcscd + libswiftccid.so + a simulated reader + real PC/SC clients.
set -euo pipefail
SIM=${1:-build/ccid-sim}
DIR=/tmp/ccid-sim-demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

out=$(mktemp)
"$SIM" pcscd --dir "$DIR" > "$out" &
sim_pid=$!
trap 'kill -TERM $sim_pid 2>/dev/null; wait $sim_pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q PCSCLITE_CSOCK_NAME "$out" && break; sleep 0.1; done
export "$(head -1 "$out")"
say "A private pcscd is running with our driver: $PCSCLITE_CSOCK_NAME"
"$SIM" list --dir "$DIR"

say "Readers, as PC/SC clients see them (opensc-tool --list-readers, pcsc_scan -r)"
opensc-tool --list-readers
pcsc_scan -r

say "The card's ATR (opensc-tool --atr), decoded by ATR_analysis"
atr=$(opensc-tool --reader 0 --atr)
echo "$atr"
ATR_analysis "$(echo "$atr" | tr ':' ' ')" 2>/dev/null | sed -n '1,12p' || true

say "APDUs with opensc-tool: SELECT the test applet, case 2 (16 bytes out), case 4"
opensc-tool --reader 0 \
  --send-apdu 00:A4:04:00:06:A0:00:00:00:18:FF \
  --send-apdu 80:34:00:10:10 \
  --send-apdu 80:36:00:04:03:00:01:02:00

say "Extended APDUs with pyscard: 65535 bytes out (case 2E) and in (case 3E)"
/usr/bin/python3 - <<'PY'
from smartcard.System import readers
c = readers()[0].createConnection()
c.connect()
data, sw1, sw2 = c.transmit([0x80, 0x00, 0x04, 0x5A, 0x00, 0xFF, 0xFF])
print("case 2E: %d bytes of 0x%02X, SW %02X %02X" % (len(data), data[0], sw1, sw2))
n = 65535
data, sw1, sw2 = c.transmit([0x80, 0x12, 0x01, 0x80, 0x00, n >> 8, n & 0xFF] + [i & 0xFF for i in range(n)])
print("case 3E: sent %d bytes, SW %02X %02X" % (n, sw1, sw2))
PY

say "Removing the card (ccid-sim remove), then inserting it again"
"$SIM" remove sim0 --dir "$DIR"; sleep 0.5
opensc-tool --list-readers
"$SIM" insert sim0 --dir "$DIR"; sleep 0.5
opensc-tool --list-readers

say "Done: stopping pcscd and the simulator"
