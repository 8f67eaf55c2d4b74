/* Shared helpers of the microbenchmarks (header only; each benchmark is one .c
 * file built by the Makefile as .output/microbenches/<name>).
 *
 * Every benchmark takes its sizes from its arguments, measures its own timed
 * loop with CLOCK_MONOTONIC (the clock contactmap reports in), and prints its
 * own figures as ONE JSON line on stdout, last: the exact number of each
 * syscall it made in its loops, ns per operation, and its pid/tids, so that a
 * test can put contactmap's report next to the benchmark's own account. */
#ifndef MB_H
#define MB_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static inline void mb_die(const char *bench, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", bench, what, strerror(errno));
	exit(100);
}

static inline void mb_usage(const char *usage)
{
	fprintf(stderr, "usage: %s\n", usage);
	exit(2);
}

/* argv[i] as a positive number, DEF when absent; anything else is a usage error. */
static inline long mb_arg(int argc, char **argv, int i, long def, const char *usage)
{
	char *end;
	long v;

	if (i >= argc)
		return def;
	errno = 0;
	v = strtol(argv[i], &end, 0);
	if (errno || *end || end == argv[i] || v < 0)
		mb_usage(usage);
	return v;
}

static inline long long mb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline double mb_per(long long ns, long n)
{
	return n > 0 ? (double)ns / (double)n : 0.0;
}

/* One raw syscall each: glibc may not cache or elide them. */
static inline long mb_getpid(void)
{
	return syscall(SYS_getpid);
}

static inline pid_t mb_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}
#endif
