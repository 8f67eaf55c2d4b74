/* handoff N EVERY SLEEP_US WORK_US: a server thread (main) hands N requests,
 * one at a time, to a worker thread over a pipe and waits on another pipe for
 * the answer; request i is marked with contactmap_request_begin/end(i) on the
 * server thread. The worker sleeps SLEEP_US (clock_nanosleep) on every
 * EVERY-th request (i % EVERY == 0) and computes WORK_US (by its thread CPU
 * clock) on the others. Prints which requests slept. */
#include "wl.h"
#include <pthread.h>
#include "contactmap_mark.h"

static int req[2], resp[2];
static long n, every, sleep_us, work_us;

static void spin_us(long us)
{
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + us * 1000LL;
	volatile double x = 1.0;

	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 20000; i++)
			x = x * 1.0000001 + 1e-9;
}

static void *worker(void *arg)
{
	struct timespec ts = { sleep_us / 1000000, (sleep_us % 1000000) * 1000 };
	long i;

	while (read(req[0], &i, sizeof(i)) == sizeof(i)) {
		if (i < 0)
			break;
		if (i % every == 0)
			clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		else
			spin_us(work_us);
		if (write(resp[1], &i, sizeof(i)) != sizeof(i))
			wl_die("write");
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	long i, stop = -1, slept = 0;

	n = wl_arg(argc, argv, 1, 100);
	every = wl_arg(argc, argv, 2, 10);
	sleep_us = wl_arg(argc, argv, 3, 20000);
	work_us = wl_arg(argc, argv, 4, 2000);
	if (pipe(req) || pipe(resp))
		wl_die("pipe");
	if (pthread_create(&th, NULL, worker, NULL))
		wl_die("pthread_create");
	for (i = 0; i < n; i++) {
		long r;

		contactmap_request_begin((uint64_t)i);
		if (write(req[1], &i, sizeof(i)) != sizeof(i) || read(resp[0], &r, sizeof(r)) != sizeof(r))
			wl_die("pipe");
		contactmap_request_end((uint64_t)i);
		slept += i % every == 0;
	}
	if (write(req[1], &stop, sizeof(stop)) != sizeof(stop))
		wl_die("write");
	pthread_join(th, NULL);
	printf("{\"workload\":\"handoff\",\"pid\":%d,\"requests\":%ld,\"slept\":%ld,\"every\":%ld,"
	       "\"sleep_us\":%ld,\"work_us\":%ld}\n", getpid(), n, slept, every, sleep_us, work_us);
	return 0;
}
