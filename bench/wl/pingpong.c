// SPDX-License-Identifier: GPL-2.0
/*
 * pingpong N: two threads pass one byte back and forth over two pipes, N
 * round trips (2 writes, 2 reads, 2 wakeups and usually 2-4 context switches
 * each), timed in chunks of 32. Reports ns per round trip.
 */
#include <pthread.h>
#include <unistd.h>
#include "wl.h"

#define CHUNK 32

static int ping[2], pong[2];

static void *echo(void *arg)
{
	char c;

	while (read(ping[0], &c, 1) == 1) {
		if (c == 'q' || write(pong[1], &c, 1) != 1)
			break;
	}
	return NULL;
}

static void round_trips(long n)
{
	char c = 'p';

	for (long i = 0; i < n; i++) {
		if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) {
			perror("pingpong");
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t main_ns = now_ns();
	long n = arg_long(argc, argv, 1, 25000);
	struct timing t = { 0 };
	pthread_t th;

	if (pipe(ping) || pipe(pong)) {
		perror("pipe");
		return 1;
	}
	if (pthread_create(&th, NULL, echo, NULL)) {
		perror("pthread_create");
		return 1;
	}
	round_trips(1000);	/* warm-up: not timed */
	timing_start(&t);
	for (long done = 0; done < n; done += CHUNK) {
		long k = n - done > CHUNK ? CHUNK : n - done;
		uint64_t t0 = now_ns();

		round_trips(k);
		timing_add(&t, now_ns() - t0, k);
	}
	if (write(ping[1], "q", 1) != 1)
		return 1;
	pthread_join(th, NULL);
	report("pingpong", main_ns, &t, NULL);
	return 0;
}
