/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * perf_event_open without privileges (perf_event_paranoid <= 2, one's own
 * processes): per-task events inherited by every thread and process the
 * followed tasks start, giving fork/exit/exec records (how the procfs tier
 * counts threads it never saw alive) and, with a rate, user-mode samples with
 * the user registers and a copy of the user stack, unwound by the same DWARF
 * unwinder the BPF tier's samples go through (stacks.c).
 */
#ifndef CM_PERFSAMPLE_H
#define CM_PERFSAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cm_stacks;
struct cm_perf;

struct cm_perf_ops {
	/* a task started: pid/tid the new one, ppid/ptid its creator; ns CLOCK_MONOTONIC */
	void (*fork)(void *ctx, uint32_t pid, uint32_t ppid, uint32_t tid, uint32_t ptid, uint64_t ns);
	void (*exit)(void *ctx, uint32_t pid, uint32_t tid, uint64_t ns);
	/* the comm of a sampled thread, for its folded stacks */
	void (*comm)(void *ctx, uint32_t pid, uint32_t tid, char *comm, size_t sz);
};

/* hz 0: fork/exit/exec records only (a dummy event); else also user-mode
 * samples at hz, fed to stacks. NULL on failure, with the reason in err. */
struct cm_perf *cm_perf_new(unsigned hz, struct cm_stacks *stacks, const struct cm_perf_ops *ops,
			    void *ctx, char *err, size_t errsz);
/* Follows task tid (and what it starts) on every CPU. enable_on_exec: the
 * events start at its next exec (the wrapped command, held before it).
 * 0, -EMFILE past the event budget, or -errno. */
int cm_perf_follow(struct cm_perf *p, pid_t tid, bool enable_on_exec);
/* Reads every record the rings hold. */
void cm_perf_drain(struct cm_perf *p);

struct cm_perf_counts {
	uint64_t samples;	/* user-mode samples read */
	uint64_t lost;		/* records the kernel could not write (ring full) */
	uint64_t throttled;	/* the kernel throttled sampling (perf_event_max_sample_rate) */
	uint64_t forks, exits;
	uint64_t tasks;		/* tasks followed directly */
	uint64_t not_followed;	/* tasks past the event budget */
	uint64_t events;	/* perf events open */
	unsigned ring_kib;	/* per CPU */
	unsigned hz;
};
void cm_perf_get_counts(const struct cm_perf *p, struct cm_perf_counts *c);
void cm_perf_free(struct cm_perf *p);

#endif /* CM_PERFSAMPLE_H */
