/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The tracing session: BPF objects, the traced targets, and what was read back. */
#ifndef CM_TRACER_H
#define CM_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "contactmap.h"
#include "contactmap_gpu.h"

struct contactmap_bpf;

/* enum bpf_attach_type's BPF_TRACE_UPROBE_MULTI (Linux 6.6), which the
 * build machine's <linux/bpf.h> may predate */
#define CM_BPF_TRACE_UPROBE_MULTI 48

/* --gpu: which GPU tier (contactmap_gpu.h) a run may use. */
enum cm_gpu_mode {
	CM_GPU_AUTO = 0,	/* wrap: CUPTI agent, uprobes as fallback; attach: uprobes */
	CM_GPU_OFF,
	CM_GPU_CUPTI,		/* wrap: the agent and nothing else */
	CM_GPU_UPROBES,		/* uprobes only (wrap: the agent only asks for them) */
};

/* --observer-cost: how long the kernel's BPF run-time statistics stay on.
 * While they are on, every BPF program on the machine reads the clock twice
 * per run (~100 ns per syscall on the test VM, traced process or not). */
enum cm_observer_mode {
	CM_OBS_SAMPLED = 0,	/* the first 50 ms of every second of the window */
	CM_OBS_FULL,		/* the whole window: every run counted */
	CM_OBS_OFF,
};

struct cm_tracer_opts {
	unsigned max_threads;		/* live threads at once (a ceiling: not preallocated) */
	unsigned max_syscall_rows;	/* live (thread, syscall) rows at once */
	unsigned keep_threads;		/* ended threads kept as rows of their own, per process */
	unsigned keep_procs;		/* ended processes kept as entries of their own */
	const char *force_attach;	/* "tp_btf" or "raw_tp"; NULL = best available */
	bool block_claim_insert;	/* claim block requests at insert/issue even with block_io_start */
	enum cm_observer_mode observer;
	unsigned sample_hz;		/* on-CPU stack samples per second; 0 = off */
	bool offcpu_stacks;
	uint64_t min_block_ns;		/* shorter blocks get no off-CPU stack */
	const char *trace_path;		/* --trace: slices stream into it */
	uint64_t trace_max_bytes;
	uint64_t trace_sys_min_ns;
	uint64_t trace_max_per_sec;
	enum cm_gpu_mode gpu_mode;
	bool critpath;			/* wake-ups, switch-in records, request markers */
	const char *marker_lib;		/* --marker-lib: libcontactmap-mark.so to probe */
	bool python;			/* Python frames and the GIL cause (python.c) */
	uint64_t cgroup_id;		/* --cgroup: kernfs id of the target (cgroup.c); 0 = none */
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
	bool block_io_start_tp;	/* 6.5+ (with block_io_done): claims requests in the submitter's context */
	bool block_rq_merge_tp;
	const char *attach_type;	/* what is in use */
	char tp_btf_error[128];		/* why tp_btf was not used */
	bool gpu;			/* GPU programs loaded */
	bool uprobe_multi;		/* uprobe_multi links (6.6): one per library, fast to detach */
	bool mem_alloc;			/* bpf_mem_alloc (6.1): tables not preallocated */
	char gpu_error[128];		/* why not */
};

struct cm_stacks;
struct cm_sym;
struct ring_buffer;
struct bpf_map;

struct cm_gpu_state;
struct cm_observer;
struct cm_life;
struct cm_books;
struct cm_critpath;
struct cm_requests;
struct cm_snapshot;

struct cm_tracer {
	struct contactmap_bpf *skel;
	struct cm_gpu_state *gpu;	/* gpu.c; NULL when GPU tracing is off */
	struct cm_sym *sym;
	struct cm_stacks *stacks;	/* NULL when stacks are off */
	struct ring_buffer *rb;
	struct bpf_link **perf_links;
	int *perf_fds;
	int nperf;
	uint64_t min_block_ns;
	struct cm_timeline *timeline;
	uint64_t *tid_bits;	/* traced_tids, mapped: seeding sets bits */
	size_t tid_bits_len;
	struct cm_observer *obs;	/* observer.c: BPF run-time statistics */
	struct cm_life *life;		/* life.c: exit records into the books */
	struct cm_books *books;		/* books.c: what ended threads left */
	struct cm_critpath *cp;		/* critpath.c: histories, the critical path */
	struct cm_requests *requests;	/* requests.c: the markers' requests */
	struct cm_features feat;
	uint64_t start_ns, end_ns;
	unsigned seeded;
	struct cm_python *py;		/* python.c; NULL with --no-python */
	/* another tier's state (the procfs tier, pftrack.h) and its parts of
	 * the report, added by cm_build_report when set */
	void *tier;
	void (*tier_report)(const struct cm_tracer *tr, struct cm_snapshot *s, json_object *report);
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
	bool stats_on;			/* the statistics were on for some of the window */
	enum cm_observer_mode obs_mode;
	uint64_t sampled_ns;		/* how long they were on inside the window */
	bool others_had_stats;		/* someone else had them on too: counts run high */

	/* GPU maps (gpu.c) */
	bool gpu_loaded;
	bool gpu_agent;			/* the CUPTI agent was injected (wrap mode) */
	unsigned gpu_probes;		/* uprobes attached on CUDA libraries */
	struct cm_gpu_counters gpu_counters;
	struct cm_gpu_api_key *gapi_keys;
	struct cm_gpu_api_stat *gapi;
	size_t ngapi;
	struct cm_gpu_kern_key *gkern_keys;
	struct cm_gpu_kern_stat *gkern;
	size_t ngkern;
	struct cm_gpu_copy_key *gcopy_keys;
	struct cm_gpu_copy_stat *gcopy;
	size_t ngcopy;
	uint32_t *gproc_pids;
	struct cm_gpu_proc *gproc;
	size_t ngproc;
	uint64_t py_procs_full;		/* Python processes the walker could not be told about */
};

/* What a process's threads say about GPU waits (summed by report.c). */
struct cm_gpu_thread_sums {
	uint64_t syncs, sync_ns, spin_ns, blocked_ns;
	uint64_t ioctls, ioctl_ns;	/* ioctl on GPU driver files */
};

/* full: also the costly probes only `contactmap check` needs (fentry). */
void cm_probe_features(struct cm_features *f, bool full);
/* Opens, sizes, loads (tp_btf, else raw_tp) and attaches the core programs.
 * 0 or -1 (printed). The subsystems (stacks, timeline, GPU, observer cost)
 * are started by the run loop (session.c), not here. */
int cm_tracer_start(struct cm_tracer *tr, const struct cm_tracer_opts *o);
/* Adds a ring buffer of the skeleton to the one the run loop polls. */
int cm_tracer_add_ring(struct cm_tracer *tr, struct bpf_map *map,
		       int (*fn)(void *ctx, void *data, size_t len), void *ctx);
/* Adds every thread of pid to the traced set, state read from /proc. held:
 * our own child waiting to exec, whose pipe read is not the command's. */
int cm_tracer_seed_process(struct cm_tracer *tr, pid_t pid, bool held);
int64_t cm_tracer_live_threads(struct cm_tracer *tr);
/* From /proc/PID/task/TID/stat: state, ppid, fault counters, comm (sanitized). */
int cm_task_stat(pid_t pid, pid_t tid, char *state, int *ppid, uint64_t *minflt,
		 uint64_t *majflt, char *comm, size_t commsz);
/* Event stream: an fd to poll (or -1), and a non-blocking drain. */
int cm_tracer_event_fd(struct cm_tracer *tr);
/* How often the loop must call cm_tracer_consume even with nothing readable
 * (stack and timeline events do not wake it each), in ms; -1: no need. */
int cm_tracer_poll_ms(const struct cm_tracer *tr);
void cm_tracer_consume(struct cm_tracer *tr);
/* Detaches the core programs and stamps end_ns. */
void cm_tracer_detach(struct cm_tracer *tr);
/* Reads the core maps as of tr->end_ns into a zeroed snapshot. */
int cm_tracer_read(struct cm_tracer *tr, struct cm_snapshot *snap);
void cm_tracer_close(struct cm_tracer *tr);
void cm_snapshot_free(struct cm_snapshot *s);

/* Builds the contactmap/1 report (report.c). target and exit may be NULL;
 * ownership of both passes to the report. */
json_object *cm_build_report(const struct cm_tracer *tr, struct cm_snapshot *snap,
			     json_object *target, json_object *exit);
json_object *cm_features_json(const struct cm_features *f);

#endif /* CM_TRACER_H */
