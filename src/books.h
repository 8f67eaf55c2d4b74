/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The books: what traced threads that have ended leave behind, folded into
 * their processes, so that the BPF tables hold only the live set. A thread's
 * exit record (and its drained syscall rows) becomes a closed ledger here; the
 * report joins the books with the live threads read from the maps.
 *
 * Memory follows the live set: per process the heaviest `keep_threads` ended
 * threads stay as rows of their own and the rest fold into one row per comm;
 * beyond `keep_procs` ended processes, the lightest fold into one entry per
 * comm. Every figure stays in the totals: folding loses rows, never time.
 */
#ifndef CM_BOOKS_H
#define CM_BOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "contactmap.h"

/* A closed ledger: one thread's, or several threads' summed (thread-seconds). */
struct cm_tl {
	uint64_t wall;
	uint64_t oncpu_user, oncpu_sys, oncpu_kfault, oncpu_kother, gpu_spin;
	uint64_t runq_wake, runq_preempt;
	uint64_t off_sys, off_fault, off_other, gpu_blocked, gil;
	uint64_t sys_iowait, fault_iowait, other_iowait;
	uint64_t unattributed;
	uint64_t steal;		/* part of on-CPU: its vCPU not running (cm_thread.steal_ns) */
	uint64_t vol, invol, migr, wakeups, runq_waits;
	uint64_t minflt, majflt, user_faults;
	uint64_t gpu_syncs, gpu_sync_ns;
	uint64_t gil_waits;
	uint64_t nthreads;
	uint64_t runq_hist[CM_HIST_SLOTS];
};

/* Off-CPU time in one syscall (nr as the rows keep it). */
struct cm_cause {
	uint32_t nr;
	uint64_t offcpu, iowait;
};

/* A process's figures for one syscall, summed over its threads. */
struct cm_sysrow {
	uint32_t nr;
	struct cm_sys_stat st;
};

struct cm_blkrow {
	uint32_t dev, op;
	struct cm_blk_stat st;
};

/* A thread row of its own, or a group of folded threads of one comm. */
struct cm_trow {
	uint32_t tid;			/* 0 for a group */
	char comm[CM_COMM_LEN];
	uint64_t start_ns, end_ns;	/* end 0: alive at the window's end */
	struct cm_tl l;
	struct cm_cause *causes;
	size_t ncauses;
};

struct cm_proc {
	uint32_t pgen, pid, ppid;
	char comm[CM_COMM_LEN];
	bool leader_seen, leader_exited, group_dead;
	int64_t exit_code;
	uint64_t start_ns, end_ns;	/* end: the last thread's end so far */
	uint64_t dead_seen_ns;		/* when its group-dead record arrived (books' clock) */
	uint64_t live;			/* live threads joined in (views only) */
	uint64_t folded;		/* a group of folded processes: how many */
	struct cm_tl tot;
	struct cm_sysrow *sys;
	size_t nsys, capsys;
	struct cm_trow *threads;	/* kept rows, heaviest first once folding began */
	size_t nthreads, capthreads;
	struct cm_trow *groups;		/* folded threads, one row per comm */
	size_t ngroups, capgroups;
	struct cm_blkrow *blk;
	size_t nblk, capblk;
};

struct cm_books {
	struct cm_proc **procs;		/* open addressing by pgen, cap a power of two */
	size_t cap, n;
	struct cm_proc **pgroups;	/* folded processes, one per comm */
	size_t npgroups, cappgroups;
	unsigned keep_threads, keep_procs;
	/* the CUPTI agent's threads: contactmap's cost, not the program's */
	uint64_t obs_threads, obs_oncpu_ns;
	/* what folding did, for the report */
	uint64_t threads_retired, threads_folded, procs_folded;
};

struct cm_books *cm_books_new(unsigned keep_threads, unsigned keep_procs);
void cm_books_free(struct cm_books *b);

/* Closes a thread's figures at `end` (its own end if it has one): the open
 * interval is charged as the BPF side would have at its next event. */
void cm_thread_close(struct cm_thread *t, uint64_t end);
/* on-CPU time: user + syscall + kernel + GPU spin */
uint64_t cm_tl_oncpu(const struct cm_tl *l);
/* Its ledger; rows are its syscall rows (drained or read), in-flight call
 * included when closed by cm_thread_close. */
void cm_tl_from_thread(struct cm_tl *l, const struct cm_thread *t, uint64_t end);
void cm_tl_add(struct cm_tl *a, const struct cm_tl *b);

/* An ended thread with its syscall rows (n of them, keys and stats). */
int cm_books_retire(struct cm_books *b, struct cm_thread *t, const struct cm_sys_key *keys,
		    const struct cm_sys_stat *rows, size_t n, uint64_t now_ns);
/* A drained block row of process pgen. */
int cm_books_blk(struct cm_books *b, const struct cm_blk_key *k, const struct cm_blk_stat *st);
/* Whether process pgen is in the books, has ended, and its record came
 * at least grace_ns before now (its last threads' records are in). */
bool cm_books_proc_done(const struct cm_books *b, uint32_t pgen, uint64_t now_ns, uint64_t grace_ns);
/* Folds the lightest ended processes beyond keep_procs (their records in
 * for grace_ns) into one entry per comm. */
void cm_books_trim(struct cm_books *b, uint64_t now_ns, uint64_t grace_ns);

/* A view for one report: the books joined with the live threads and rows of a
 * snapshot (whose threads are closed at end_ns in place). Processes sorted by
 * pid. The view owns copies only of processes that have live threads. */
struct cm_view {
	const struct cm_proc **procs;
	size_t nprocs;
	struct cm_proc **owned;
	size_t nowned;
	const struct cm_books *books;
};

struct cm_snapshot;
int cm_view_build(struct cm_view *v, const struct cm_books *b, struct cm_snapshot *s,
		  uint64_t end_ns);
void cm_view_free(struct cm_view *v);

/* Helpers for the report. */
const struct cm_sysrow *cm_proc_sys(const struct cm_proc *p, uint32_t nr);

#endif /* CM_BOOKS_H */
