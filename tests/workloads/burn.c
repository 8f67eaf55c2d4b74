/* burn MS: MS ms of user-space CPU work; the thread CPU clock is checked only
 * every few hundred microseconds (CLOCK_THREAD_CPUTIME_ID is a real syscall). */
#include "wl.h"

static volatile unsigned long sink;

int main(int argc, char **argv)
{
	long ms = wl_arg(argc, argv, 1, 200);
	long long t0 = wl_now_ns(CLOCK_THREAD_CPUTIME_ID), target = t0 + ms * 1000000LL;
	unsigned long x = 88172645463325252UL;
	struct rusage ru;
	long checks = 0;
	int i;

	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < target) {
		checks++;
		for (i = 0; i < 200000; i++) {	/* xorshift: pure user-space work */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		sink = x;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"workload\":\"burn\",\"pid\":%d,\"ms\":%ld,\"checks\":%ld,"
	       "\"utime_ns\":%lld,\"stime_ns\":%lld,\"cpu_ns\":%lld,\"thread_cpu_ns\":%lld}\n",
	       getpid(), ms, checks, wl_tv_ns(ru.ru_utime), wl_tv_ns(ru.ru_stime),
	       wl_tv_ns(ru.ru_utime) + wl_tv_ns(ru.ru_stime), wl_now_ns(CLOCK_THREAD_CPUTIME_ID));
	return 0;
}
