// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * From the books and the maps read back to the contactmap/1 report: a view
 * joins the ended threads' books with the live threads (their open intervals
 * closed at the window end), and each process's ledger is folded into the
 * contact map (docs/report.md says which time goes where).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"
#include "tracer.h"
#include "books.h"
#include "life.h"
#include "gpu.h"
#include "observer.h"
#include "stacks.h"
#include "critpath.h"
#include "requests.h"
#include "python.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))

struct cmap {
	uint64_t time[CM_SS_COUNT], oncpu[CM_SS_COUNT], count[CM_SS_COUNT];
};

static json_object *hist_json(const uint64_t *h)
{
	json_object *a = json_object_new_array_ext(CM_HIST_SLOTS);

	for (int i = 0; i < CM_HIST_SLOTS; i++)
		json_object_array_add(a, json_object_new_int64((int64_t)h[i]));
	return a;
}

static json_object *ledger_json(const struct cm_tl *l, json_object *causes)
{
	json_object *o = json_object_new_object();
	uint64_t runq = l->runq_wake + l->runq_preempt;

	J_INT(o, "wall_ns", l->wall);
	J_INT(o, "oncpu_ns", cm_tl_oncpu(l));
	J_INT(o, "oncpu_user_ns", l->oncpu_user);
	J_INT(o, "oncpu_syscall_ns", l->oncpu_sys);
	J_INT(o, "oncpu_kernel_ns", l->oncpu_kfault + l->oncpu_kother);
	J_INT(o, "oncpu_kernel_fault_ns", l->oncpu_kfault);
	J_INT(o, "oncpu_gpu_wait_ns", l->gpu_spin);
	J_INT(o, "oncpu_steal_ns", l->steal);
	J_INT(o, "runq_ns", runq);
	J_INT(o, "runq_wakeup_ns", l->runq_wake);
	J_INT(o, "runq_preempt_ns", l->runq_preempt);
	J_INT(o, "offcpu_ns", l->off_sys + l->off_fault + l->off_other + l->gpu_blocked + l->gil);
	json_object_object_add(o, "offcpu_by_cause", causes);
	J_INT(o, "iowait_ns", l->sys_iowait + l->fault_iowait + l->other_iowait);
	J_INT(o, "unattributed_ns", l->unattributed);
	return o;
}

static void causes_add(json_object *causes, const char *key, uint64_t ns)
{
	json_object *v;

	if (!ns)
		return;
	if (json_object_object_get_ex(causes, key, &v))
		ns += (uint64_t)json_object_get_int64(v);
	json_object_object_add(causes, key, json_object_new_int64((int64_t)ns));
}

static void causes_merge(json_object *into, json_object *from)
{
	json_object_object_foreach(from, k, v)
		causes_add(into, k, (uint64_t)json_object_get_int64(v));
}

/* The cause key of off-CPU time in syscall nr (as the rows keep it). */
static const char *sys_cause(uint32_t nr, char *buf, size_t sz)
{
	if (nr == CM_SYS_GPU_IOCTL)
		return "gpu:driver";
	if (nr == UINT32_MAX)
		return "syscall:unknown";	/* its row could not be stored */
	snprintf(buf, sz, "syscall:%s", cm_syscall_name(nr));
	return buf;
}

/* The causes outside syscalls, from the ledger. */
static void causes_other(json_object *causes, const struct cm_tl *l)
{
	causes_add(causes, "page_fault", l->off_fault);
	causes_add(causes, "other", l->off_other);
	causes_add(causes, "gpu:sync", l->gpu_blocked);
	causes_add(causes, "gil", l->gil);
}

static json_object *trow_causes(const struct cm_trow *r)
{
	json_object *causes = json_object_new_object();
	char key[64];

	for (size_t i = 0; i < r->ncauses; i++)
		causes_add(causes, sys_cause(r->causes[i].nr, key, sizeof(key)), r->causes[i].offcpu);
	causes_other(causes, &r->l);
	return causes;
}

/* A process's causes: its syscall rows, and what no row holds. */
static json_object *proc_causes(const struct cm_proc *p)
{
	json_object *causes = json_object_new_object();
	uint64_t in_rows = 0;
	char key[64];

	for (size_t i = 0; i < p->nsys; i++) {
		causes_add(causes, sys_cause(p->sys[i].nr, key, sizeof(key)), p->sys[i].st.offcpu_ns);
		in_rows += p->sys[i].st.offcpu_ns;
	}
	if (p->tot.off_sys > in_rows)
		causes_add(causes, "syscall:unknown", p->tot.off_sys - in_rows);
	causes_other(causes, &p->tot);
	return causes;
}

static int cmp_row_time(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
	json_object *vx, *vy;
	int64_t tx, ty;

	json_object_object_get_ex(x, "time_ns", &vx);
	json_object_object_get_ex(y, "time_ns", &vy);
	tx = json_object_get_int64(vx);
	ty = json_object_get_int64(vy);
	return tx > ty ? -1 : tx < ty;
}

static json_object *cmap_json(const struct cmap *m)
{
	json_object *rows[CM_SS_COUNT], *a = json_object_new_array();
	uint64_t wall = 0;
	int n = 0;

	for (int s = 0; s < CM_SS_COUNT; s++)
		wall += m->time[s];
	for (int s = 0; s < CM_SS_COUNT; s++) {
		json_object *r = json_object_new_object();

		json_object_object_add(r, "subsystem", json_object_new_string(cm_subsys_key(s)));
		json_object_object_add(r, "label", json_object_new_string(cm_subsys_label(s)));
		J_INT(r, "time_ns", m->time[s]);
		J_INT(r, "oncpu_ns", m->oncpu[s]);
		json_object_object_add(r, "share",
				       json_object_new_double(wall ? (double)m->time[s] / wall : 0));
		J_INT(r, "count", m->count[s]);
		rows[n++] = r;
	}
	qsort(rows, n, sizeof(rows[0]), cmp_row_time);
	for (int i = 0; i < n; i++)
		json_object_array_add(a, rows[i]);
	return a;
}

static void cmap_add(struct cmap *a, const struct cmap *b)
{
	for (int s = 0; s < CM_SS_COUNT; s++) {
		a->time[s] += b->time[s];
		a->oncpu[s] += b->oncpu[s];
		a->count[s] += b->count[s];
	}
}

/* A process's contact map, from its ledger and its syscall rows. */
static void proc_cmap(const struct cm_proc *p, struct cmap *m)
{
	const struct cm_tl *l = &p->tot;
	uint64_t in_rows = 0, in_rows_io = 0;

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < p->nsys; i++) {
		const struct cm_sys_stat *st = &p->sys[i].st;
		enum cm_subsys g = cm_syscall_group(p->sys[i].nr);

		/* syscall time by group, io-wait to block I/O */
		m->time[g] += st->oncpu_ns + st->offcpu_ns - st->iowait_ns;
		m->oncpu[g] += st->oncpu_ns;
		m->count[g] += st->count;
		m->time[CM_SS_BLOCK_IO] += st->iowait_ns;
		in_rows += st->oncpu_ns + st->offcpu_ns;
		in_rows_io += st->iowait_ns;
	}
	/* time in syscalls whose rows could not be stored */
	if (l->oncpu_sys + l->off_sys > in_rows) {
		uint64_t io = l->sys_iowait > in_rows_io ? l->sys_iowait - in_rows_io : 0;

		m->time[CM_SS_OTHER] += l->oncpu_sys + l->off_sys - in_rows - io;
		m->time[CM_SS_BLOCK_IO] += io;
	}
	m->time[CM_SS_CPU_USER] += l->oncpu_user;
	m->oncpu[CM_SS_CPU_USER] += l->oncpu_user;
	/* kernel time outside syscalls: a fault's is memory, the rest its own row */
	m->time[CM_SS_CPU_KERNEL] += l->oncpu_kother;
	m->oncpu[CM_SS_CPU_KERNEL] += l->oncpu_kother;
	m->time[CM_SS_MEMORY] += l->oncpu_kfault + l->off_fault - l->fault_iowait;
	m->oncpu[CM_SS_MEMORY] += l->oncpu_kfault;
	m->count[CM_SS_MEMORY] += l->minflt + l->majflt;
	m->time[CM_SS_RUNQ] += l->runq_wake + l->runq_preempt;
	m->count[CM_SS_RUNQ] += l->runq_waits;
	m->time[CM_SS_OTHER] += l->off_other - l->other_iowait;
	m->time[CM_SS_BLOCK_IO] += l->fault_iowait + l->other_iowait;
	m->time[CM_SS_UNATTRIBUTED] += l->unattributed;
	m->time[CM_SS_GIL] += l->gil;
	m->count[CM_SS_GIL] += l->gil_waits;
	/* GPU wait: everything inside synchronize calls, spin and blocked */
	m->time[CM_SS_GPU] += l->gpu_spin + l->gpu_blocked;
	m->oncpu[CM_SS_GPU] += l->gpu_spin;
	m->count[CM_SS_GPU] += l->gpu_syncs;
	for (size_t k = 0; k < p->nblk; k++)
		m->count[CM_SS_BLOCK_IO] += p->blk[k].st.count;
}

struct sysrow {
	unsigned nr;
	const struct cm_sys_stat *st;
};

static int cmp_sysrow(const void *a, const void *b)
{
	const struct sysrow *x = a, *y = b;
	/* calls in flight at the window's edges have time but no total */
	if (x->st->total_ns != y->st->total_ns)
		return x->st->total_ns > y->st->total_ns ? -1 : 1;
	if (x->st->offcpu_ns != y->st->offcpu_ns)
		return x->st->offcpu_ns > y->st->offcpu_ns ? -1 : 1;
	return x->nr < y->nr ? -1 : x->nr > y->nr;
}

static const char *blk_op_name(uint32_t op)
{
	static const char *names[] = { "read", "write", "flush", "discard", "other" };

	return op <= CM_BLK_OTHER ? names[op] : "other";
}

static json_object *trow_json(const struct cm_trow *r, bool group)
{
	json_object *tj = json_object_new_object();
	char comm[4 * CM_COMM_LEN + 1];

	cm_sanitize_comm(r->comm, CM_COMM_LEN, comm, sizeof(comm));
	if (group)
		J_INT(tj, "count", r->l.nthreads);
	else
		J_INT(tj, "tid", r->tid);
	json_object_object_add(tj, "comm", json_object_new_string(comm));
	J_INT(tj, "start_ns", r->start_ns);
	J_INT(tj, "end_ns", r->end_ns);
	json_object_object_add(tj, "ledger", ledger_json(&r->l, trow_causes(r)));
	return tj;
}

static json_object *syscalls_json(const struct cm_proc *p)
{
	struct sysrow *rows = calloc(p->nsys + 1, sizeof(*rows));
	json_object *sys = json_object_new_array();
	size_t nrows = 0;

	for (size_t i = 0; rows && i < p->nsys; i++) {
		const struct cm_sys_stat *st = &p->sys[i].st;

		if (st->count || st->oncpu_ns || st->offcpu_ns)
			rows[nrows++] = (struct sysrow){ .nr = p->sys[i].nr, .st = st };
	}
	if (rows)
		qsort(rows, nrows, sizeof(*rows), cmp_sysrow);
	for (size_t i = 0; i < nrows; i++) {
		const struct cm_sys_stat *st = rows[i].st;
		unsigned nr = rows[i].nr;
		json_object *r = json_object_new_object();

		json_object_object_add(r, "name", json_object_new_string(cm_syscall_name(nr)));
		J_INT(r, "nr", nr == CM_SYS_GPU_IOCTL ? cm_syscall_nr("ioctl") : (int)nr);
		json_object_object_add(r, "group",
				       json_object_new_string(cm_subsys_key(cm_syscall_group(nr))));
		J_INT(r, "count", st->count);
		J_INT(r, "errors", st->errors);
		J_INT(r, "total_ns", st->total_ns);
		J_INT(r, "oncpu_ns", st->oncpu_ns);
		J_INT(r, "offcpu_ns", st->offcpu_ns);
		J_INT(r, "iowait_ns", st->iowait_ns);
		json_object_object_add(r, "hist_log2_ns", hist_json((const uint64_t *)st->hist));
		J_INT(r, "p50_ns", cm_hist_quantile((const uint64_t *)st->hist, CM_HIST_SLOTS, 0.50, st->max_ns));
		J_INT(r, "p99_ns", cm_hist_quantile((const uint64_t *)st->hist, CM_HIST_SLOTS, 0.99, st->max_ns));
		J_INT(r, "max_ns", st->max_ns);
		json_object_array_add(sys, r);
	}
	free(rows);
	return sys;
}

static json_object *blk_json(const struct cm_proc *p)
{
	json_object *blk = json_object_new_array();

	for (size_t k = 0; k < p->nblk; k++) {
		const struct cm_blkrow *b = &p->blk[k];
		json_object *r = json_object_new_object();
		char dev[32];

		snprintf(dev, sizeof(dev), "%u:%u", b->dev >> 20, b->dev & ((1U << 20) - 1));
		json_object_object_add(r, "device", json_object_new_string(dev));
		json_object_object_add(r, "op", json_object_new_string(blk_op_name(b->op)));
		J_INT(r, "submitted", b->st.submitted);
		J_INT(r, "count", b->st.count);
		J_INT(r, "bytes", b->st.bytes);
		J_INT(r, "completed_bytes", b->st.completed_bytes);
		J_INT(r, "total_ns", b->st.total_ns);
		J_INT(r, "max_ns", b->st.max_ns);
		json_object_object_add(r, "hist_log2_ns", hist_json((const uint64_t *)b->st.hist));
		json_object_array_add(blk, r);
	}
	return blk;
}

/* One process (or, group, a group of folded ones): its ledger, threads,
 * syscalls, scheduler, faults, block I/O and contact map. */
static json_object *process_json(const struct cm_snapshot *s, const struct cm_proc *p, bool group,
				 struct cmap *pmap)
{
	json_object *o = json_object_new_object(), *threads = json_object_new_array();
	json_object *folded = json_object_new_array();
	const struct cm_tl *l = &p->tot;
	char comm[4 * CM_COMM_LEN + 1];

	cm_sanitize_comm(p->comm, CM_COMM_LEN, comm, sizeof(comm));
	if (group) {
		J_INT(o, "count", p->folded);
	} else {
		J_INT(o, "pid", p->pid);
		J_INT(o, "ppid", p->ppid);
	}
	json_object_object_add(o, "comm", json_object_new_string(comm));
	J_INT(o, "start_ns", p->start_ns);
	/* ended: no live thread, and its last thread's record says its group is gone */
	J_INT(o, "end_ns", !p->live && (p->group_dead || p->leader_exited) ? p->end_ns : 0);
	if (!group && !p->live && p->leader_exited)
		J_INT(o, "exit_code", p->exit_code);
	json_object_object_add(o, "ledger", ledger_json(l, proc_causes(p)));
	for (size_t i = 0; i < p->nthreads; i++)
		json_object_array_add(threads, trow_json(&p->threads[i], false));
	json_object_object_add(o, "threads", threads);
	for (size_t i = 0; i < p->ngroups; i++)
		json_object_array_add(folded, trow_json(&p->groups[i], true));
	json_object_object_add(o, "threads_folded", folded);
	json_object_object_add(o, "syscalls", syscalls_json(p));

	json_object *sched = json_object_new_object();
	J_INT(sched, "voluntary_switches", l->vol);
	J_INT(sched, "involuntary_switches", l->invol);
	J_INT(sched, "migrations", l->migr);
	J_INT(sched, "wakeups", l->wakeups);
	J_INT(sched, "runq_waits", l->runq_waits);
	json_object_object_add(sched, "runq_hist_log2_ns", hist_json(l->runq_hist));
	J_INT(sched, "runq_p50_ns", cm_hist_quantile(l->runq_hist, CM_HIST_SLOTS, 0.50, 0));
	J_INT(sched, "runq_p99_ns", cm_hist_quantile(l->runq_hist, CM_HIST_SLOTS, 0.99, 0));
	json_object_object_add(o, "sched", sched);

	json_object *faults = json_object_new_object();
	J_INT(faults, "minor", l->minflt);
	J_INT(faults, "major", l->majflt);
	J_INT(faults, "user_tracepoint", l->user_faults);
	json_object_object_add(o, "faults", faults);
	json_object_object_add(o, "block_io", blk_json(p));

	if (!group) {
		const struct cm_sysrow *io = cm_proc_sys(p, CM_SYS_GPU_IOCTL);
		struct cm_gpu_thread_sums gts = {
			.syncs = l->gpu_syncs, .sync_ns = l->gpu_sync_ns,
			.spin_ns = l->gpu_spin, .blocked_ns = l->gpu_blocked,
			.ioctls = io ? io->st.count : 0,
			.ioctl_ns = io ? io->st.oncpu_ns + io->st.offcpu_ns : 0,
		};
		json_object *gpu = cm_gpu_process_json(s, p->pid, &gts);

		if (gpu)
			json_object_object_add(o, "gpu", gpu);
	}
	proc_cmap(p, pmap);
	json_object_object_add(o, "contact_map", cmap_json(pmap));
	return o;
}

json_object *cm_features_json(const struct cm_features *f)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "tier", json_object_new_string("bpf"));
	json_object_object_add(o, "btf", json_object_new_boolean(f->btf));
	json_object_object_add(o, "attach_type",
			       json_object_new_string(f->attach_type ? f->attach_type : "none"));
	json_object_object_add(o, "fentry", json_object_new_boolean(f->fentry));
	json_object_object_add(o, "kprobes", json_object_new_boolean(f->kprobes));
	json_object_object_add(o, "ringbuf", json_object_new_boolean(f->ringbuf));
	json_object_object_add(o, "task_storage", json_object_new_boolean(f->task_storage));
	json_object_object_add(o, "perf_cpu_clock", json_object_new_boolean(f->perf_cpu_clock));
	json_object_object_add(o, "hw_counters", json_object_new_boolean(f->hw_counters));
	json_object_object_add(o, "page_fault_tracepoint", json_object_new_boolean(f->page_fault_tp));
	json_object_object_add(o, "block_tracepoints", json_object_new_boolean(f->block_tp));
	json_object_object_add(o, "block_claim", json_object_new_string(
		!f->block_tp ? "none" : f->block_io_start_tp ? "block_io_start" : "insert_issue"));
	json_object_object_add(o, "gpu_programs", json_object_new_boolean(f->gpu));
	/* kernel time outside syscalls: the kernel's own tick accounting of
	 * user and system mode, per segment between syscalls */
	json_object_object_add(o, "kernel_split", json_object_new_string("tick"));
	/* the tables hold the live set; preallocated before 6.1 */
	json_object_object_add(o, "tables", json_object_new_string(f->mem_alloc ? "on demand" : "preallocated"));
	return o;
}

/* Scales what the kernel counted while the statistics were on to the whole
 * window (sampled mode; in full mode on == window and nothing changes). */
static uint64_t estimate(uint64_t measured, uint64_t on_ns, uint64_t window_ns)
{
	if (!on_ns || on_ns >= window_ns)
		return measured;
	return (uint64_t)((double)measured * (double)window_ns / (double)on_ns + 0.5);
}

/* What contactmap's own programs cost every CPU of the machine, traced or not. */
static json_object *observer_json(const struct cm_tracer *tr, const struct cm_snapshot *s)
{
	json_object *o = json_object_new_object(), *progs = json_object_new_array();
	uint64_t cnt = 0, ns = 0, est_ns;
	uint64_t dur = tr->end_ns > tr->start_ns ? tr->end_ns - tr->start_ns : 0;

	json_object_object_add(o, "mode", json_object_new_string(cm_observer_mode_name(s->obs_mode)));
	json_object_object_add(o, "bpf_stats", json_object_new_boolean(s->stats_on));
	for (size_t i = 0; i < s->nprogs; i++) {
		const struct cm_prog_cost *c = &s->progs[i];
		json_object *p = json_object_new_object();

		json_object_object_add(p, "name", json_object_new_string(c->name));
		J_INT(p, "run_cnt", c->run_cnt);
		J_INT(p, "run_time_ns", c->run_time_ns);
		J_INT(p, "avg_ns", c->run_cnt ? c->run_time_ns / c->run_cnt : 0);
		json_object_array_add(progs, p);
		cnt += c->run_cnt;
		ns += c->run_time_ns;
	}
	est_ns = estimate(ns, s->sampled_ns, dur);
	J_INT(o, "sampled_ns", s->sampled_ns);
	json_object_object_add(o, "sampled_share",
			       json_object_new_double(dur ? (double)s->sampled_ns / (double)dur : 0));
	json_object_object_add(o, "others_had_stats", json_object_new_boolean(s->others_had_stats));
	J_INT(o, "events", cnt);
	J_INT(o, "run_time_ns", ns);
	J_INT(o, "avg_ns", cnt ? ns / cnt : 0);
	J_INT(o, "est_events", estimate(cnt, s->sampled_ns, dur));
	J_INT(o, "est_run_time_ns", est_ns);
	json_object_object_add(o, "cpu_share",
			       json_object_new_double(dur ? (double)est_ns / (double)dur : 0));
	json_object_object_add(o, "programs", progs);
	/* uprobe trampolines' syscalls in traced threads: kept out of their syscalls */
	progs = json_object_new_object();
	J_INT(progs, "count", s->counters.probe_syscalls);
	J_INT(progs, "oncpu_ns", s->counters.probe_syscall_ns);
	json_object_object_add(o, "probe_syscalls", progs);
	return o;
}

/* The kernel's own fault counters and comm of the threads still alive. */
static void refresh_live(struct cm_snapshot *s)
{
	for (size_t i = 0; i < s->nthreads; i++) {
		struct cm_thread *t = &s->threads[i];
		uint64_t mn, mj;
		char state;
		int ppid;

		if ((t->flags & CM_TF_EXITED) || t->end_ns)
			continue;
		if (!cm_task_stat(t->pid, t->tid, &state, &ppid, &mn, &mj, t->comm, sizeof(t->comm))) {
			t->min_flt = mn;
			t->maj_flt = mj;
		}
	}
}

static json_object *lost_json(const struct cm_tracer *tr, const struct cm_snapshot *s)
{
	json_object *o = json_object_new_object();

	J_INT(o, "threads_map_full", s->counters.threads_full);
	J_INT(o, "syscall_map_full", s->counters.sysstats_full);
	J_INT(o, "block_map_full", s->counters.blk_full);
	J_INT(o, "block_inflight_full", s->counters.blk_inflight_full);
	J_INT(o, "prog_recursion_misses", s->recursion_misses);
	J_INT(o, "stack_ringbuf_full", s->counters.ringbuf_full);
	J_INT(o, "kernel_stack_missing", s->counters.kstack_missing);
	J_INT(o, "user_stack_missing", s->counters.ustack_missing);
	if (tr->cp)
		J_INT(o, "critical_path_ringbuf_full", s->counters.cp_ringbuf_full);
	if (tr->py)
		J_INT(o, "python_procs_full", s->py_procs_full + cm_python_lost(tr->py));
	J_INT(o, "cgroup_events_full", s->counters.cgroup_events_full);
	if (tr->timeline) {
		J_INT(o, "timeline_ringbuf_full", s->counters.trace_ringbuf_full);
		J_INT(o, "timeline_rate_limited", s->counters.trace_rate_limited);
	}
	if (s->gpu_loaded)
		cm_gpu_lost_json(s, o);
	return o;
}

/* How the books folded what ended, and how exit records arrived. */
static json_object *collector_json(const struct cm_tracer *tr, const struct cm_snapshot *s)
{
	json_object *o = json_object_new_object();
	struct cm_life_counts lc;

	cm_life_counts(tr, &lc);
	J_INT(o, "threads_ended", s->counters.exits);
	J_INT(o, "exit_records", s->counters.retired);
	J_INT(o, "exit_records_from_map", lc.swept);
	J_INT(o, "exit_ring_full", s->counters.exit_ringbuf_full);
	if (tr->books) {
		J_INT(o, "threads_folded", tr->books->threads_folded);
		J_INT(o, "processes_folded", tr->books->procs_folded);
		J_INT(o, "keep_threads", tr->books->keep_threads);
		J_INT(o, "keep_processes", tr->books->keep_procs);
	}
	return o;
}

json_object *cm_build_report(const struct cm_tracer *tr, struct cm_snapshot *s,
			     json_object *target, json_object *exitj)
{
	json_object *r = json_object_new_object(), *o, *procs = json_object_new_array();
	json_object *folded = json_object_new_array(), *tcauses = json_object_new_object();
	struct cm_books empty = { 0 };
	const struct cm_books *books = tr->books ? tr->books : &empty;
	struct cm_tl total = { 0 };
	struct cmap tmap = { 0 };
	struct cm_life_counts lc;
	struct cm_view v;
	uint64_t unfinished = 0, obs_n, obs_ns;

	refresh_live(s);
	if (cm_view_build(&v, books, s, tr->end_ns))
		cm_err("out of memory building the report: its processes are missing");

	json_object_object_add(r, "schema", json_object_new_string(CM_SCHEMA));
	o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string("contactmap"));
	json_object_object_add(o, "version", json_object_new_string(CM_VERSION));
	json_object_object_add(r, "tool", o);
	json_object_object_add(r, "host", cm_host_facts());
	json_object_object_add(r, "target", target ? target : json_object_new_object());
	o = json_object_new_object();
	J_INT(o, "start_ns", tr->start_ns);
	J_INT(o, "end_ns", tr->end_ns);
	J_INT(o, "duration_ns", tr->end_ns - tr->start_ns);
	json_object_object_add(r, "window", o);
	if (exitj)
		json_object_object_add(r, "exit", exitj);
	json_object_object_add(r, "features", cm_features_json(&tr->feat));
	json_object_object_add(r, "gpu", cm_gpu_report_json(tr, s));
	json_object_object_add(r, "lost", lost_json(tr, s));
	json_object_object_add(r, "collector", collector_json(tr, s));
	json_object_object_add(r, "observer", observer_json(tr, s));
	json_object_object_add(json_object_object_get(r, "observer"), "self", cm_observer_self_json());

	/* the CUPTI agent's own threads are contactmap's cost, not the program's */
	obs_n = books->obs_threads;
	obs_ns = books->obs_oncpu_ns;
	for (size_t i = 0; i < s->nthreads; i++) {
		const struct cm_thread *t = &s->threads[i];

		if (t->flags & CM_TF_OBSERVER) {
			obs_n++;
			obs_ns += t->oncpu_user_ns + t->oncpu_sys_ns + t->oncpu_kfault_ns +
				  t->oncpu_kother_ns + t->gpu_spin_ns;
		}
	}
	o = json_object_new_object();
	J_INT(o, "count", obs_n);
	J_INT(o, "oncpu_ns", obs_ns);
	json_object_object_add(json_object_object_get(r, "observer"), "agent_threads", o);

	for (int pass = 0; pass < 2; pass++) {
		size_t n = pass ? books->npgroups : v.nprocs;

		for (size_t i = 0; i < n; i++) {
			const struct cm_proc *p = pass ? books->pgroups[i] : v.procs[i];
			struct cmap pmap;
			json_object *pj = process_json(s, p, pass, &pmap), *pc;

			if (json_object_object_get_ex(json_object_object_get(pj, "ledger"),
						      "offcpu_by_cause", &pc))
				causes_merge(tcauses, pc);
			if (!pass && tr->stacks)
				json_object_object_add(pj, "stacks",
						       cm_stacks_process_json(tr->stacks, p->pid, 5));
			if (!pass && tr->py) {
				json_object *py = cm_python_process_json(tr->py, p->pid, tr->stacks);

				if (py)
					json_object_object_add(pj, "python", py);
			}
			json_object_array_add(pass ? folded : procs, pj);
			cm_tl_add(&total, &p->tot);
			cmap_add(&tmap, &pmap);
			for (size_t k = 0; k < p->nblk; k++)
				if (p->blk[k].st.submitted > p->blk[k].st.count)
					unfinished += p->blk[k].st.submitted - p->blk[k].st.count;
		}
	}

	cm_life_counts(tr, &lc);
	o = json_object_new_object();
	J_INT(o, "switch_in_without_wakeup", s->counters.switch_in_blocked);
	J_INT(o, "ran_while_off_cpu", s->counters.run_while_off);
	J_INT(o, "switch_in_from_unknown", s->counters.switch_in_unknown);
	J_INT(o, "wakeup_from_unknown", s->counters.wakeup_unknown);
	J_INT(o, "block_unfinished", unfinished);
	J_INT(o, "exit_without_final_switch", lc.no_final_switch);
	json_object_object_add(r, "anomalies", o);

	if (tr->stacks) {
		json_object *st = cm_stacks_summary_json(tr->stacks);

		J_INT(st, "samples", s->counters.samples);
		J_INT(st, "offcpu_min_block_ns", tr->min_block_ns);
		J_INT(st, "offcpu_skipped", s->counters.offcpu_skipped);
		J_INT(st, "offcpu_skipped_ns", s->counters.offcpu_skipped_ns);
		json_object_object_add(r, "stacks", st);
	}
	if (tr->py)
		json_object_object_add(r, "python", cm_python_summary_json(tr->py));
	json_object_object_add(r, "processes", procs);
	json_object_object_add(r, "folded_processes", folded);
	json_object_object_add(r, "totals", ledger_json(&total, tcauses));
	json_object_object_add(r, "contact_map", cmap_json(&tmap));
	/* the wrapped command's main thread, start to end; the markers' requests */
	if ((o = cm_critpath_json(tr->cp)))
		json_object_object_add(r, "critical_path", o);
	if ((o = cm_requests_json(tr->requests)))
		json_object_object_add(r, "requests", o);
	if (tr->tier_report)
		tr->tier_report(tr, s, r);
	cm_view_free(&v);
	return r;
}
