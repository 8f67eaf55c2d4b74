/* alloc_churn ITERS MIB [BURN_MS]: allocator churn. Each iteration mallocs MIB MiB, writes
 * every page and frees it. Blocks this large are above glibc's largest mmap
 * threshold (32 MiB), so by default each one is a fresh mmap whose pages all
 * fault in, and free() unmaps it: ITERS x MIB x 256 minor faults. With
 * malloc:notrim (mmap_max=0, no trimming) the heap keeps the block and only
 * the first iteration faults. Each iteration then does BURN_MS ms of user
 * arithmetic (default 0), the same on both sides of an experiment, so that
 * the faults' share of the run falls when they go. Prints the kernel's own
 * fault count. */
#include "wl.h"

static volatile unsigned long sink;

static void burn_ms(long ms)
{
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;
	unsigned long x = 88172645463325252UL;

	while (ms > 0 && wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end) {
		for (int i = 0; i < 100000; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		sink = x;
	}
}

int main(int argc, char **argv)
{
	long iters = wl_arg(argc, argv, 1, 10), mib = wl_arg(argc, argv, 2, 48);
	long burn = wl_arg(argc, argv, 3, 0);
	size_t size = (size_t)mib << 20;
	struct rusage r0, r1;
	unsigned long sum = 0;

	getrusage(RUSAGE_SELF, &r0);
	for (long i = 0; i < iters; i++) {
		volatile char *p = malloc(size);

		if (!p)
			wl_die("malloc");
		for (size_t o = 0; o < size; o += 4096)
			p[o] = (char)i;
		sum += p[size / 2];
		free((void *)p);
		burn_ms(burn);
	}
	getrusage(RUSAGE_SELF, &r1);
	printf("{\"iters\": %ld, \"mib\": %ld, \"minflt\": %ld, \"sum\": %lu}\n", iters, mib,
	       r1.ru_minflt - r0.ru_minflt, sum);
	return 0;
}
