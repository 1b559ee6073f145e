/* The benchmark's load generator: a C client over libpcsclite, cheap enough
 * per call that pcscd and the driver are what it measures (a Python client
 * costs about as much as pcscd itself and squeezes every ratio toward 1).
 *
 *   loadgen --rounds R --count N [--clients K] [--protocol 0|1] [--together]
 *           [--setup HEX=EXPECTED] --apdu HEX --expect HEX READER...
 *   loadgen --list          the readers, one per line
 *   loadgen --first-reader  waits for pcscd and its first reader; prints
 *                           CLOCK_MONOTONIC seconds when it is listed
 *
 * HEX may be @FILE, a file holding the hex digits. --together loads every
 * reader at once in each round and reports them as one (reader -1).
 * --cpu-pid PID (up to 4) adds the CPU time each such process spent during
 * the round ("cpu_us", from its threads' schedstat), e.g. pcscd and ccid-sim.
 *
 * Every reader gets K connections (each in its own context and thread) before
 * anything is timed; rounds then alternate between the readers, so drift on a
 * shared machine hits both alike. A round sends N APDUs per reader, split over
 * the K clients, and checks every response byte for byte. One JSON object per
 * round and reader goes to stdout. Exit status 1 if any answer was wrong.
 * Built by tests/bench.py; never installed. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <winscard.h>

#define MAX_READERS 32
#define MAX_CLIENTS 64
#define MAX_APDU (65536 + 16)

struct bytes { unsigned char *data; size_t len; };

struct client {
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	const SCARD_IO_REQUEST *pci;
	long count;          /* APDUs this round */
	double *latencies;   /* seconds, one per APDU */
	long wrong;
	LONG error;          /* first PC/SC error this round */
	unsigned char *rx;
};

static struct bytes apdu, expect;

static int decode_hex(const char *hex, struct bytes *out);

/* HEX, or @FILE holding it (a 64 KiB APDU is too long for one argument). */
static int parse_hex(const char *arg, struct bytes *out)
{
	char *text = NULL;
	const char *hex = arg;
	if (arg[0] == '@') {
		FILE *f = fopen(arg + 1, "r");
		if (!f) return -1;
		text = calloc(2 * MAX_APDU + 2, 1);
		size_t got = text ? fread(text, 1, 2 * MAX_APDU + 1, f) : 0;
		fclose(f);
		if (!text) return -1;
		while (got && (text[got - 1] == '\n' || text[got - 1] == ' ')) text[--got] = 0;
		hex = text;
	}
	int rv = decode_hex(hex, out);
	free(text);
	return rv;
}

static int decode_hex(const char *hex, struct bytes *out)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > MAX_APDU) return -1;
	out->data = malloc(n / 2 + 1);
	if (!out->data) return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
		out->data[i] = (unsigned char)v;
	}
	out->len = n / 2;
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Sends `a` and compares the answer with `e`: 1 right, 0 wrong, -1 PC/SC error. */
static int exchange(struct client *c, const struct bytes *a, const struct bytes *e)
{
	DWORD rxlen = MAX_APDU;
	LONG rv = SCardTransmit(c->card, c->pci, a->data, (DWORD)a->len, NULL, c->rx, &rxlen);
	if (rv != SCARD_S_SUCCESS) {
		if (c->error == SCARD_S_SUCCESS) c->error = rv;
		return -1;
	}
	return rxlen == e->len && memcmp(c->rx, e->data, e->len) == 0;
}

static void *run_client(void *arg)
{
	struct client *c = arg;
	for (long i = 0; i < c->count; i++) {
		double t = now();
		int ok = exchange(c, &apdu, &expect);
		c->latencies[i] = now() - t;
		if (ok != 1) c->wrong++;
		if (ok < 0) break;
	}
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The readers pcscd lists now, or NULL (*rv says why). */
static char *list_readers(LONG *rv)
{
	SCARDCONTEXT ctx;
	char *names = NULL;
	*rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (*rv != SCARD_S_SUCCESS) return NULL;
	DWORD len = SCARD_AUTOALLOCATE;
	*rv = SCardListReaders(ctx, NULL, (LPSTR)&names, &len);
	char *copy = NULL;
	if (*rv == SCARD_S_SUCCESS && len > 0 && (copy = malloc(len))) memcpy(copy, names, len);
	if (names) SCardFreeMemory(ctx, names);
	SCardReleaseContext(ctx);
	return copy;
}

static int list_mode(int wait)
{
	for (;;) {
		LONG rv;
		char *names = list_readers(&rv);
		if (names && names[0]) {
			double listed = now();
			if (wait) printf("%.6f\n", listed);
			else for (char *n = names; *n; n += strlen(n) + 1) printf("%s\n", n);
			free(names);
			return 0;
		}
		free(names);
		if (!wait) {
			if (rv == SCARD_E_NO_READERS_AVAILABLE) return 0;
			fprintf(stderr, "loadgen: %s\n", pcsc_stringify_error(rv));
			return 1;
		}
		struct timespec pause = { 0, 500000 };
		nanosleep(&pause, NULL);
	}
}

/* CPU time of every thread of `pid` so far, in ns (0 if it cannot be read). */
static double cpu_ns(long pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld/task", pid);
	DIR *d = opendir(path);
	if (!d) return 0;
	double total = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.') continue;
		char stat[128];
		snprintf(stat, sizeof stat, "/proc/%ld/task/%.20s/schedstat", pid, e->d_name);
		FILE *f = fopen(stat, "r");
		if (!f) continue;   /* a thread that ended meanwhile */
		double ns;
		if (fscanf(f, "%lf", &ns) == 1) total += ns;
		fclose(f);
	}
	closedir(d);
	return total;
}

static int usage(void)
{
	fprintf(stderr, "usage: loadgen --rounds R --count N [--clients K] [--protocol 0|1] "
		"[--together] [--cpu-pid PID]... [--setup HEX=EXPECTED] --apdu HEX --expect HEX READER... | --list | --first-reader\n");
	return 2;
}

int main(int argc, char **argv)
{
	long rounds = 7, count = 1000, clients = 1, protocol = 1;
	const char *readers[MAX_READERS];
	int nreaders = 0, together = 0, ncpu = 0;
	long cpu_pids[4];
	struct bytes setup = { 0 }, setup_expect = { 0 };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--list")) return list_mode(0);
		else if (!strcmp(a, "--first-reader")) return list_mode(1);
		else if (!strcmp(a, "--together")) together = 1;
		else if (!strcmp(a, "--cpu-pid") && v && ncpu < 4) { cpu_pids[ncpu++] = atol(v); i++; }
		else if (!strcmp(a, "--rounds") && v) { rounds = atol(v); i++; }
		else if (!strcmp(a, "--count") && v) { count = atol(v); i++; }
		else if (!strcmp(a, "--clients") && v) { clients = atol(v); i++; }
		else if (!strcmp(a, "--protocol") && v) { protocol = atol(v); i++; }
		else if (!strcmp(a, "--apdu") && v) { if (parse_hex(v, &apdu)) return usage(); i++; }
		else if (!strcmp(a, "--expect") && v) { if (parse_hex(v, &expect)) return usage(); i++; }
		else if (!strcmp(a, "--setup") && v) {
			char *copy = strdup(v), *eq = copy ? strchr(copy, '=') : NULL;
			if (!eq) return usage();
			*eq = 0;
			if (parse_hex(copy, &setup) || parse_hex(eq + 1, &setup_expect)) return usage();
			free(copy);
			i++;
		} else if (a[0] != '-' && nreaders < MAX_READERS) readers[nreaders++] = a;
		else return usage();
	}
	if (!apdu.len || !expect.data || !nreaders || rounds < 1 || count < 1 || clients < 1 || clients > MAX_CLIENTS
	    || (protocol != 0 && protocol != 1))
		return usage();

	struct client *all = calloc((size_t)(nreaders * clients), sizeof *all);
	if (!all) return 1;
	long per_client = (count + clients - 1) / clients;
	for (int r = 0; r < nreaders; r++) {
		for (long k = 0; k < clients; k++) {
			struct client *c = &all[r * clients + k];
			DWORD active;
			LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &c->ctx);
			if (rv == SCARD_S_SUCCESS)
				rv = SCardConnect(c->ctx, readers[r], SCARD_SHARE_SHARED,
					protocol ? SCARD_PROTOCOL_T1 : SCARD_PROTOCOL_T0, &c->card, &active);
			if (rv != SCARD_S_SUCCESS) {
				fprintf(stderr, "loadgen: %s: %s\n", readers[r], pcsc_stringify_error(rv));
				return 1;
			}
			c->pci = protocol ? SCARD_PCI_T1 : SCARD_PCI_T0;
			c->rx = malloc(MAX_APDU);
			c->latencies = malloc((size_t)per_client * sizeof(double));
			if (!c->rx || !c->latencies) return 1;
			if (setup.len && exchange(c, &setup, &setup_expect) != 1) {
				fprintf(stderr, "loadgen: %s: the setup APDU was not answered as expected\n", readers[r]);
				return 1;
			}
		}
	}

	long total_wrong = 0;
	double *merged = malloc((size_t)(per_client * clients * nreaders) * sizeof(double));
	pthread_t *threads = malloc((size_t)(clients * nreaders) * sizeof(pthread_t));
	if (!merged || !threads) return 1;
	for (long round = 0; round < rounds; round++) {
		/* A group: the clients one line reports (one reader's, or all of them together). */
		int groups = together ? 1 : nreaders;
		long group_size = together ? clients * nreaders : clients;
		for (int g = 0; g < groups; g++) {
			struct client *group = &all[g * group_size];
			for (int r = 0; r < (together ? nreaders : 1); r++) {
				long remaining = count;
				for (long k = 0; k < clients; k++) {
					struct client *c = &group[r * clients + k];
					c->count = remaining < per_client ? remaining : per_client;
					remaining -= c->count;
					c->wrong = 0;
					c->error = SCARD_S_SUCCESS;
				}
			}
			double cpu_before[4];
			for (int p = 0; p < ncpu; p++) cpu_before[p] = cpu_ns(cpu_pids[p]);
			double start = now();
			for (long k = 0; k < group_size; k++)
				if (pthread_create(&threads[k], NULL, run_client, &group[k])) return 1;
			for (long k = 0; k < group_size; k++) pthread_join(threads[k], NULL);
			double elapsed = now() - start;
			char cpu[128] = "";
			for (int p = 0, at = 0; p < ncpu && at < (int)sizeof cpu - 24; p++)
				at += snprintf(cpu + at, sizeof cpu - (size_t)at, "%s%.1f", p ? ", " : "",
					(cpu_ns(cpu_pids[p]) - cpu_before[p]) / 1e3);

			long n = 0, wrong = 0;
			LONG error = SCARD_S_SUCCESS;
			for (long k = 0; k < group_size; k++) {
				memcpy(merged + n, group[k].latencies, (size_t)group[k].count * sizeof(double));
				n += group[k].count;
				wrong += group[k].wrong;
				if (error == SCARD_S_SUCCESS) error = group[k].error;
			}
			qsort(merged, (size_t)n, sizeof(double), by_value);
			long p99 = (long)((double)n * 0.99);
			if (p99 >= n) p99 = n - 1;
			printf("{\"round\": %ld, \"reader\": %d, \"apdus\": %ld, \"seconds\": %.6f, \"rate\": %.1f, "
				"\"p50_us\": %.1f, \"p99_us\": %.1f, \"wrong\": %ld, \"error\": \"%s\", \"cpu_us\": [%s]}\n",
				round, together ? -1 : g, n, elapsed, (double)n / elapsed, merged[n / 2] * 1e6, merged[p99] * 1e6,
				wrong, error == SCARD_S_SUCCESS ? "" : pcsc_stringify_error(error), cpu);
			fflush(stdout);
			total_wrong += wrong;
		}
	}
	/* Reset, so that the next run may connect with the other protocol. */
	for (int i = 0; i < nreaders * clients; i++) {
		SCardDisconnect(all[i].card, SCARD_RESET_CARD);
		SCardReleaseContext(all[i].ctx);
	}
	return total_wrong ? 1 : 0;
}
