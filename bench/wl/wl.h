/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared bits of the benchmark workloads. Each workload times only its
 * measured loop with CLOCK_MONOTONIC, in chunks of a few hundred microseconds
 * to a few milliseconds, and prints one JSON line:
 *   {"bench":NAME,"ops":N,"elapsed_ns":T,"ns_per_op":MEDIAN_OVER_CHUNKS,
 *    "mean_ns_per_op":T/N,"cpu_ns_per_op":C/N,"chunks":K,"main_ns":M,...}
 * The median over chunks is the figure of merit: on a shared 2-CPU VM a
 * chunk in which the workload was preempted or its vCPU stolen is an outlier
 * that the median ignores, while a cost paid on every operation (a tracer's)
 * moves every chunk. The plain mean is printed too. main_ns is
 * CLOCK_MONOTONIC at main()'s first statement, so a harness that notes the
 * clock just before spawning a tracer gets the tracer's start-up time.
 */
#ifndef BENCH_WL_H
#define BENCH_WL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static inline long arg_long(int argc, char **argv, int i, long def)
{
	return argc > i ? strtol(argv[i], NULL, 0) : def;
}

/* Per-chunk timings: ns per op of each chunk, and the totals. */
struct timing {
	double *chunk;
	size_t n, cap;
	uint64_t ops, elapsed_ns;
	uint64_t cpu0;
};

static inline void timing_start(struct timing *t)
{
	t->cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

static inline void timing_add(struct timing *t, uint64_t ns, uint64_t ops)
{
	if (!ops)
		return;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 1024;
		t->chunk = realloc(t->chunk, t->cap * sizeof(*t->chunk));
		if (!t->chunk) {
			perror("realloc");
			exit(1);
		}
	}
	t->chunk[t->n++] = (double)ns / ops;
	t->ops += ops;
	t->elapsed_ns += ns;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static inline void report(const char *name, uint64_t main_ns, struct timing *t, const char *extra)
{
	uint64_t cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - t->cpu0;
	double med = 0, p10 = 0;

	if (t->n) {
		qsort(t->chunk, t->n, sizeof(*t->chunk), cmp_double);
		med = t->n % 2 ? t->chunk[t->n / 2] : (t->chunk[t->n / 2 - 1] + t->chunk[t->n / 2]) / 2;
		p10 = t->chunk[t->n / 10];
	}
	/* p10: the 10th percentile of chunks, for A/B runs on a noisy host (a
	 * cost paid on every operation moves it as much as the median) */
	printf("{\"bench\":\"%s\",\"ops\":%llu,\"elapsed_ns\":%llu,\"ns_per_op\":%.2f,"
	       "\"p10_ns_per_op\":%.2f,\"mean_ns_per_op\":%.2f,\"cpu_ns_per_op\":%.2f,\"chunks\":%zu,\"main_ns\":%llu%s%s}\n",
	       name, (unsigned long long)t->ops, (unsigned long long)t->elapsed_ns, med, p10,
	       t->ops ? (double)t->elapsed_ns / t->ops : 0.0, t->ops ? (double)cpu / t->ops : 0.0,
	       t->n, (unsigned long long)main_ns, extra && *extra ? "," : "", extra ? extra : "");
	fflush(stdout);
}

#endif
