// pcscd dlclose()s a driver when its last reader goes and dlopen()s it again
// for the next one. This library must not be unmapped: it carries the Swift
// runtime (linked statically, not made to be unloaded) and uses libusb, whose
// event thread would keep running in freed code. Marking our own mapping
// RTLD_NODELETE at load time makes dlclose() a no-op for it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include "stayloaded.h"

__attribute__((constructor)) static void swiftccid_stay_loaded(void) {
    Dl_info info;
    if (dladdr((void *) swiftccid_stay_loaded, &info) && info.dli_fname) {
        // RTLD_NOLOAD: only changes the flags of the mapping we are in.
        (void) dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
}

int swiftccid_stays_loaded(void) { return 1; }

// Where this library was loaded from: the bundle's Contents/Linux directory,
// beside which pcscd read its Info.plist. NULL if unknown.
const char *swiftccid_library_path(void) {
    Dl_info info;
    if (dladdr((void *) swiftccid_library_path, &info) && info.dli_fname)
        return info.dli_fname;
    return 0;
}
