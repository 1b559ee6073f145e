#ifndef SWIFTCCID_CPCSCLITE_H
#define SWIFTCCID_CPCSCLITE_H
/* The real pcsc-lite headers: types (DWORD is unsigned long on x86_64) and
 * constants come from here, never re-declared. Headers only: a driver must
 * not link libpcsclite (the client library) into pcscd. */
#include <ifdhandler.h>
#include <reader.h>
#endif
