// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * From the maps read back to the contactmap/1 report: close every thread's
 * open interval at the window end, sum threads into processes, and fold the
 * ledger into the contact map (docs/report.md says which time goes where).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"
#include "tracer.h"
#include "gpu.h"
#include "observer.h"
#include "stacks.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))

/* A thread's ledger and detail, closed at the window end. */
struct ledger {
	uint64_t wall, oncpu_user, oncpu_sys, runq_wake, runq_preempt;
	uint64_t off_fault, off_other, off_sys, iowait, unattributed;
	uint64_t fault_iowait, other_iowait;
	uint64_t gpu_spin, gpu_blocked;	/* inside CUDA synchronize calls */
};

struct cmap {
	uint64_t time[CM_SS_COUNT], oncpu[CM_SS_COUNT], count[CM_SS_COUNT];
};

struct proc {
	uint32_t pid;
	size_t *threads;	/* indexes into snap->threads */
	size_t nthreads;
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static json_object *hist_json(const uint64_t *h)
{
	json_object *a = json_object_new_array_ext(CM_HIST_SLOTS);

	for (int i = 0; i < CM_HIST_SLOTS; i++)
		json_object_array_add(a, json_object_new_int64((int64_t)h[i]));
	return a;
}

/* The interval still open at the end goes where the thread's state says,
 * exactly as the BPF side would have charged it at its next event. */
static void close_open_interval(struct cm_thread *t, struct cm_sys_stat *inflight, uint64_t end)
{
	uint64_t d;

	if (t->end_ns || t->state_ts >= end)
		return;
	d = end - t->state_ts;
	switch (t->state) {
	case CM_RUNNING:
		cm_account_oncpu(t, d);
		break;
	case CM_RUNQ_WAKE:
		t->runq_wake_ns += d;
		break;
	case CM_RUNQ_PREEMPT:
		t->runq_preempt_ns += d;
		break;
	case CM_BLOCKED:
		if (t->wake_ts > t->state_ts && t->wake_ts <= end) {
			/* woken, not yet on a CPU: runnable since the wakeup */
			t->runq_wake_ns += end - t->wake_ts;
			d = t->wake_ts - t->state_ts;
		}
		cm_account_blocked(t, d);
		break;
	default:
		t->unattributed_ns += d;
	}
	t->state_ts = end;
	/* a syscall still in flight: its time so far counts, the call does not */
	if (t->sc_nr1 && inflight) {
		inflight->oncpu_ns += t->sc_oncpu;
		inflight->offcpu_ns += t->sc_offcpu;
		inflight->iowait_ns += t->sc_iowait;
	}
}

static json_object *ledger_json(const struct ledger *l, json_object *causes)
{
	json_object *o = json_object_new_object();
	uint64_t oncpu = l->oncpu_user + l->oncpu_sys + l->gpu_spin;
	uint64_t runq = l->runq_wake + l->runq_preempt;

	J_INT(o, "wall_ns", l->wall);
	J_INT(o, "oncpu_ns", oncpu);
	J_INT(o, "oncpu_user_ns", l->oncpu_user);
	J_INT(o, "oncpu_syscall_ns", l->oncpu_sys);
	J_INT(o, "oncpu_gpu_wait_ns", l->gpu_spin);
	J_INT(o, "runq_ns", runq);
	J_INT(o, "runq_wakeup_ns", l->runq_wake);
	J_INT(o, "runq_preempt_ns", l->runq_preempt);
	J_INT(o, "offcpu_ns", l->off_sys + l->off_fault + l->off_other + l->gpu_blocked);
	json_object_object_add(o, "offcpu_by_cause", causes);
	J_INT(o, "iowait_ns", l->iowait);
	J_INT(o, "unattributed_ns", l->unattributed);
	return o;
}

static void ledger_add(struct ledger *a, const struct ledger *b)
{
	uint64_t *x = (uint64_t *)a;
	const uint64_t *y = (const uint64_t *)b;

	for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
		x[i] += y[i];
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

struct ctx {
	const struct cm_tracer *tr;
	struct cm_snapshot *snap;
};

static const char *blk_op_name(uint32_t op)
{
	static const char *names[] = { "read", "write", "flush", "discard", "other" };

	return op <= CM_BLK_OTHER ? names[op] : "other";
}

/* One process: threads, syscalls (summed over threads), sched, faults, block. */
static json_object *process_json(struct ctx *c, const struct proc *p, struct ledger *ptot,
				 struct cmap *pmap)
{
	struct cm_snapshot *s = c->snap;
	json_object *o = json_object_new_object(), *threads = json_object_new_array();
	json_object *pcauses = json_object_new_object();
	/* one slot per syscall, and one more (cm_nsyscalls) for ioctl on GPU files */
	struct cm_sys_stat *per_nr = calloc(cm_nsyscalls + 1, sizeof(*per_nr));
	struct cm_gpu_thread_sums gts = { 0 };
	uint64_t vol = 0, invol = 0, migr = 0, wakeups = 0, waits = 0, minflt = 0, majflt = 0, ufault = 0;
	uint64_t runq_hist[CM_HIST_SLOTS] = { 0 };
	const struct cm_thread *leader = NULL;
	uint64_t start = UINT64_MAX, end = 0;
	bool all_exited = true;
	struct ledger pl = { 0 };
	char comm[4 * CM_COMM_LEN + 1];

	if (!per_nr)
		return o;
	for (size_t i = 0; i < p->nthreads; i++) {
		struct cm_thread *t = &s->threads[p->threads[i]];
		json_object *tj = json_object_new_object(), *causes = json_object_new_object();
		struct ledger l = { 0 };
		uint64_t tend = t->end_ns ? t->end_ns : c->tr->end_ns, attributed;

		if (t->tid == p->pid)
			leader = t;
		if (!t->end_ns)
			all_exited = false;
		if (t->start_ns < start)
			start = t->start_ns;
		if (tend > end)
			end = tend;
		l.wall = tend > t->start_ns ? tend - t->start_ns : 0;
		l.oncpu_user = t->oncpu_user_ns;
		l.oncpu_sys = t->oncpu_sys_ns;
		l.runq_wake = t->runq_wake_ns;
		l.runq_preempt = t->runq_preempt_ns;
		l.off_fault = t->off_fault_ns;
		l.off_other = t->off_other_ns;
		l.fault_iowait = t->off_fault_iowait_ns;
		l.other_iowait = t->off_other_iowait_ns;
		l.iowait = l.fault_iowait + l.other_iowait;
		for (size_t k = 0; k < s->nsys; k++) {
			const struct cm_sys_stat *st = &s->sys_stats[k];
			unsigned nr = s->sys_keys[k].nr;
			char key[64];

			if (s->sys_keys[k].tid != t->tid)
				continue;
			l.off_sys += st->offcpu_ns;
			l.iowait += st->iowait_ns;
			if (nr == CM_SYS_GPU_IOCTL) {
				snprintf(key, sizeof(key), "gpu:driver");
				gts.ioctls += st->count;
				gts.ioctl_ns += st->oncpu_ns + st->offcpu_ns;
			} else {
				snprintf(key, sizeof(key), "syscall:%s", cm_syscall_name(nr));
			}
			causes_add(causes, key, st->offcpu_ns);
			if (nr < cm_nsyscalls || nr == CM_SYS_GPU_IOCTL) {
				struct cm_sys_stat *a = &per_nr[nr < cm_nsyscalls ? nr : cm_nsyscalls];

				a->count += st->count;
				a->errors += st->errors;
				a->total_ns += st->total_ns;
				a->oncpu_ns += st->oncpu_ns;
				a->offcpu_ns += st->offcpu_ns;
				a->iowait_ns += st->iowait_ns;
				if (st->max_ns > a->max_ns)
					a->max_ns = st->max_ns;
				for (int h = 0; h < CM_HIST_SLOTS; h++)
					a->hist[h] += st->hist[h];
			}
			/* the contact map: syscall time by group, io-wait to block I/O */
			enum cm_subsys g = cm_syscall_group(nr);
			pmap->time[g] += st->oncpu_ns + st->offcpu_ns - st->iowait_ns;
			pmap->oncpu[g] += st->oncpu_ns;
			pmap->count[g] += st->count;
			pmap->time[CM_SS_BLOCK_IO] += st->iowait_ns;
		}
		l.gpu_spin = t->gpu_spin_ns;
		l.gpu_blocked = t->gpu_blocked_ns;
		causes_add(causes, "page_fault", l.off_fault);
		causes_add(causes, "other", l.off_other);
		causes_add(causes, "gpu:sync", l.gpu_blocked);
		attributed = l.oncpu_user + l.oncpu_sys + l.runq_wake + l.runq_preempt +
			     l.off_sys + l.off_fault + l.off_other + l.gpu_spin + l.gpu_blocked;
		/* the state machine charges every interval once, so the remainder is
		 * what BPF itself could not classify (t->unattributed_ns) */
		l.unattributed = l.wall > attributed ? l.wall - attributed : 0;
		if (attributed > l.wall)
			l.wall = attributed;	/* never report a ledger that does not close */

		pmap->time[CM_SS_CPU_USER] += l.oncpu_user;
		pmap->oncpu[CM_SS_CPU_USER] += l.oncpu_user;
		pmap->time[CM_SS_RUNQ] += l.runq_wake + l.runq_preempt;
		pmap->count[CM_SS_RUNQ] += t->runq_waits;
		pmap->time[CM_SS_MEMORY] += l.off_fault - l.fault_iowait;
		pmap->count[CM_SS_MEMORY] += (t->min_flt - t->min_flt_base) + (t->maj_flt - t->maj_flt_base);
		pmap->time[CM_SS_OTHER] += l.off_other - l.other_iowait;
		pmap->time[CM_SS_BLOCK_IO] += l.fault_iowait + l.other_iowait;
		pmap->time[CM_SS_UNATTRIBUTED] += l.unattributed;
		/* GPU wait: everything inside synchronize calls, spin and blocked */
		pmap->time[CM_SS_GPU] += l.gpu_spin + l.gpu_blocked;
		pmap->oncpu[CM_SS_GPU] += l.gpu_spin;
		pmap->count[CM_SS_GPU] += t->gpu_syncs;
		gts.syncs += t->gpu_syncs;
		gts.sync_ns += t->gpu_sync_ns;
		gts.spin_ns += l.gpu_spin;
		gts.blocked_ns += l.gpu_blocked;

		vol += t->vol_switches;
		invol += t->invol_switches;
		migr += t->migrations;
		wakeups += t->wakeups;
		waits += t->runq_waits;
		minflt += t->min_flt - t->min_flt_base;
		majflt += t->maj_flt - t->maj_flt_base;
		ufault += t->user_faults;
		for (int h = 0; h < CM_HIST_SLOTS; h++)
			runq_hist[h] += t->runq_hist[h];

		cm_sanitize_comm(t->comm, CM_COMM_LEN, comm, sizeof(comm));
		J_INT(tj, "tid", t->tid);
		json_object_object_add(tj, "comm", json_object_new_string(comm));
		J_INT(tj, "start_ns", t->start_ns);
		J_INT(tj, "end_ns", t->end_ns);
		causes_merge(pcauses, causes);
		json_object_object_add(tj, "ledger", ledger_json(&l, causes));
		json_object_array_add(threads, tj);
		ledger_add(&pl, &l);
	}

	if (!leader)
		leader = &s->threads[p->threads[0]];
	cm_sanitize_comm(leader->comm, CM_COMM_LEN, comm, sizeof(comm));
	J_INT(o, "pid", p->pid);
	J_INT(o, "ppid", leader->ppid);
	json_object_object_add(o, "comm", json_object_new_string(comm));
	J_INT(o, "start_ns", start);
	J_INT(o, "end_ns", all_exited ? end : 0);
	if (all_exited && (leader->flags & CM_TF_EXITED))
		J_INT(o, "exit_code", leader->exit_code);
	json_object_object_add(o, "ledger", ledger_json(&pl, pcauses));
	json_object_object_add(o, "threads", threads);

	/* syscalls, largest total first */
	struct sysrow *rows = calloc(cm_nsyscalls + 1, sizeof(*rows));
	json_object *sys = json_object_new_array();
	size_t nrows = 0;

	for (unsigned nr = 0; rows && nr <= cm_nsyscalls; nr++)
		if (per_nr[nr].count || per_nr[nr].oncpu_ns || per_nr[nr].offcpu_ns)
			rows[nrows++] = (struct sysrow){
				.nr = nr < cm_nsyscalls ? nr : CM_SYS_GPU_IOCTL, .st = &per_nr[nr] };
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
	free(per_nr);
	json_object_object_add(o, "syscalls", sys);

	json_object *sched = json_object_new_object();
	J_INT(sched, "voluntary_switches", vol);
	J_INT(sched, "involuntary_switches", invol);
	J_INT(sched, "migrations", migr);
	J_INT(sched, "wakeups", wakeups);
	J_INT(sched, "runq_waits", waits);
	json_object_object_add(sched, "runq_hist_log2_ns", hist_json(runq_hist));
	J_INT(sched, "runq_p50_ns", cm_hist_quantile(runq_hist, CM_HIST_SLOTS, 0.50, 0));
	J_INT(sched, "runq_p99_ns", cm_hist_quantile(runq_hist, CM_HIST_SLOTS, 0.99, 0));
	json_object_object_add(o, "sched", sched);

	json_object *faults = json_object_new_object();
	J_INT(faults, "minor", minflt);
	J_INT(faults, "major", majflt);
	J_INT(faults, "user_tracepoint", ufault);
	json_object_object_add(o, "faults", faults);

	json_object *blk = json_object_new_array();
	for (size_t k = 0; k < s->nblk; k++) {
		const struct cm_blk_key *bk = &s->blk_keys[k];
		const struct cm_blk_stat *bs = &s->blk_stats[k];
		json_object *r;
		char dev[32];

		if (bk->pid != p->pid)
			continue;
		r = json_object_new_object();
		snprintf(dev, sizeof(dev), "%u:%u", bk->dev >> 20, bk->dev & ((1U << 20) - 1));
		json_object_object_add(r, "device", json_object_new_string(dev));
		json_object_object_add(r, "op", json_object_new_string(blk_op_name(bk->op)));
		J_INT(r, "submitted", bs->submitted);
		J_INT(r, "count", bs->count);
		J_INT(r, "bytes", bs->bytes);
		J_INT(r, "total_ns", bs->total_ns);
		J_INT(r, "max_ns", bs->max_ns);
		json_object_object_add(r, "hist_log2_ns", hist_json((const uint64_t *)bs->hist));
		json_object_array_add(blk, r);
		pmap->count[CM_SS_BLOCK_IO] += bs->count;
	}
	json_object_object_add(o, "block_io", blk);
	json_object *gpu = cm_gpu_process_json(s, p->pid, &gts);
	if (gpu)
		json_object_object_add(o, "gpu", gpu);
	json_object_object_add(o, "contact_map", cmap_json(pmap));
	*ptot = pl;
	return o;
}

json_object *cm_features_json(const struct cm_features *f)
{
	json_object *o = json_object_new_object();

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
	return o;
}

struct observer_threads {
	uint64_t n, oncpu_ns;
};

static json_object *observer_threads_json(const struct observer_threads *o)
{
	json_object *j = json_object_new_object();

	J_INT(j, "count", o->n);
	J_INT(j, "oncpu_ns", o->oncpu_ns);
	return j;
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
	return o;
}

json_object *cm_build_report(const struct cm_tracer *tr, struct cm_snapshot *s,
			     json_object *target, json_object *exitj)
{
	json_object *r = json_object_new_object(), *o, *procs = json_object_new_array();
	struct ledger total = { 0 };
	json_object *tcauses = json_object_new_object();
	struct cmap tmap = { 0 };
	uint32_t *pids;
	size_t npids = 0;

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
	o = json_object_new_object();
	J_INT(o, "threads_map_full", s->counters.threads_full);
	J_INT(o, "syscall_map_full", s->counters.sysstats_full);
	J_INT(o, "block_map_full", s->counters.blk_full);
	J_INT(o, "block_inflight_full", s->counters.blk_inflight_full);
	J_INT(o, "prog_recursion_misses", s->recursion_misses);
	J_INT(o, "stack_ringbuf_full", s->counters.ringbuf_full);
	J_INT(o, "kernel_stack_missing", s->counters.kstack_missing);
	J_INT(o, "user_stack_missing", s->counters.ustack_missing);
	J_INT(o, "cgroup_events_full", s->counters.cgroup_events_full);
	if (tr->timeline) {
		J_INT(o, "timeline_ringbuf_full", s->counters.trace_ringbuf_full);
		J_INT(o, "timeline_rate_limited", s->counters.trace_rate_limited);
	}
	if (s->gpu_loaded)
		cm_gpu_lost_json(s, o);
	json_object_object_add(r, "lost", o);
	json_object_object_add(r, "observer", observer_json(tr, s));
	o = json_object_new_object();
	J_INT(o, "switch_in_without_wakeup", s->counters.switch_in_blocked);
	J_INT(o, "ran_while_off_cpu", s->counters.run_while_off);
	J_INT(o, "switch_in_from_unknown", s->counters.switch_in_unknown);
	J_INT(o, "wakeup_from_unknown", s->counters.wakeup_unknown);
	uint64_t unfinished = 0;
	for (size_t k = 0; k < s->nblk; k++)
		if (s->blk_stats[k].submitted > s->blk_stats[k].count)
			unfinished += s->blk_stats[k].submitted - s->blk_stats[k].count;
	J_INT(o, "block_unfinished", unfinished);
	json_object_object_add(r, "anomalies", o);

	/* close open intervals and read what only /proc still knows */
	for (size_t i = 0; i < s->nthreads; i++) {
		struct cm_thread *t = &s->threads[i];
		struct cm_sys_stat *inflight = NULL;

		if (t->sc_nr1 && !t->end_ns) {
			for (size_t k = 0; k < s->nsys; k++)
				if (s->sys_keys[k].tid == t->tid && s->sys_keys[k].nr == t->sc_nr1 - 1)
					inflight = &s->sys_stats[k];
			if (!inflight) {
				struct cm_sys_key *nk = realloc(s->sys_keys, (s->nsys + 1) * sizeof(*nk));
				struct cm_sys_stat *ns = nk ? realloc(s->sys_stats, (s->nsys + 1) * sizeof(*ns)) : NULL;

				if (nk)
					s->sys_keys = nk;
				if (ns) {
					s->sys_stats = ns;
					memset(&ns[s->nsys], 0, sizeof(*ns));
					nk[s->nsys] = (struct cm_sys_key){ .tid = t->tid, .nr = t->sc_nr1 - 1 };
					inflight = &ns[s->nsys++];
				}
			}
		}
		close_open_interval(t, inflight, tr->end_ns);
		if (!(t->flags & CM_TF_EXITED)) {
			/* alive: the kernel's fault counters and comm as they are now */
			uint64_t mn, mj;
			char state;
			int ppid;

			if (!cm_task_stat(t->pid, t->tid, &state, &ppid, &mn, &mj, t->comm,
					  sizeof(t->comm))) {
				t->min_flt = mn;
				t->maj_flt = mj;
			}
		}
	}

	/* the CUPTI agent's own thread is contactmap's cost, not the program's:
	 * out of the ledgers, into "observer" */
	struct observer_threads obs = { 0 };

	for (size_t i = 0; i < s->nthreads;) {
		struct cm_thread *t = &s->threads[i];

		if (!(t->flags & CM_TF_OBSERVER)) {
			i++;
			continue;
		}
		obs.n++;
		obs.oncpu_ns += t->oncpu_user_ns + t->oncpu_sys_ns + t->gpu_spin_ns;
		s->threads[i] = s->threads[--s->nthreads];
	}
	json_object_object_add(json_object_object_get(r, "observer"), "agent_threads",
			       observer_threads_json(&obs));

	pids = malloc((s->nthreads + 1) * sizeof(*pids));
	for (size_t i = 0; pids && i < s->nthreads; i++)
		pids[npids++] = s->threads[i].pid;
	if (pids)
		qsort(pids, npids, sizeof(*pids), cmp_u32);

	struct ctx c = { .tr = tr, .snap = s };
	for (size_t i = 0; i < npids;) {
		struct proc p = { .pid = pids[i] };
		size_t j = i;
		struct ledger pl;
		struct cmap pmap = { 0 };
		json_object *pj;

		while (j < npids && pids[j] == p.pid)
			j++;
		p.threads = malloc((j - i) * sizeof(*p.threads));
		for (size_t k = 0; p.threads && k < s->nthreads; k++)
			if (s->threads[k].pid == p.pid)
				p.threads[p.nthreads++] = k;
		if (p.nthreads) {
			pj = process_json(&c, &p, &pl, &pmap);
			json_object *pc;

			if (json_object_object_get_ex(json_object_object_get(pj, "ledger"), "offcpu_by_cause", &pc))
				causes_merge(tcauses, pc);
			if (tr->stacks)
				json_object_object_add(pj, "stacks",
						       cm_stacks_process_json(tr->stacks, p.pid, 5));
			json_object_array_add(procs, pj);
			ledger_add(&total, &pl);
			cmap_add(&tmap, &pmap);
		}
		free(p.threads);
		i = j;
	}
	free(pids);
	if (tr->stacks) {
		json_object *st = cm_stacks_summary_json(tr->stacks);

		J_INT(st, "samples", s->counters.samples);
		J_INT(st, "offcpu_min_block_ns", tr->min_block_ns);
		J_INT(st, "offcpu_skipped", s->counters.offcpu_skipped);
		J_INT(st, "offcpu_skipped_ns", s->counters.offcpu_skipped_ns);
		json_object_object_add(r, "stacks", st);
	}
	json_object_object_add(r, "processes", procs);
	json_object_object_add(r, "totals", ledger_json(&total, tcauses));
	json_object_object_add(r, "contact_map", cmap_json(&tmap));
	return r;
}
