/* major_faults FILE K: reads one byte of each of the first K pages of FILE
 * through a shared mapping, after dropping the file's clean pages from the
 * page cache and turning read-ahead off (MADV_RANDOM), so that each touch is
 * a major fault that blocks on a disk read from user mode, outside any
 * syscall. Ground truth: getrusage faults, and the touch loop's elapsed,
 * on-CPU and run-queue time from the scheduler's own /proc/self/schedstat, so
 * blocked = elapsed - on-CPU - run queue (the reads themselves are syscalls:
 * they are outside the loop, before t0 and after t1). In a VM that blocked
 * figure also holds the time the hypervisor ran something else on the vCPU
 * (steal): the kernel leaves it out of the run time, and a fault whose read
 * completes while the vCPU is stolen does not block at all. So the loop's
 * voluntary switches are printed too (each is a blocking fault: the loop
 * makes no syscalls), and the process's run time at the end. */
#include "wl.h"
#include <fcntl.h>
#include <sys/mman.h>

static void schedstat(long long *run, long long *wait)
{
	FILE *f = fopen("/proc/self/schedstat", "r");

	if (!f || fscanf(f, "%lld %lld", run, wait) != 2)
		wl_die("/proc/self/schedstat");
	fclose(f);
}

int main(int argc, char **argv)
{
	long long run0, wait0, run1, wait1, run2, wait2;
	long k = wl_arg(argc, argv, 2, 256), i;
	size_t len = (size_t)k * 4096;
	struct rusage before, after;
	volatile const char *p;
	long long t0, t1;
	unsigned sum = 0;
	int fd;

	if (argc < 2)
		wl_die("usage: major_faults FILE K");
	fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		wl_die("open");
	if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		wl_die("posix_fadvise");
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		wl_die("mmap");
	if (madvise((void *)p, len, MADV_RANDOM))
		wl_die("madvise");
	getrusage(RUSAGE_SELF, &before);
	schedstat(&run0, &wait0);
	t0 = wl_now_ns(CLOCK_MONOTONIC);
	for (i = 0; i < k; i++)
		sum += p[(size_t)i * 4096];
	t1 = wl_now_ns(CLOCK_MONOTONIC);
	schedstat(&run1, &wait1);
	getrusage(RUSAGE_SELF, &after);
	munmap((void *)p, len);
	close(fd);
	schedstat(&run2, &wait2);
	printf("{\"workload\":\"major_faults\",\"pid\":%d,\"pages\":%ld,\"sum\":%u,"
	       "\"majflt_delta\":%ld,\"minflt_delta\":%ld,\"nvcsw_delta\":%ld,\"elapsed_ns\":%lld,"
	       "\"oncpu_ns\":%lld,\"runq_ns\":%lld,\"oncpu_total_ns\":%lld}\n",
	       getpid(), k, sum, after.ru_majflt - before.ru_majflt,
	       after.ru_minflt - before.ru_minflt, after.ru_nvcsw - before.ru_nvcsw, t1 - t0,
	       run1 - run0, wait1 - wait0, run2);
	return 0;
}
