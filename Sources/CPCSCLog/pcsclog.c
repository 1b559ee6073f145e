#include "pcsclog.h"
#include <stdio.h>

extern void log_msg(const int priority, const char *fmt, ...) __attribute__((weak));

void swiftccid_log(int priority, const char *message)
{
	if (log_msg)
		log_msg(priority, "swiftccid: %s", message);
	else
		fprintf(stderr, "swiftccid: %s\n", message);
}
