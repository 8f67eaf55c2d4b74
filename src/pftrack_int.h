/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Internals shared by pftrack.c (following and sampling) and pfledger.c
 * (ledgers, books, snapshot and the report's procfs parts). */
#ifndef CM_PFTRACK_INT_H
#define CM_PFTRACK_INT_H

#include <time.h>
#include "contactmap.h"
#include "pftrack.h"

/* A task's cumulative counters as the kernel keeps them. */
struct pf_ctr {
	uint64_t exec, rd, pcount;	/* schedstat: ns on CPU, ns waiting for one, arrivals */
	uint64_t utime, stime;		/* stat: clock ticks (cputime_adjust'ed) */
	uint64_t minflt, majflt;
	uint64_t vol, invol;		/* status */
};

struct pf_cause {
	uint32_t code;			/* CM_PF_* or a syscall, see cm_pf_classify */
	uint64_t n;			/* samples */
};

struct pf_proc;

struct pf_thread {
	pid_t tid;
	struct pf_proc *p;
	size_t idx, pidx;		/* in pf->threads, in p->tl */
	struct cm_pf_task f;
	uint32_t gen;
	char comm[CM_COMM_LEN];
	uint64_t starttime;		/* stat: tells this thread from a later one with its tid */
	uint64_t start_ns, last_ns;	/* its window: start, and the last read that found it */
	uint64_t detail_ns;		/* last read of stat and status */
	uint64_t exit_ns;		/* its exit, from a perf record (0: not known) */
	struct pf_ctr base, cur;
	uint64_t detail_pcount, detail_exec;	/* schedstat at the last detail read */
	/* the sampler */
	uint64_t s_exec, s_pcount;	/* schedstat at the last check */
	uint32_t s_cause;		/* what the last check found (CM_PF_NOT_BLOCKED: running) */
	uint16_t every;			/* checked every `every` ticks (1 while it runs) */
	uint16_t due;			/* ticks to its next check */
	uint16_t still;			/* checks in a row that found it blocked, unchanged */
	uint16_t since;			/* ticks since its state was last booked */
	uint16_t stale;			/* checks that found it runnable and not run */
	uint64_t qbase;			/* its process's quiet_ticks, last booked */
	uint32_t last_cause;		/* the last cause a full read found */
	uint64_t run_ns, run_exec, run_rd;	/* the last check that saw it run */
	bool known;			/* s_cause is set */
	struct pf_cause *causes;
	uint32_t ncauses, capcauses;
	uint64_t samples;		/* blocked samples booked */
	bool held;			/* wrap mode's child before exec */
	bool ran;			/* ran since its process was last scanned */
	bool ended;
};

struct pf_whole {			/* a process's counters, its ended threads included */
	uint64_t clock;			/* process CPU clock, ns */
	uint64_t utime, stime, minflt, majflt;
	uint64_t cminflt, cmajflt;	/* of the children it has reaped */
	struct cm_pf_io io;
};

struct pf_proc {
	pid_t pid, ppid;
	uint32_t pgen;
	char comm[CM_COMM_LEN];
	struct cm_pf_task f;		/* /proc/PID */
	clockid_t clk;
	bool clk_ok, have_whole, have_io;
	bool seeded, command, held, ended, leader_seen;
	bool quiet;			/* its CPU clock stood still over the last tick */
	uint64_t quiet_ticks, quiet_ns;	/* ticks it stood still, the last one's time */
	struct pf_whole base, cur;
	uint64_t tick_clock;		/* clock at the last tick: unchanged, nothing ran */
	uint64_t start_ns, end_ns, last_ns, scan_ns;
	uint32_t nlive;
	struct pf_thread **tl;		/* its live threads */
	size_t ntl, captl;
	bool dirty;			/* a thread ran since the last scan */
	int exit_code;
	bool has_exit_code;
	/* ended threads' figures, summed (what the process-wide counters hold) */
	uint64_t ended_exec, ended_user, ended_minflt, ended_majflt, ended_vol, ended_invol;
	uint64_t threads_seen, threads_ended;
	uint64_t unseen_threads, unseen_ns;	/* started and ended between two reads (perf) */
	uint64_t tails_ns;		/* ended threads' time after their last read (perf) */
	/* the rest: what the process-wide counters (and the closure) hold that
	 * no thread row does */
	uint64_t rest_vol, rest_invol;	/* from the command's rusage */
	/* its reaped children's faults that went to ended children's figures,
	 * and children never seen alive that ended (perf) */
	uint64_t kids_minflt, kids_majflt, kids_unseen, kids_unseen_done;
	bool faults_from_parent;	/* its last faults came from its parent's stat */
	struct pf_thread *leader;	/* its leader thread, ended: kept until the
					 * process ends, whose exit code it carries */
	bool final_read;		/* the command's zombie, read: waits for its rusage */
};

/* A task that a perf fork record announced and no read has found yet. */
struct pf_pending {
	uint32_t tid, pid, ppid;
	uint64_t fork_ns;		/* 0: its exit record came first */
	uint64_t exit_ns;
};

struct cm_pf {
	struct cm_tracer *tr;
	struct cm_pf_caps caps;
	struct cm_pf_opts o;
	uint64_t tick_ns, next_tick, next_detail, next_adapt, next_trim, next_scan;
	unsigned hz;			/* the rate in use */
	uint32_t next_gen;
	uint64_t boot_offset_ns;	/* CLOCK_BOOTTIME - CLOCK_MONOTONIC */

	struct pf_thread **threads;	/* live */
	size_t nthreads, capthreads;
	struct pf_thread **tmap;	/* tid -> thread, open addressing */
	size_t tcap;
	struct pf_proc **procs;		/* every process, ended ones too */
	size_t nprocs, capprocs;
	struct pf_pending *pending;
	size_t npending, cappending;

	struct cm_perf *perf;
	char perf_error[160];

	/* the sampler's own figures */
	uint64_t ticks, checks, thread_ticks, blocked_samples;
	uint64_t sampler_ns, detail_ns_cpu, window_cpu_ns, window_start;
	uint64_t discover_ns;		/* meeting threads: their files opened and first read */
	unsigned min_hz;
	uint64_t window_ticks;		/* ticks at the last adapt() */
	uint64_t threads_at_min;
	uint64_t lowered;
	uint64_t max_live_threads;
	uint64_t read_errors;		/* files that existed but could not be read */
	uint64_t fd_fallbacks;

	/* processes and threads never seen alive that no known process holds */
	uint64_t orphan_threads, orphan_procs, orphan_ns;
	uint64_t procs_seen;

	/* wrap mode: the command's end and rusage */
	pid_t command;
	bool have_rusage;
	struct rusage ru;
	struct pf_closure {
		uint64_t oncpu, user, minflt, majflt, vol, invol;	/* what the report held */
		uint64_t r_oncpu, r_user, r_minflt, r_majflt, r_vol, r_invol;	/* the rusage */
		bool to_command;	/* booked to the command's rest (it had no children) */
		bool done;
	} closure;
};

#define PF_NO_CLOCK UINT64_MAX

/* A clock's value in ns, PF_NO_CLOCK when it cannot be read (the process is gone). */
static inline uint64_t pf_clock(clockid_t c)
{
	struct timespec ts;

	if (clock_gettime(c, &ts))
		return PF_NO_CLOCK;
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* pfledger.c */
/* The thread's record and rows as of `end` (its own end when it ended). */
int cm_pfl_thread(const struct cm_pf *pf, const struct pf_thread *th, uint64_t end,
		  struct cm_thread *t, struct cm_sys_key **keys, struct cm_sys_stat **rows, size_t *n);
/* A thread has ended: its figures into its process's sums (once). */
void cm_pfl_account_end(struct cm_pf *pf, struct pf_thread *th);
/* Hands an ended thread to the books. */
void cm_pfl_retire(struct cm_pf *pf, struct pf_thread *th, uint32_t flags);
/* The process's rest as a thread record (tid 0); false when it holds nothing. */
bool cm_pfl_rest(const struct cm_pf *pf, const struct pf_proc *p, uint64_t end, struct cm_thread *t);
/* An ended process: its rest into the books, the process marked ended. */
void cm_pfl_proc_end(struct cm_pf *pf, struct pf_proc *p);
/* Wrap mode: the rusage against what the report holds, the difference booked. */
void cm_pfl_close_books(struct cm_pf *pf);

/* pftrack.c */
struct pf_proc *cm_pf_find_proc(const struct cm_pf *pf, pid_t pid);
/* Books every thread's standing-still ticks (before a snapshot). */
void cm_pf_flush(struct cm_pf *pf);

#endif /* CM_PFTRACK_INT_H */
