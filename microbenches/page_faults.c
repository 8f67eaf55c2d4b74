/* page_faults [PAGES] [4k|thp]: the cost of first touch of anonymous memory.
 *
 * Maps PAGES*4 KiB of anonymous memory and writes one byte per 4 KiB page:
 *   4k   madvise(MADV_NOHUGEPAGE): one minor fault per page
 *   thp  2 MiB-aligned, madvise(MADV_HUGEPAGE): with transparent huge pages
 *        "always" or "madvise", one fault maps (and zeroes) 2 MiB, so about
 *        PAGES/512 faults; with "never", or when no huge page can be had,
 *        the kernel falls back to 4 KiB pages.
 * Prints ns per 4 KiB page, the faults of the loop (getrusage before/after),
 * the process's fault total at the end, and the huge pages it got
 * (AnonHugePages of /proc/self/smaps_rollup while the mapping is alive). */
#include "mb.h"
#include <sys/mman.h>

#define USAGE "page_faults [PAGES] [4k|thp]"
#define HUGE (2UL << 20)

static long anon_huge_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "AnonHugePages:", 14))
			kb = strtol(line + 14, NULL, 10);
	fclose(f);
	return kb;
}

static void thp_setting(char *out, size_t n)
{
	char buf[128] = "", *l, *r;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	snprintf(out, n, "unknown");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f) && (l = strchr(buf, '[')) && (r = strchr(l, ']'))) {
		*r = 0;
		snprintf(out, n, "%s", l + 1);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	long pages = mb_arg(argc, argv, 1, 16384, USAGE), i, huge_kb;
	const char *mode = argc > 2 ? argv[2] : "4k";
	int thp = !strcmp(mode, "thp");
	size_t len = (size_t)pages * 4096, maplen;
	struct rusage before, after, end;
	long long t0, elapsed;
	char setting[32];
	char *map, *p;

	if (argc > 3 || (!thp && strcmp(mode, "4k")) || pages < 1)
		mb_usage(USAGE);
	thp_setting(setting, sizeof(setting));
	maplen = thp ? len + HUGE : len;	/* room to align to 2 MiB */
	map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		mb_die("page_faults", "mmap");
	p = thp ? (char *)(((unsigned long)map + HUGE - 1) & ~(HUGE - 1)) : map;
	/* EINVAL: a kernel without THP; the loop then simply takes 4 KiB faults */
	if (madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) && errno != EINVAL)
		mb_die("page_faults", "madvise");

	getrusage(RUSAGE_SELF, &before);
	t0 = mb_now_ns();
	for (i = 0; i < pages; i++)
		((volatile char *)p)[(size_t)i * 4096] = 1;
	elapsed = mb_now_ns() - t0;
	getrusage(RUSAGE_SELF, &after);
	huge_kb = anon_huge_kb();
	munmap(map, maplen);
	getrusage(RUSAGE_SELF, &end);

	printf("{\"bench\":\"page_faults\",\"pid\":%d,\"mode\":\"%s\",\"thp_enabled\":\"%s\","
	       "\"pages\":%ld,\"bytes\":%zu,\"elapsed_ns\":%lld,\"ns_per_page\":%.1f,"
	       "\"minflt_loop\":%ld,\"majflt_loop\":%ld,\"ns_per_fault\":%.1f,"
	       "\"anon_huge_kb\":%ld,\"minflt_total\":%ld,\"majflt_total\":%ld}\n",
	       getpid(), mode, setting, pages, len, elapsed, mb_per(elapsed, pages),
	       after.ru_minflt - before.ru_minflt, after.ru_majflt - before.ru_majflt,
	       mb_per(elapsed, after.ru_minflt - before.ru_minflt), huge_kb,
	       end.ru_minflt, end.ru_majflt);
	return 0;
}
