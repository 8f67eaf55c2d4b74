/* knobs_seen [SLEEP_MS] [VAR...]: what the knobs of contactmap experiment
 * look like from inside the workload, as one JSON line printed at once:
 * vm.swappiness, the THP mode, kernel.sched_autogroup_enabled, the CPUs this
 * process may use, its scheduling policy, the named environment variables,
 * and how many pages of a fresh 4 MiB anonymous mmap and of a fresh 4 MiB
 * malloc block are resident before anything touches them (the prefault
 * knob makes them all resident). Then it sleeps SLEEP_MS (default 0), so a
 * test can stop the run while the knobs are set. */
#include "wl.h"
#include <sched.h>
#include <sys/mman.h>

#define REGION (4 << 20)

static void file_word(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	char buf[256] = "", *a, *b;

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	/* "always [madvise] never" -> "madvise" */
	if ((a = strchr(buf, '[')) && (b = strchr(a, ']'))) {
		*b = '\0';
		memmove(buf, a + 1, strlen(a + 1) + 1);
	}
	snprintf(out, n, "%s", buf);
}

static long resident(void *p, size_t len)
{
	unsigned char vec[REGION / 4096];
	long n = 0, pages = (long)(len / 4096);
	char *start = (char *)(((unsigned long)p + 4095) & ~4095UL);

	if (start + len > (char *)p + len)
		pages--;
	if (mincore(start, (size_t)pages * 4096, vec))
		wl_die("mincore");
	for (long i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

int main(int argc, char **argv)
{
	long sleep_ms = wl_arg(argc, argv, 1, 0);
	char swp[64], thp[64], ag[64];
	cpu_set_t set;
	void *m, *b;
	long rm, rb;

	file_word("/proc/sys/vm/swappiness", swp, sizeof(swp));
	file_word("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp));
	file_word("/proc/sys/kernel/sched_autogroup_enabled", ag, sizeof(ag));
	if (sched_getaffinity(0, sizeof(set), &set))
		wl_die("sched_getaffinity");
	m = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		wl_die("mmap");
	b = malloc(REGION);
	if (!b)
		wl_die("malloc");
	rm = resident(m, REGION);
	rb = resident(b, REGION - 8192);
	printf("{\"swappiness\": \"%s\", \"thp\": \"%s\", \"autogroup\": \"%s\", \"ncpus\": %d, "
	       "\"cpu0\": %d, \"cpu1\": %d, \"policy\": %d, \"mmap_resident\": %ld, \"malloc_resident\": %ld, "
	       "\"region_pages\": %d, \"env\": {",
	       swp, thp, ag, CPU_COUNT(&set), CPU_ISSET(0, &set), CPU_ISSET(1, &set), sched_getscheduler(0),
	       rm, rb, REGION / 4096);
	for (int i = 2; i < argc; i++) {
		const char *v = getenv(argv[i]);

		printf("%s\"%s\": ", i > 2 ? ", " : "", argv[i]);
		if (v)
			printf("\"%s\"", v);
		else
			printf("null");
	}
	printf("}}\n");
	fflush(stdout);
	if (sleep_ms > 0) {
		struct timespec ts = { .tv_sec = sleep_ms / 1000, .tv_nsec = (sleep_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	return 0;
}
