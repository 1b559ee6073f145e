#ifndef SWIFTCCID_CPCSCCLIENT_H
#define SWIFTCCID_CPCSCCLIENT_H
/* pcsc-lite's client library, for ccid-sim's `--card pcsc:READER` only: the
 * driver's bundle never links it. */
#include <winscard.h>
#endif
