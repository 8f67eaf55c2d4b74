/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The procfs tier's tables (pftrack.c): every thread and process it follows,
 * their kernel counters as last read, the off-CPU samples of each thread, and
 * the ledgers built from them, in the structures the BPF tier fills (struct
 * cm_thread records and syscall rows), so cm_build_report makes the same
 * report from either tier.
 */
#ifndef CM_PFTRACK_H
#define CM_PFTRACK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "procfs.h"
#include "perfsample.h"

struct cm_tracer;
struct cm_snapshot;
struct cm_pf;

struct cm_pf_opts {
	unsigned hz;		/* off-CPU samples per second per thread, asked for */
	unsigned stack_hz;	/* user-stack samples per second (0: no stacks) */
	uint64_t detail_ns;	/* how often stat and status of threads that ran are re-read */
	double budget;		/* the sampler's share of one CPU at most (0.01) */
	const char *reason;	/* why this tier: features.tier_reason */
	bool stacks_asked;	/* -f or --stacks oncpu */
};

struct cm_pf *cm_pf_new(struct cm_tracer *tr, const struct cm_pf_caps *caps, const struct cm_pf_opts *o);
void cm_pf_free(struct cm_pf *pf);

/* The window opens now: seeded counters and new threads' starts count from here. */
void cm_pf_open_window(struct cm_pf *pf, uint64_t now);
/* Follows process pid and every thread it has. seeded: it ran before the
 * window, so its counters count from now; otherwise from its start (the
 * wrapped command, counted from its fork as its rusage is). held: wrap
 * mode's child before its exec (not sampled until it runs). 0, or -errno. */
int cm_pf_add_process(struct cm_pf *pf, pid_t pid, bool seeded, bool held, bool command);
/* perf_event_open on the process's threads (before its exec when held). */
void cm_pf_perf_follow(struct cm_pf *pf, pid_t pid, bool enable_on_exec);
/* One sampler tick (and the detail pass when due). */
void cm_pf_tick(struct cm_pf *pf);
/* Whether perf_event_open is in use, and why not. */
bool cm_pf_has_perf(const struct cm_pf *pf);
const char *cm_pf_perf_error(const struct cm_pf *pf);
/* ms to the next tick */
int cm_pf_next_ms(const struct cm_pf *pf);
/* Reads everything once more, now: the end of the window. */
void cm_pf_final(struct cm_pf *pf);
/* Live processes followed. */
size_t cm_pf_live(const struct cm_pf *pf);
/* Wrap mode: the command (a zombie now, not yet reaped) is read for the last
 * time; after wait4, its rusage closes the books. */
void cm_pf_command_exited(struct cm_pf *pf, pid_t pid, int status);
void cm_pf_command_rusage(struct cm_pf *pf, const struct rusage *ru);
/* The live threads as struct cm_thread records and rows, as of now (which
 * becomes tr->end_ns). */
int cm_pf_snapshot(struct cm_pf *pf, struct cm_snapshot *s);
/* The report's procfs parts: features (tier, sources, missing), each
 * process's io and counts, the sampler's cost, the closure. */
void cm_pf_report(const struct cm_tracer *tr, struct cm_snapshot *s, json_object *r);

#endif /* CM_PFTRACK_H */
