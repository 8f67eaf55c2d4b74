/* jobs N PAR MS: make -jPAR-style: N child processes, at most PAR at a time,
 * each burning MS ms of CPU (its own CPU clock) and exiting; the parent waits
 * for them in wait4. Its critical path is its children's CPU, not its wait. */
#include "wl.h"
#include <sys/wait.h>

static void burn(long ms)
{
	long long end = wl_now_ns(CLOCK_PROCESS_CPUTIME_ID) + ms * 1000000LL;
	volatile double x = 1.0;

	while (wl_now_ns(CLOCK_PROCESS_CPUTIME_ID) < end)
		for (int i = 0; i < 20000; i++)
			x = x * 1.0000001 + 1e-9;
}

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 6), par = wl_arg(argc, argv, 2, 2), ms = wl_arg(argc, argv, 3, 50);
	long started = 0, running = 0;

	while (started < n || running) {
		if (started < n && running < par) {
			pid_t p = fork();

			if (p < 0)
				wl_die("fork");
			if (p == 0) {
				burn(ms);
				_exit(0);
			}
			started++;
			running++;
			continue;
		}
		if (wait4(-1, NULL, 0, NULL) < 0)
			wl_die("wait4");
		running--;
	}
	printf("{\"workload\":\"jobs\",\"pid\":%d,\"jobs\":%ld,\"par\":%ld,\"ms\":%ld}\n", getpid(), n, par, ms);
	return 0;
}
