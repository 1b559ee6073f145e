#ifndef STAYLOADED_H
#define STAYLOADED_H
// Linking this target keeps the loading library resident (see stayloaded.c).
int swiftccid_stays_loaded(void);
// The path of the library this code is in (see stayloaded.c).
const char *swiftccid_library_path(void);
#endif
