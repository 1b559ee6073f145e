/* Preloaded into pcscd by the bench's startup figure: when pcscd dlopen()s a
 * library whose path contains $BENCH_DLOPEN_MATCH, appends one line to
 * $BENCH_DLOPEN_LOG: CLOCK_MONOTONIC seconds before and after the call, and
 * the path. The client side (loadgen --first-reader) reads the same clock, so
 * "dlopen to first reader listed" is one subtraction. Built by the bench;
 * never installed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void *dlopen(const char *file, int flags)
{
	static void *(*real)(const char *, int);
	if (!real) real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
	if (!real) return NULL;
	const char *match = getenv("BENCH_DLOPEN_MATCH"), *log = getenv("BENCH_DLOPEN_LOG");
	if (!file || !match || !log || !*match || !strstr(file, match)) return real(file, flags);
	double before = now();
	void *handle = real(file, flags);
	double after = now();
	FILE *f = fopen(log, "a");
	if (f) {
		fprintf(f, "%.6f %.6f %s\n", before, after, file);
		fclose(f);
	}
	return handle;
}
