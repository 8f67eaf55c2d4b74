/* marks N USEC: N clock_nanosleep(USEC) calls, each between two
 * CLOCK_MONOTONIC readings (the vDSO's: no syscall), printed as the ground
 * truth of when each call began and ended on the report's clock. */
#include "wl.h"

#define MAXN 1000

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 10), usec = wl_arg(argc, argv, 2, 2000);
	struct timespec req = { .tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000 };
	static long long before[MAXN], after[MAXN];
	int rc;

	if (n < 1 || n > MAXN) {
		fprintf(stderr, "workload: 1..%d marks\n", MAXN);
		return 101;
	}
	for (long i = 0; i < n; i++) {
		before[i] = wl_now_ns(CLOCK_MONOTONIC);
		rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
		after[i] = wl_now_ns(CLOCK_MONOTONIC);
		if (rc) {
			errno = rc;
			wl_die("clock_nanosleep");
		}
	}
	printf("{\"workload\":\"marks\",\"pid\":%d,\"usec\":%ld,\"before_ns\":[", getpid(), usec);
	for (long i = 0; i < n; i++)
		printf("%s%lld", i ? "," : "", before[i]);
	printf("],\"after_ns\":[");
	for (long i = 0; i < n; i++)
		printf("%s%lld", i ? "," : "", after[i]);
	printf("]}\n");
	return 0;
}
