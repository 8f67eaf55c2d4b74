/* threads N [SLEEP_US]: N threads; thread i (0-based) sleeps once for SLEEP_US
 * (clock_nanosleep) and makes 100*(i+1) getppid calls; main joins them all. */
#include "wl.h"
#include <pthread.h>

#define MAXT 256

static long sleep_us;
static pid_t tids[MAXT];
static long ncalls[MAXT];

static void *worker(void *arg)
{
	long i = (long)arg, j;
	struct timespec req = { .tv_sec = sleep_us / 1000000, .tv_nsec = (sleep_us % 1000000) * 1000 };

	tids[i] = gettid();
	clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
	for (j = 0; j < ncalls[i]; j++)
		wl_getppid();
	return NULL;
}

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 4), i, total = 0;
	pthread_t th[MAXT];

	sleep_us = wl_arg(argc, argv, 2, 10000);
	if (n < 1 || n > MAXT) {
		fprintf(stderr, "workload: 1..%d threads\n", MAXT);
		return 101;
	}
	for (i = 0; i < n; i++) {
		ncalls[i] = 100 * (i + 1);
		total += ncalls[i];
		if (pthread_create(&th[i], NULL, worker, (void *)i))
			wl_die("pthread_create");
	}
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	printf("{\"workload\":\"threads\",\"pid\":%d,\"threads\":%ld,\"sleep_us\":%ld,"
	       "\"getppid\":%ld,\"clock_nanosleep\":%ld,\"tids\":[",
	       getpid(), n, sleep_us, total, n);
	for (i = 0; i < n; i++)
		printf("%s{\"tid\":%d,\"getppid\":%ld}", i ? "," : "", tids[i], ncalls[i]);
	printf("]}\n");
	return 0;
}
