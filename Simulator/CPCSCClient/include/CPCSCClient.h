#ifndef SWIFTCCID_CPCSCCLIENT_H
#define SWIFTCCID_CPCSCCLIENT_H
/* The types of pcsc-lite's client API, for ccid-sim's `--card pcsc:READER`;
 * the library itself is opened at run time (SimulatorPCSC/PCSCLibrary.swift). */
#include <winscard.h>
#endif
