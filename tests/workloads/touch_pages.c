/* touch_pages K: K anonymous 4 KiB pages (THP off), one byte written per page;
 * getrusage(RUSAGE_SELF) minor/major faults before and after. */
#include "wl.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	long k = wl_arg(argc, argv, 1, 1000), i;
	size_t len = (size_t)k * 4096;
	struct rusage before, after;
	volatile char *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		wl_die("mmap");
	if (madvise((void *)p, len, MADV_NOHUGEPAGE))
		wl_die("madvise");
	getrusage(RUSAGE_SELF, &before);
	for (i = 0; i < k; i++)
		p[(size_t)i * 4096] = 1;
	getrusage(RUSAGE_SELF, &after);
	printf("{\"workload\":\"touch_pages\",\"pid\":%d,\"pages\":%ld,"
	       "\"minflt_before\":%ld,\"minflt_after\":%ld,\"minflt_delta\":%ld,"
	       "\"majflt_before\":%ld,\"majflt_after\":%ld,\"majflt_delta\":%ld}\n",
	       getpid(), k, before.ru_minflt, after.ru_minflt, after.ru_minflt - before.ru_minflt,
	       before.ru_majflt, after.ru_majflt, after.ru_majflt - before.ru_majflt);
	munmap((void *)p, len);
	return 0;
}
