#ifndef SWIFTCCID_PCSCLOG_H
#define SWIFTCCID_PCSCLOG_H
/* pcscd exports log_msg() to the drivers it loads; outside pcscd (tests,
 * tools) the symbol is absent and messages go to stderr. Swift cannot call
 * a variadic C function, hence this one-line bridge. */
enum { SWIFTCCID_LOG_DEBUG = 0, SWIFTCCID_LOG_INFO = 1, SWIFTCCID_LOG_ERROR = 2, SWIFTCCID_LOG_CRITICAL = 3 };
void swiftccid_log(int priority, const char *message);
#endif
