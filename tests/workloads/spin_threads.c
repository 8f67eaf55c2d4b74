/* spin_threads N MILLIONS: N threads named spin0, spin1 ..., each doing the
 * same fixed amount of pure user-space work (MILLIONS x 10^6 xorshift steps),
 * joined by main. Fixed work, not fixed time: confined to fewer CPUs than
 * threads, each thread waits on the run queue while the others run. Prints
 * each thread's scheduling policy as it ended its work. */
#include "wl.h"
#include <pthread.h>
#include <sched.h>

#define MAXT 64

static long work;
static int policy[MAXT];

static void *spin(void *arg)
{
	unsigned long x = 88172645463325252UL + (unsigned long)arg;
	char name[16];

	snprintf(name, sizeof(name), "spin%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	for (long i = 0; i < work * 1000000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	policy[(long)arg] = sched_getscheduler(0);
	return (void *)(x & 1);
}

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 2), ones = 0;
	pthread_t th[MAXT];

	work = wl_arg(argc, argv, 2, 50);
	if (n < 1 || n > MAXT)
		wl_die("threads: 1..64");
	for (long i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, spin, (void *)i))
			wl_die("pthread_create");
	for (long i = 0; i < n; i++) {
		void *r;

		pthread_join(th[i], &r);
		ones += (long)r;
	}
	printf("{\"threads\": %ld, \"millions\": %ld, \"ones\": %ld, \"policies\": [", n, work, ones);
	for (long i = 0; i < n; i++)
		printf("%s%d", i ? ", " : "", policy[i]);
	printf("]}\n");
	return 0;
}
