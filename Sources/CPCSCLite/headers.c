/* Compiles the pcsc-lite headers once so a missing libpcsclite-dev fails here, clearly. */
#include "CPCSCLite.h"
