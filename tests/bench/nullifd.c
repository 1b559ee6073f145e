/* The benchmark's floor: an IFD handler that does nothing but answer, so
 * pcscd + libpcsclite + the client are all that is measured. It answers the
 * bench's commands as the compliance card does (same bytes, so the floor moves
 * as much data as the reader): `80 00 04 XX Le` with Le bytes of XX,
 * `80 34 P1 P2 Le` with 00 01 02…, everything else 90 00.
 * Built by tests/bench.py; never installed. */
#include <string.h>
#include <ifdhandler.h>
#include <reader.h>

static const UCHAR atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName) { (void)Lun; (void)DeviceName; return IFD_SUCCESS; }
RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel) { (void)Lun; (void)Channel; return IFD_SUCCESS; }
RESPONSECODE IFDHCloseChannel(DWORD Lun) { (void)Lun; return IFD_SUCCESS; }

RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value)
{
	(void)Lun;
	switch (Tag) {
	case TAG_IFD_ATR:
	case SCARD_ATTR_ATR_STRING:
		if (*Length < sizeof atr) return IFD_ERROR_INSUFFICIENT_BUFFER;
		memcpy(Value, atr, sizeof atr);
		*Length = sizeof atr;
		return IFD_SUCCESS;
	case TAG_IFD_SLOTS_NUMBER:
	case TAG_IFD_THREAD_SAFE:
		*Length = 1;
		Value[0] = 1;
		return IFD_SUCCESS;
	case TAG_IFD_SIMULTANEOUS_ACCESS:
		*Length = 1;
		Value[0] = 255;
		return IFD_SUCCESS;
	default:
		return IFD_ERROR_TAG;
	}
}

RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value) { (void)Lun; (void)Tag; (void)Length; (void)Value; return IFD_ERROR_TAG; }
RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1, UCHAR PTS2, UCHAR PTS3)
{ (void)Lun; (void)Protocol; (void)Flags; (void)PTS1; (void)PTS2; (void)PTS3; return IFD_SUCCESS; }

RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength)
{
	(void)Lun;
	if (Action == IFD_POWER_DOWN) { *AtrLength = 0; return IFD_SUCCESS; }
	memcpy(Atr, atr, sizeof atr);
	*AtrLength = sizeof atr;
	return IFD_SUCCESS;
}

/* Le of a case 2 APDU (short or extended), else -1. */
static long expected_length(const UCHAR *apdu, DWORD len)
{
	if (len == 5) return apdu[4] ? apdu[4] : 256;
	if (len == 7 && apdu[4] == 0) { long le = (long)apdu[5] << 8 | apdu[6]; return le ? le : 65536; }
	return -1;
}

RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
	PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci)
{
	(void)Lun; (void)SendPci; (void)RecvPci;
	long le = TxLength >= 4 && TxBuffer[0] == 0x80 && (TxBuffer[1] == 0x34 || (TxBuffer[1] == 0x00 && TxBuffer[2] == 0x04))
		? expected_length(TxBuffer, TxLength) : -1;
	DWORD n = le > 0 ? (DWORD)le : 0;
	if (*RxLength < n + 2) return IFD_ERROR_INSUFFICIENT_BUFFER;
	if (n && TxBuffer[1] == 0x34) for (DWORD i = 0; i < n; i++) RxBuffer[i] = (UCHAR)i;
	else memset(RxBuffer, TxLength > 3 ? TxBuffer[3] : 0, n);
	RxBuffer[n] = 0x90;
	RxBuffer[n + 1] = 0x00;
	*RxLength = n + 2;
	return IFD_SUCCESS;
}

RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength, PUCHAR RxBuffer,
	DWORD RxLength, LPDWORD pdwBytesReturned)
{ (void)Lun; (void)dwControlCode; (void)TxBuffer; (void)TxLength; (void)RxBuffer; (void)RxLength; *pdwBytesReturned = 0; return IFD_ERROR_NOT_SUPPORTED; }

RESPONSECODE IFDHICCPresence(DWORD Lun) { (void)Lun; return IFD_ICC_PRESENT; }
