// SPDX-License-Identifier: GPL-2.0
/*
 * faults N: first-touch page faults on N anonymous 4 KiB pages, in mappings
 * of 64 MiB (mmap, touch every page once, munmap). Transparent huge pages are
 * refused with MADV_NOHUGEPAGE so that each page is one fault. Only the
 * touches are timed, in chunks of 64 pages. Reports ns per fault and the
 * minor faults counted by the kernel over the whole run.
 */
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include "wl.h"

#define MAP_PAGES 16384L
#define CHUNK 64

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

int main(int argc, char **argv)
{
	uint64_t main_ns = now_ns();
	long n = arg_long(argc, argv, 1, 40000);
	long page = sysconf(_SC_PAGESIZE), done = 0, f0;
	struct timing t = { 0 };
	char extra[64];

	f0 = minflt();
	timing_start(&t);
	while (done < n) {
		long np = n - done < MAP_PAGES ? n - done : MAP_PAGES;
		size_t len = (size_t)np * page;
		volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		madvise((void *)p, len, MADV_NOHUGEPAGE);
		for (long c = 0; c < np; c += CHUNK) {
			long k = np - c > CHUNK ? CHUNK : np - c;
			uint64_t t0 = now_ns();

			for (long i = c; i < c + k; i++)
				p[i * page] = 1;
			timing_add(&t, now_ns() - t0, k);
		}
		munmap((void *)p, len);
		done += np;
	}
	snprintf(extra, sizeof(extra), "\"minflt\":%ld", minflt() - f0);
	report("faults", main_ns, &t, extra);
	return 0;
}
