// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The procfs tier's parts of the contactmap/1 report (cm_pf_report, called
 * by cm_build_report through tr->tier_report): features.tier, where every
 * section's figures come from (features.sources; sampled ones with their
 * sample count and rate), what the tier cannot give (features.missing, and
 * those sections left out), each process's I/O counters and thread counts,
 * the sampler's own cost, and wrap mode's closure against the rusage.
 */
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "tracer.h"
#include "pftrack_int.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define J_STR(o, k, v) json_object_object_add(o, k, json_object_new_string(v))

static json_object *src(const char *what, bool exact)
{
	json_object *o = json_object_new_object();

	J_STR(o, "source", what);
	json_object_object_add(o, "exact", json_object_new_boolean(exact));
	return o;
}

static json_object *sampled(const char *what, uint64_t samples, double hz)
{
	json_object *o = json_object_new_object();

	J_STR(o, "source", what);
	json_object_object_add(o, "sampled", json_object_new_boolean(true));
	J_INT(o, "samples", samples);
	json_object_object_add(o, "hz", json_object_new_double(hz));
	return o;
}

static uint64_t total_samples(const struct cm_pf *pf)
{
	uint64_t n = pf->blocked_samples;

	/* ended threads' (leaders waiting for their process too) are in blocked_samples */
	for (size_t i = 0; i < pf->nthreads; i++)
		n += pf->threads[i]->samples;
	return n;
}

/* The rate achieved: ticks over the window. Below the rate asked for when
 * the budget lowered it, or when the CPUs are so busy that contactmap itself
 * waits for one (an unprivileged observer has no priority over the program). */
static double mean_hz(const struct cm_pf *pf)
{
	uint64_t span = pf->tr->end_ns > pf->window_start ? pf->tr->end_ns - pf->window_start : 0;

	if (span < pf->tick_ns * 2)
		return pf->hz;
	return (double)pf->ticks * 1e9 / (double)span;
}

static bool perf_counts(const struct cm_pf *pf)
{
	return pf->perf != NULL;
}

static json_object *sources_json(const struct cm_pf *pf, const struct cm_tracer *tr)
{
	json_object *o = json_object_new_object();
	uint64_t n = total_samples(pf);
	double hz = mean_hz(pf);
	bool ss = pf->caps.schedstat;
	struct cm_perf_counts pc;

	json_object_object_add(o, "ledger.oncpu_ns", ss
		? src("/proc/PID/task/TID/schedstat: the scheduler's sum_exec_runtime", true)
		: src("/proc/PID/task/TID/stat utime+stime (clock ticks); process totals from the process CPU clock", false));
	json_object_object_add(o, "ledger.oncpu_user_ns",
		src("on-CPU time split by stat utime/stime, as the kernel's cputime_adjust splits it", false));
	json_object_object_add(o, "ledger.oncpu_kernel_ns",
		src("the rest of on-CPU time: kernel mode in syscalls and outside (faults, interrupts) together; "
		    "oncpu_syscall_ns is 0 in this tier", false));
	json_object_object_add(o, "ledger.runq_ns", ss
		? src("schedstat run_delay (sched_info); split into after-wakeup and after-preemption by the "
		      "voluntary/involuntary switch counts (estimated)", true)
		: src("none: no schedstat (run-queue time is inside off-CPU time)", false));
	json_object_object_add(o, "ledger.offcpu_ns", src("wall time - on-CPU - run queue, per thread", ss));
	json_object_object_add(o, "ledger.offcpu_by_cause",
		sampled("blocked threads' /proc/TID/syscall, wchan and state, scaled to the exact off-CPU time; "
			"D-state samples are I/O wait", n, hz));
	json_object_object_add(o, "syscalls",
		sampled("the off-CPU samples: time blocked in each syscall; calls are not counted (count 0)", n, hz));
	json_object_object_add(o, "sched.switches", src("/proc/PID/task/TID/status voluntary/nonvoluntary_ctxt_switches", true));
	json_object_object_add(o, "faults", src("/proc/PID/task/TID/stat minflt/majflt; process totals from /proc/PID/stat", true));
	json_object_object_add(o, "io", src("/proc/PID/io", true));
	json_object_object_add(o, "threads", src(perf_counts(pf)
		? "polling /proc/PID/task and the children files, and perf_event_open fork/exit records: "
		  "threads never seen alive are counted"
		: "polling /proc/PID/task and the children files: threads that live between two reads are not counted",
		perf_counts(pf)));
	if (tr->stacks) {
		cm_perf_get_counts(pf->perf, &pc);
		json_object_object_add(o, "stacks.oncpu",
			sampled("perf_event_open user-mode samples (registers and a copy of the user stack, DWARF "
				"unwinding); kernel-mode samples are dropped by the kernel", pc.samples, pc.hz));
	}
	if (pf->have_rusage)
		json_object_object_add(o, "closure", src("wait4 rusage of the command", true));
	return o;
}

static json_object *missing_json(const struct cm_pf *pf, const struct cm_tracer *tr, bool stacks_asked)
{
	json_object *o = json_object_new_object();

	J_STR(o, "stacks.offcpu", "needs the BPF tier: a stack at every switch-out");
	J_STR(o, "block_io", "needs the BPF tier: block requests are seen only by the block tracepoints");
	J_STR(o, "gpu", "needs the BPF tier: CUDA uprobes and the CUPTI agent's hook are BPF programs");
	J_STR(o, "syscalls.count", "no per-call hook without BPF: rows carry blocked time only "
				   "(io.syscr and io.syscw count read and write calls)");
	J_STR(o, "syscalls.latency", "no per-call latencies without BPF: no histograms, p50, p99 or max");
	J_STR(o, "sched.runq_hist_log2_ns", "schedstat sums run-queue waits; it keeps no per-wait histogram");
	J_STR(o, "sched.migrations", "not counted in this tier");
	J_STR(o, "sched.wakeups", "not counted in this tier");
	J_STR(o, "faults.user_tracepoint", "needs the BPF tier");
	J_STR(o, "timeline", "needs the BPF tier");
	if (!pf->caps.schedstat)
		J_STR(o, "ledger.runq_ns", pf->caps.schedstat_pretend
		      ? "schedstat pretended missing (" CM_PF_PRETEND_ENV "): run-queue time is inside off-CPU time"
		      : "no /proc/PID/task/TID/schedstat (CONFIG_SCHED_INFO): run-queue time is inside off-CPU time");
	if (stacks_asked && !tr->stacks) {
		char why[256];

		snprintf(why, sizeof(why), "no perf events: %s", pf->perf_error);
		J_STR(o, "stacks.oncpu", why);
	}
	if (!perf_counts(pf)) {
		char why[256];

		snprintf(why, sizeof(why), "threads never seen alive are not counted: %s", pf->perf_error);
		J_STR(o, "threads.never_seen_alive", why);
	}
	return o;
}

static json_object *sampler_json(const struct cm_pf *pf, uint64_t window_ns)
{
	json_object *o = json_object_new_object();

	J_INT(o, "requested_hz", pf->o.hz);
	json_object_object_add(o, "mean_hz", json_object_new_double(mean_hz(pf)));
	J_INT(o, "min_hz", pf->min_hz);
	J_INT(o, "final_hz", pf->hz);
	json_object_object_add(o, "rate_lowered", json_object_new_boolean(pf->lowered > 0));
	J_INT(o, "threads_at_min_hz", pf->lowered ? pf->threads_at_min : 0);
	json_object_object_add(o, "budget_share", json_object_new_double(pf->o.budget));
	J_INT(o, "ticks", pf->ticks);
	J_INT(o, "thread_samples", pf->thread_ticks);
	J_INT(o, "thread_checks", pf->checks);
	J_INT(o, "blocked_samples", total_samples(pf));
	J_INT(o, "cpu_ns", pf->sampler_ns);
	json_object_object_add(o, "cpu_share",
			       json_object_new_double(window_ns ? (double)pf->sampler_ns / (double)window_ns : 0));
	J_INT(o, "ns_per_thread_sample", pf->thread_ticks ? pf->sampler_ns / pf->thread_ticks : 0);
	J_INT(o, "detail_cpu_ns", pf->detail_ns_cpu);
	json_object_object_add(o, "detail_cpu_share",
			       json_object_new_double(window_ns ? (double)pf->detail_ns_cpu / (double)window_ns : 0));
	J_INT(o, "detail_interval_ns", pf->o.detail_ns);
	J_INT(o, "discovery_cpu_ns", pf->discover_ns);
	J_INT(o, "proc_reads", cm_pf_reads);
	J_INT(o, "proc_opens", cm_pf_opens);
	J_INT(o, "max_live_threads", pf->max_live_threads);
	return o;
}

static json_object *closure_json(const struct cm_pf *pf)
{
	const struct pf_closure *c = &pf->closure;
	json_object *o = json_object_new_object();
	static const char *const keys[] = { "oncpu_ns", "oncpu_user_ns", "minor_faults", "major_faults",
					    "voluntary_switches", "involuntary_switches" };
	const uint64_t have[] = { c->oncpu, c->user, c->minflt, c->majflt, c->vol, c->invol };
	const uint64_t want[] = { c->r_oncpu, c->r_user, c->r_minflt, c->r_majflt, c->r_vol, c->r_invol };

	J_STR(o, "source", "wait4 rusage of the command: itself and the descendants it waited for");
	J_STR(o, "booked_to", c->to_command ? "the command's (unseen) row" : "pid 0 (unseen)");
	for (int i = 0; i < 6; i++) {
		json_object *k = json_object_new_object();

		J_INT(k, "rusage", want[i]);
		J_INT(k, "observed", have[i]);
		J_INT(k, "booked", want[i] > have[i] ? want[i] - have[i] : 0);
		json_object_object_add(k, "matched",
				       json_object_new_double(want[i] ? (double)(have[i] < want[i] ? have[i] : want[i]) /
								       (double)want[i] : 1.0));
		json_object_object_add(o, keys[i], k);
	}
	return o;
}

static json_object *perf_json(const struct cm_pf *pf)
{
	json_object *o = json_object_new_object();
	struct cm_perf_counts c;

	json_object_object_add(o, "in_use", json_object_new_boolean(pf->perf != NULL));
	if (!pf->perf) {
		J_STR(o, "error", pf->perf_error);
		return o;
	}
	cm_perf_get_counts(pf->perf, &c);
	J_INT(o, "events", c.events);
	J_INT(o, "tasks_followed", c.tasks);
	J_INT(o, "tasks_not_followed", c.not_followed);
	J_INT(o, "fork_records", c.forks);
	J_INT(o, "exit_records", c.exits);
	J_INT(o, "samples", c.samples);
	J_INT(o, "throttled", c.throttled);
	J_INT(o, "ring_kib_per_cpu", c.ring_kib);
	return o;
}

static const struct pf_proc *proc_by_pid(const struct cm_pf *pf, int64_t pid)
{
	for (size_t i = pf->nprocs; i-- > 0;)
		if (pf->procs[i]->pid == pid)
			return pf->procs[i];
	return NULL;
}

static void process_parts(const struct cm_pf *pf, json_object *pj)
{
	json_object *v, *io, *o, *sys, *st;
	const struct pf_proc *p;

	json_object_object_del(pj, "block_io");
	if (json_object_object_get_ex(pj, "stacks", &st))
		json_object_object_del(st, "offcpu");
	if (json_object_object_get_ex(pj, "syscalls", &sys))
		for (size_t i = 0; i < json_object_array_length(sys); i++)
			json_object_object_add(json_object_array_get_idx(sys, i), "sampled",
					       json_object_new_boolean(true));
	if (!json_object_object_get_ex(pj, "pid", &v))
		return;
	o = json_object_new_object();
	if (json_object_get_int64(v) == 0) {
		/* the closure's process */
		J_STR(o, "what", "the command's wait4 rusage beyond every process above: processes never "
				 "seen alive, ended processes' last moments, ended threads' switches");
		J_INT(o, "processes_never_seen_alive", pf->orphan_procs);
		J_INT(o, "threads_never_seen_alive", pf->orphan_threads);
		json_object_object_add(pj, "procfs", o);
		return;
	}
	p = proc_by_pid(pf, json_object_get_int64(v));
	if (!p) {
		json_object_put(o);
		return;
	}
	J_INT(o, "threads_seen_alive", p->threads_seen);
	J_INT(o, "threads_ended", p->threads_ended);
	if (pf->perf)
		J_INT(o, "threads_never_seen_alive", p->unseen_threads);
	else
		json_object_object_add(o, "threads_never_seen_alive", NULL);
	J_INT(o, "never_seen_lifetime_ns", p->unseen_ns);
	J_INT(o, "ended_threads_unread_ns", p->tails_ns);
	J_INT(o, "process_cpu_clock_ns", p->cur.clock > p->base.clock ? p->cur.clock - p->base.clock : 0);
	json_object_object_add(o, "counted_from", json_object_new_string(p->seeded ? "attach" : "its start"));
	json_object_object_add(pj, "procfs", o);
	if (p->have_io) {
		io = json_object_new_object();
		J_INT(io, "rchar", p->cur.io.rchar - p->base.io.rchar);
		J_INT(io, "wchar", p->cur.io.wchar - p->base.io.wchar);
		J_INT(io, "syscr", p->cur.io.syscr - p->base.io.syscr);
		J_INT(io, "syscw", p->cur.io.syscw - p->base.io.syscw);
		J_INT(io, "read_bytes", p->cur.io.read_bytes - p->base.io.read_bytes);
		J_INT(io, "write_bytes", p->cur.io.write_bytes - p->base.io.write_bytes);
		J_INT(io, "cancelled_write_bytes", p->cur.io.cancelled_write_bytes - p->base.io.cancelled_write_bytes);
		json_object_object_add(pj, "io", io);
	}
}

void cm_pf_report(const struct cm_tracer *tr, struct cm_snapshot *s, json_object *r)
{
	const struct cm_pf *pf = tr->tier;
	uint64_t window = tr->end_ns > tr->start_ns ? tr->end_ns - tr->start_ns : 0;
	json_object *f = json_object_new_object(), *o, *v, *procs;
	uint64_t seen = 0, unseen = pf->orphan_threads;

	(void)s;
	J_STR(f, "tier", "procfs");
	J_STR(f, "tier_reason", pf->o.reason ? pf->o.reason : "");
	json_object_object_add(f, "procfs", cm_pf_caps_json(&pf->caps));
	json_object_object_add(f, "sources", sources_json(pf, tr));
	json_object_object_add(f, "missing", missing_json(pf, tr, pf->o.stacks_asked));
	json_object_object_add(f, "kernel_split", json_object_new_string("none"));
	json_object_object_add(r, "features", f);
	json_object_object_del(r, "gpu");
	if (json_object_object_get_ex(r, "lost", &v)) {
		struct cm_perf_counts c;

		cm_perf_get_counts(pf->perf, &c);
		J_INT(v, "perf_records_lost", c.lost);
	}
	if (json_object_object_get_ex(r, "observer", &v)) {
		json_object *self = NULL;

		o = json_object_new_object();
		if (json_object_object_get_ex(v, "self", &self))
			json_object_get(self);
		J_STR(o, "mode", "procfs");
		json_object_object_add(o, "bpf_stats", json_object_new_boolean(false));
		json_object_object_add(o, "sampler", sampler_json(pf, window));
		if (self)
			json_object_object_add(o, "self", self);
		json_object_object_add(r, "observer", o);
	}
	for (int pass = 0; pass < 2; pass++)
		if (json_object_object_get_ex(r, pass ? "folded_processes" : "processes", &procs))
			for (size_t i = 0; i < json_object_array_length(procs); i++)
				process_parts(pf, json_object_array_get_idx(procs, i));

	o = json_object_new_object();
	json_object_object_add(o, "sampler", sampler_json(pf, window));
	for (size_t i = 0; i < pf->nprocs; i++) {
		seen += pf->procs[i]->threads_seen;
		unseen += pf->procs[i]->unseen_threads;
	}
	v = json_object_new_object();
	J_INT(v, "seen_alive", seen);
	if (pf->perf)
		J_INT(v, "never_seen_alive", unseen);
	else
		json_object_object_add(v, "never_seen_alive", NULL);
	J_INT(v, "max_live", pf->max_live_threads);
	json_object_object_add(o, "threads", v);
	v = json_object_new_object();
	J_INT(v, "seen_alive", pf->procs_seen);
	if (pf->perf)
		J_INT(v, "never_seen_alive", pf->orphan_procs);
	else
		json_object_object_add(v, "never_seen_alive", NULL);
	json_object_object_add(o, "processes", v);
	json_object_object_add(o, "perf", perf_json(pf));
	if (pf->closure.done)
		json_object_object_add(o, "closure", closure_json(pf));
	json_object_object_add(r, "procfs", o);
}
