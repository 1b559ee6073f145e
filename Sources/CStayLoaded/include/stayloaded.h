#ifndef STAYLOADED_H
#define STAYLOADED_H
// Linking this target keeps the loading library resident (see stayloaded.c).
int swiftccid_stays_loaded(void);
#endif
