/* sleeper M USEC: M clock_nanosleep(CLOCK_MONOTONIC, 0, USEC us) calls; also
 * prints the involuntary switches the loop took (the kernel's own count). */
#include "wl.h"

int main(int argc, char **argv)
{
	long m = wl_arg(argc, argv, 1, 10), usec = wl_arg(argc, argv, 2, 10000), i;
	struct timespec req = { .tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000 };
	long long t0, t1;
	long ivcsw0;
	int rc;

	ivcsw0 = wl_task_ctxt(getpid(), "nonvoluntary_ctxt_switches");
	t0 = wl_now_ns(CLOCK_MONOTONIC);
	for (i = 0; i < m; i++) {
		/* clock_nanosleep returns the error number itself */
		rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
		if (rc) {
			errno = rc;
			wl_die("clock_nanosleep");
		}
	}
	t1 = wl_now_ns(CLOCK_MONOTONIC);
	printf("{\"workload\":\"sleeper\",\"pid\":%d,\"clock_nanosleep\":%ld,\"usec\":%ld,"
	       "\"requested_ns\":%lld,\"elapsed_ns\":%lld,\"loop_nivcsw\":%ld}\n",
	       getpid(), m, usec, (long long)m * usec * 1000, t1 - t0,
	       wl_task_ctxt(getpid(), "nonvoluntary_ctxt_switches") - ivcsw0);
	return 0;
}
