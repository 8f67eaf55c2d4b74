/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The tracing session: BPF objects, the traced targets, and what was read back. */
#ifndef CM_TRACER_H
#define CM_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "contactmap.h"

struct contactmap_bpf;

struct cm_tracer_opts {
	unsigned max_threads;
	unsigned max_syscall_rows;
	const char *force_attach;	/* "tp_btf" or "raw_tp"; NULL = best available */
	unsigned sample_hz;		/* on-CPU stack samples per second; 0 = off */
	bool offcpu_stacks;
	uint64_t min_block_ns;		/* shorter blocks get no off-CPU stack */
	const char *trace_path;		/* --trace: slices stream into it */
	uint64_t trace_max_bytes;
	uint64_t trace_sys_min_ns;
	uint64_t trace_max_per_sec;
};

/* Features found on this kernel, and the choices made. */
struct cm_features {
	bool btf;
	bool tp_btf;		/* tp_btf programs loaded */
	bool raw_tp;		/* raw_tp programs load (probed only when needed) */
	bool fentry;
	bool kprobes;
	bool ringbuf;
	bool task_storage;
	bool perf_cpu_clock;
	bool hw_counters;
	bool page_fault_tp;
	bool block_tp;
	const char *attach_type;	/* what is in use */
	char tp_btf_error[128];		/* why tp_btf was not used */
};

struct cm_stacks;
struct cm_sym;
struct ring_buffer;

struct cm_tracer {
	struct contactmap_bpf *skel;
	struct cm_sym *sym;
	struct cm_stacks *stacks;	/* NULL when stacks are off */
	struct ring_buffer *rb;
	struct bpf_link **perf_links;
	int *perf_fds;
	int nperf;
	uint64_t min_block_ns;
	struct cm_timeline *timeline;
	int stats_fd;		/* BPF run-time statistics stay on while it is open */
	struct cm_features feat;
	uint64_t start_ns, end_ns;
	unsigned seeded;
};

/* Everything read back from the maps after detaching. */
struct cm_snapshot {
	struct cm_thread *threads;
	size_t nthreads;
	struct cm_sys_key *sys_keys;
	struct cm_sys_stat *sys_stats;
	size_t nsys;
	struct cm_blk_key *blk_keys;
	struct cm_blk_stat *blk_stats;
	size_t nblk;
	struct cm_counters counters;
	uint64_t recursion_misses;
	/* observer cost: what each loaded program cost the whole system */
	struct cm_prog_cost {
		char name[32];
		uint64_t run_cnt, run_time_ns;
	} progs[32];
	size_t nprogs;
	bool stats_on;
};

uint64_t cm_now_ns(void);
void cm_probe_features(struct cm_features *f);
/* Opens, sizes, loads (tp_btf, else raw_tp) and attaches. 0 or -1 (printed). */
int cm_tracer_start(struct cm_tracer *tr, const struct cm_tracer_opts *o);
/* Adds every thread of pid to the traced set, state read from /proc. held:
 * our own child waiting to exec, whose pipe read is not the command's. */
int cm_tracer_seed_process(struct cm_tracer *tr, pid_t pid, bool held);
int64_t cm_tracer_live_threads(struct cm_tracer *tr);
/* Event stream: an fd to poll (or -1), and a non-blocking drain. */
int cm_tracer_event_fd(struct cm_tracer *tr);
void cm_tracer_consume(struct cm_tracer *tr);
/* Reads the maps while tracing goes on, as of now (end_ns set to now). */
int cm_tracer_peek(struct cm_tracer *tr, struct cm_snapshot *snap);
/* Detaches, stamps end_ns, reads the maps. */
int cm_tracer_stop(struct cm_tracer *tr, struct cm_snapshot *snap);
void cm_tracer_close(struct cm_tracer *tr);
void cm_snapshot_free(struct cm_snapshot *s);

/* Builds the contactmap/1 report (report.c). target and exit may be NULL;
 * ownership of both passes to the report. */
json_object *cm_build_report(const struct cm_tracer *tr, struct cm_snapshot *snap,
			     json_object *target, json_object *exit);
json_object *cm_features_json(const struct cm_features *f);

#endif /* CM_TRACER_H */
