/* Shared helpers of the ground-truth workloads (header only; each workload is
 * one .c file built by the Makefile as .output/tests/<name>). Every workload
 * prints its own ground truth as ONE JSON line on stdout, last. */
#ifndef WL_H
#define WL_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static inline void wl_die(const char *what)
{
	fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
	exit(100);
}

static inline long wl_arg(int argc, char **argv, int i, long def)
{
	char *end;
	long v;

	if (i >= argc)
		return def;
	errno = 0;
	v = strtol(argv[i], &end, 0);
	if (errno || *end || end == argv[i]) {
		fprintf(stderr, "workload: bad number '%s'\n", argv[i]);
		exit(101);
	}
	return v;
}

static inline long long wl_now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline long long wl_tv_ns(struct timeval tv)
{
	return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

/* One getppid() syscall that glibc cannot cache or elide. */
static inline long wl_getppid(void)
{
	return syscall(SYS_getppid);
}

/* voluntary_ctxt_switches / nonvoluntary_ctxt_switches of a task of this process. */
static inline long wl_task_ctxt(pid_t tid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	f = fopen(path, "r");
	if (!f)
		wl_die(path);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':')
			v = strtol(line + klen + 1, NULL, 10);
	fclose(f);
	return v;
}
#endif
