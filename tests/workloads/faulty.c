/* faulty MS PAGES CHUNK: MS ms of arithmetic (by the thread's CPU clock)
 * interleaved with first-touch faults of PAGES anonymous 4 KiB pages, mapped,
 * touched and unmapped CHUNK pages at a time (THP off), so that kernel time
 * outside syscalls (fault handling) is a large share of the CPU time. Prints
 * getrusage(RUSAGE_SELF)'s user and system time: the kernel's own split. */
#include "wl.h"
#include <sys/mman.h>

static volatile double sink;

static void spin_ns(long long ns)
{
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + ns;
	double x = 1.0;

	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 200000; i++)
			x = x * 1.0000001 + 1e-9;
	sink = x;
}

int main(int argc, char **argv)
{
	long ms = wl_arg(argc, argv, 1, 800), pages = wl_arg(argc, argv, 2, 200000);
	long chunk = wl_arg(argc, argv, 3, 1000), rounds, touched = 0;
	struct rusage ru;

	if (ms < 0 || pages < 1 || chunk < 1) {
		fprintf(stderr, "workload: faulty MS PAGES CHUNK\n");
		return 101;
	}
	rounds = (pages + chunk - 1) / chunk;
	for (long r = 0; r < rounds; r++) {
		size_t len = (size_t)chunk * 4096;
		volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			wl_die("mmap");
		if (madvise((void *)p, len, MADV_NOHUGEPAGE))
			wl_die("madvise");
		for (long i = 0; i < chunk; i++)
			p[(size_t)i * 4096] = 1;
		touched += chunk;
		munmap((void *)p, len);
		spin_ns(ms * 1000000LL / rounds);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"workload\":\"faulty\",\"pid\":%d,\"pages\":%ld,\"spin_ms\":%ld,"
	       "\"utime_ns\":%lld,\"stime_ns\":%lld,\"minflt\":%ld}\n",
	       getpid(), touched, ms, wl_tv_ns(ru.ru_utime), wl_tv_ns(ru.ru_stime), ru.ru_minflt);
	return 0;
}
