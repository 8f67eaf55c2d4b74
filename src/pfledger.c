// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The procfs tier's ledgers: each thread's kernel counters and off-CPU
 * samples become the struct cm_thread record and syscall rows the BPF tier
 * would have left, so the books and cm_build_report treat both tiers alike.
 *
 * A thread's on-CPU and run-queue time are its schedstat deltas (exact); its
 * off-CPU time is what is left of its wall time, so its ledger closes; the
 * off-CPU samples only say how that time divides between causes. What the
 * process-wide counters hold beyond the thread rows (threads that started
 * and ended between two reads, an ended thread's last moments) is the
 * process's "(unseen)" row, tid 0; in wrap mode the command's wait4 rusage
 * closes the books for what no process holds.
 */
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "tracer.h"
#include "books.h"
#include "pftrack_int.h"

#define UNSEEN_COMM "(unseen)"

static uint64_t sub0(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* A thread's figures over its window. */
struct pf_fig {
	uint64_t exec, rd, user, minflt, majflt, vol, invol;
};

static void thread_fig(const struct pf_thread *th, struct pf_fig *f)
{
	f->exec = sub0(th->cur.exec, th->base.exec);
	f->rd = sub0(th->cur.rd, th->base.rd);
	f->user = cm_pf_user_part(f->exec, sub0(th->cur.utime, th->base.utime),
				  sub0(th->cur.stime, th->base.stime));
	f->minflt = sub0(th->cur.minflt, th->base.minflt);
	f->majflt = sub0(th->cur.majflt, th->base.majflt);
	f->vol = sub0(th->cur.vol, th->base.vol);
	f->invol = sub0(th->cur.invol, th->base.invol);
}

/* Samples into rows: one row per syscall, I/O-wait samples a part of it. */
static int cause_rows(const struct pf_thread *th, uint64_t off, struct cm_thread *t,
		      struct cm_sys_key **keys, struct cm_sys_stat **rows, size_t *n)
{
	uint64_t *w = NULL, *part = NULL;
	int rc = -1;

	*keys = NULL;
	*rows = NULL;
	*n = 0;
	if (!th->samples || !th->ncauses) {
		t->off_other_ns = off;	/* never sampled blocked: no cause known */
		return 0;
	}
	w = malloc(th->ncauses * sizeof(*w));
	part = malloc(th->ncauses * sizeof(*part));
	*keys = calloc(th->ncauses, sizeof(**keys));
	*rows = calloc(th->ncauses, sizeof(**rows));
	if (!w || !part || !*keys || !*rows)
		goto out;
	for (uint32_t i = 0; i < th->ncauses; i++)
		w[i] = th->causes[i].n;
	cm_pf_apportion(off, w, th->ncauses, part);
	for (uint32_t i = 0; i < th->ncauses; i++) {
		uint32_t code = th->causes[i].code & ~CM_PF_IOWAIT;
		bool io = th->causes[i].code & CM_PF_IOWAIT;
		size_t k;

		if (code == CM_PF_FAULT) {
			t->off_fault_ns += part[i];
			t->off_fault_iowait_ns += io ? part[i] : 0;
			continue;
		}
		if (code == CM_PF_OTHER || code >= CM_PF_FAULT) {
			t->off_other_ns += part[i];
			t->off_other_iowait_ns += io ? part[i] : 0;
			continue;
		}
		for (k = 0; k < *n && (*keys)[k].nr != code; k++)
			;
		if (k == *n) {
			(*keys)[k] = (struct cm_sys_key){ .gen = th->gen, .nr = code };
			(*n)++;
		}
		(*rows)[k].offcpu_ns += part[i];
		(*rows)[k].total_ns += part[i];
		(*rows)[k].iowait_ns += io ? part[i] : 0;
		t->sys_offcpu_ns += part[i];
		t->sys_iowait_ns += io ? part[i] : 0;
	}
	rc = 0;
out:
	free(w);
	free(part);
	if (rc) {
		free(*keys);
		free(*rows);
		*keys = NULL;
		*rows = NULL;
		*n = 0;
		t->off_other_ns = off;
	}
	return rc;
}

int cm_pfl_thread(const struct cm_pf *pf, const struct pf_thread *th, uint64_t end,
		  struct cm_thread *t, struct cm_sys_key **keys, struct cm_sys_stat **rows, size_t *n)
{
	const struct pf_proc *p = th->p;
	uint64_t tend = th->ended ? th->last_ns : end, wall, off, rq[2], wq[2];
	struct pf_fig f;

	memset(t, 0, sizeof(*t));
	t->tid = (uint32_t)th->tid;
	t->pid = (uint32_t)p->pid;
	t->ppid = (uint32_t)p->ppid;
	t->gen = th->gen;
	t->pgen = p->pgen;
	memcpy(t->comm, th->comm, CM_COMM_LEN);
	t->start_ns = th->start_ns;
	t->end_ns = th->ended ? th->last_ns : 0;
	t->flags = p->seeded ? CM_TF_SEEDED : 0;
	thread_fig(th, &f);
	wall = sub0(tend, th->start_ns);
	t->oncpu_user_ns = f.user;
	/* kernel mode, in a syscall or not: this tier cannot tell them apart */
	t->oncpu_kother_ns = f.exec - f.user;
	/* schedstat sums the waits; by the switches that led to them, an estimate
	 * of how many followed a wakeup (voluntary) and a preemption */
	wq[0] = f.vol;
	wq[1] = f.invol;
	cm_pf_apportion(f.rd, wq, 2, rq);
	if (!f.vol && !f.invol)
		rq[0] = f.rd, rq[1] = 0;
	t->runq_wake_ns = rq[0];
	t->runq_preempt_ns = rq[1];
	off = sub0(wall, f.exec + f.rd);
	t->vol_switches = f.vol;
	t->invol_switches = f.invol;
	t->min_flt_base = th->base.minflt;
	t->min_flt = th->cur.minflt;
	t->maj_flt_base = th->base.majflt;
	t->maj_flt = th->cur.majflt;
	/* nothing left open for cm_thread_close to charge */
	t->state = CM_RUNNING;
	t->state_ts = tend;
	t->stime_at = 0;
	(void)pf;
	return cause_rows(th, off, t, keys, rows, n);
}

void cm_pfl_account_end(struct cm_pf *pf, struct pf_thread *th)
{
	struct pf_proc *p = th->p;
	struct pf_fig f;

	thread_fig(th, &f);
	p->ended_exec += f.exec;
	p->ended_user += f.user;
	p->ended_minflt += f.minflt;
	p->ended_majflt += f.majflt;
	p->ended_vol += f.vol;
	p->ended_invol += f.invol;
	p->threads_ended++;
	pf->blocked_samples += th->samples;
	if (th->exit_ns > th->last_ns)
		p->tails_ns += th->exit_ns - th->last_ns;
}

void cm_pfl_retire(struct cm_pf *pf, struct pf_thread *th, uint32_t flags)
{
	struct cm_sys_key *keys;
	struct cm_sys_stat *rows;
	struct cm_thread t;
	size_t n;

	cm_pfl_thread(pf, th, th->last_ns, &t, &keys, &rows, &n);
	t.flags |= flags;
	if (th->tid == th->p->pid && th->p->has_exit_code && (flags & CM_TF_EXITED))
		t.exit_code = th->p->exit_code;
	if (cm_books_retire(pf->tr->books, &t, keys, rows, n, cm_now_ns()))
		cm_warn("out of memory keeping an ended thread's figures (tid %d)", (int)th->tid);
	free(keys);
	free(rows);
}

/* What the process-wide counters hold beyond the seen threads. */
struct pf_rest {
	uint64_t exec, user, minflt, majflt, vol, invol;
};

static void proc_rest(const struct cm_pf *pf, const struct pf_proc *p, struct pf_rest *r)
{
	uint64_t seen_exec = p->ended_exec, seen_user = p->ended_user;
	uint64_t seen_min = p->ended_minflt, seen_maj = p->ended_majflt;
	uint64_t pexec = sub0(p->cur.clock, p->base.clock), puser;

	for (size_t i = 0; i < p->ntl; i++) {
		struct pf_fig f;

		thread_fig(p->tl[i], &f);
		seen_exec += f.exec;
		seen_user += f.user;
		seen_min += f.minflt;
		seen_maj += f.majflt;
	}
	memset(r, 0, sizeof(*r));
	r->exec = sub0(pexec, seen_exec);
	puser = cm_pf_user_part(pexec, sub0(p->cur.utime, p->base.utime), sub0(p->cur.stime, p->base.stime));
	r->user = sub0(puser, seen_user);
	if (r->user > r->exec)
		r->user = r->exec;
	if (p->have_whole) {
		r->minflt = sub0(sub0(p->cur.minflt, p->base.minflt), seen_min);
		r->majflt = sub0(sub0(p->cur.majflt, p->base.majflt), seen_maj);
	}
	r->vol = p->rest_vol;
	r->invol = p->rest_invol;
}

bool cm_pfl_rest(const struct cm_pf *pf, const struct pf_proc *p, uint64_t end, struct cm_thread *t)
{
	uint64_t tend = p->ended ? p->end_ns : end;
	struct pf_rest r;

	/* while every thread the process had is in the table, the process-wide
	 * counters hold nothing more: what they differ by is the in-flight
	 * runtime of running threads, which schedstat shows at their next tick */
	if (!p->threads_ended && !p->unseen_threads && !p->rest_vol && !p->rest_invol &&
	    !(p->threads_seen == 0 && p->ended))
		return false;
	proc_rest(pf, p, &r);
	if (!r.exec && !r.minflt && !r.majflt && !r.vol && !r.invol)
		return false;
	memset(t, 0, sizeof(*t));
	t->pid = (uint32_t)p->pid;
	t->ppid = (uint32_t)p->ppid;
	t->pgen = p->pgen;
	/* a process whose leader was never seen keeps its own name */
	snprintf(t->comm, sizeof(t->comm), "%s", p->leader_seen ? UNSEEN_COMM : p->comm);
	t->end_ns = p->ended ? tend : 0;
	t->start_ns = sub0(tend, r.exec);
	t->oncpu_user_ns = r.user;
	t->oncpu_kother_ns = r.exec - r.user;
	t->min_flt = r.minflt;
	t->maj_flt = r.majflt;
	t->vol_switches = r.vol;
	t->invol_switches = r.invol;
	t->state = CM_RUNNING;
	t->state_ts = tend;
	return true;
}

void cm_pfl_proc_end(struct cm_pf *pf, struct pf_proc *p)
{
	struct cm_thread t;
	bool rest;

	if (p->ended)
		return;
	p->ended = true;
	if (!p->end_ns)
		p->end_ns = p->last_ns;
	rest = cm_pfl_rest(pf, p, p->end_ns, &t);
	if (p->leader) {
		cm_pfl_retire(pf, p->leader, (p->has_exit_code ? CM_TF_EXITED : 0) |
						 (rest ? 0 : CM_TF_GROUP_DEAD));
		free(p->leader->causes);
		free(p->leader);
		p->leader = NULL;
	} else if (!rest) {
		/* no record left to say the process is gone: an empty one does */
		memset(&t, 0, sizeof(t));
		t.pid = (uint32_t)p->pid;
		t.ppid = (uint32_t)p->ppid;
		t.pgen = p->pgen;
		snprintf(t.comm, sizeof(t.comm), "%s", p->comm);
		t.start_ns = t.end_ns = t.state_ts = p->end_ns;
		rest = true;
	}
	if (rest) {
		t.flags |= CM_TF_GROUP_DEAD;
		if (cm_books_retire(pf->tr->books, &t, NULL, NULL, 0, cm_now_ns()))
			cm_warn("out of memory keeping process %d's figures", (int)p->pid);
	}
}

/* ---- wrap mode: the command's rusage closes the books -------------------------- */

/* A process's totals as its rows and its rest have them. */
static void proc_totals(const struct cm_pf *pf, const struct pf_proc *p, struct pf_rest *tot)
{
	struct pf_rest r;

	memset(tot, 0, sizeof(*tot));
	tot->exec = p->ended_exec;
	tot->user = p->ended_user;
	tot->minflt = p->ended_minflt;
	tot->majflt = p->ended_majflt;
	tot->vol = p->ended_vol;
	tot->invol = p->ended_invol;
	for (size_t i = 0; i < p->ntl; i++) {
		struct pf_fig f;

		thread_fig(p->tl[i], &f);
		tot->exec += f.exec;
		tot->user += f.user;
		tot->minflt += f.minflt;
		tot->majflt += f.majflt;
		tot->vol += f.vol;
		tot->invol += f.invol;
	}
	if (p->threads_ended || p->unseen_threads || !p->threads_seen) {
		proc_rest(pf, p, &r);
		tot->exec += r.exec;
		tot->user += r.user;
		tot->minflt += r.minflt;
		tot->majflt += r.majflt;
	}
}

static uint64_t tv_ns(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000000ULL + (uint64_t)tv.tv_usec * 1000ULL;
}

void cm_pfl_close_books(struct cm_pf *pf)
{
	struct pf_closure *c = &pf->closure;
	struct pf_proc *cmd = NULL;
	bool children = pf->orphan_procs > 0;
	struct cm_thread t;

	if (!pf->have_rusage || c->done)
		return;
	c->done = true;
	/* the rusage holds the command and the descendants waited for: the
	 * ended processes; those still alive are not in it */
	for (size_t i = 0; i < pf->nprocs; i++) {
		const struct pf_proc *p = pf->procs[i];
		struct pf_rest tot;

		if (p->pid == pf->command && !p->ended)
			cmd = pf->procs[i];
		else if (!p->ended)
			continue;
		else
			children = true;
		proc_totals(pf, p, &tot);
		c->oncpu += tot.exec;
		c->user += tot.user;
		c->minflt += tot.minflt;
		c->majflt += tot.majflt;
		c->vol += tot.vol;
		c->invol += tot.invol;
	}
	c->r_user = tv_ns(pf->ru.ru_utime);
	c->r_oncpu = c->r_user + tv_ns(pf->ru.ru_stime);
	c->r_minflt = (uint64_t)pf->ru.ru_minflt;
	c->r_majflt = (uint64_t)pf->ru.ru_majflt;
	c->r_vol = (uint64_t)pf->ru.ru_nvcsw;
	c->r_invol = (uint64_t)pf->ru.ru_nivcsw;
	if (cmd && (cmd->cur.minflt != 0 || cmd->cur.clock != 0)) {
		char buf[2048];
		struct cm_pf_stat st;

		/* children it waited for show in its own stat's c* counters */
		if (cm_pf_read(&cmd->f, PF_STAT, buf, sizeof(buf)) >= 0 && !cm_pf_parse_stat(buf, &st) &&
		    (st.cminflt || st.cmajflt || st.cutime || st.cstime))
			children = true;
	}
	/* the command alone: what its rows miss is its own (its ended threads'
	 * switches, which no /proc file keeps); with children, no file says
	 * whose it is, so it is a process of its own, pid 0 */
	if (cmd && !children) {
		c->to_command = true;
		cmd->rest_vol = sub0(c->r_vol, c->vol);
		cmd->rest_invol = sub0(c->r_invol, c->invol);
		return;
	}
	if (c->r_oncpu <= c->oncpu && c->r_minflt <= c->minflt && c->r_majflt <= c->majflt &&
	    c->r_vol <= c->vol && c->r_invol <= c->invol)
		return;
	memset(&t, 0, sizeof(t));
	t.ppid = (uint32_t)pf->command;
	t.pgen = ++pf->next_gen;
	snprintf(t.comm, sizeof(t.comm), "%s", UNSEEN_COMM);
	t.end_ns = t.state_ts = cm_now_ns();
	{
		uint64_t exec = sub0(c->r_oncpu, c->oncpu), user = sub0(c->r_user, c->user);

		t.start_ns = sub0(t.end_ns, exec);
		t.oncpu_user_ns = user < exec ? user : exec;
		t.oncpu_kother_ns = exec - t.oncpu_user_ns;
	}
	t.min_flt = sub0(c->r_minflt, c->minflt);
	t.maj_flt = sub0(c->r_majflt, c->majflt);
	t.vol_switches = sub0(c->r_vol, c->vol);
	t.invol_switches = sub0(c->r_invol, c->invol);
	t.state = CM_RUNNING;
	t.flags = CM_TF_GROUP_DEAD;
	if (cm_books_retire(pf->tr->books, &t, NULL, NULL, 0, cm_now_ns()))
		cm_warn("out of memory keeping the unseen processes' figures");
}

/* ---- the snapshot ------------------------------------------------------------------ */

struct growing {
	struct cm_snapshot *s;
	size_t capt, caps;
};

static int add_record(struct growing *g, const struct cm_thread *t, const struct cm_sys_key *keys,
		      const struct cm_sys_stat *rows, size_t n)
{
	struct cm_snapshot *s = g->s;

	if (s->nthreads == g->capt) {
		size_t nc = g->capt ? g->capt * 2 : 64;
		struct cm_thread *x = realloc(s->threads, nc * sizeof(*x));

		if (!x)
			return -1;
		s->threads = x;
		g->capt = nc;
	}
	s->threads[s->nthreads++] = *t;
	if (s->nsys + n > g->caps) {
		size_t nc = (s->nsys + n) * 2 + 64;
		struct cm_sys_key *k = realloc(s->sys_keys, nc * sizeof(*k));
		struct cm_sys_stat *r;

		if (!k)
			return -1;
		s->sys_keys = k;
		r = realloc(s->sys_stats, nc * sizeof(*r));
		if (!r)
			return -1;
		s->sys_stats = r;
		g->caps = nc;
	}
	memcpy(s->sys_keys + s->nsys, keys, n * sizeof(*keys));
	memcpy(s->sys_stats + s->nsys, rows, n * sizeof(*rows));
	s->nsys += n;
	return 0;
}

static int snap_thread(const struct cm_pf *pf, struct growing *g, const struct pf_thread *th, uint64_t end)
{
	struct cm_sys_key *keys;
	struct cm_sys_stat *rows;
	struct cm_thread t;
	size_t n;
	int rc;

	cm_pfl_thread(pf, th, end, &t, &keys, &rows, &n);
	rc = add_record(g, &t, keys, rows, n);
	free(keys);
	free(rows);
	return rc;
}

int cm_pf_snapshot(struct cm_pf *pf, struct cm_snapshot *s)
{
	struct growing g = { .s = s };
	uint64_t end = cm_now_ns();
	struct cm_perf_counts pc;

	memset(s, 0, sizeof(*s));
	cm_pf_flush(pf);
	pf->tr->end_ns = end;
	for (size_t i = 0; i < pf->nthreads; i++)
		if (snap_thread(pf, &g, pf->threads[i], end))
			goto oom;
	for (size_t i = 0; i < pf->nprocs; i++) {
		const struct pf_proc *p = pf->procs[i];
		struct cm_thread t;

		if (p->ended)
			continue;
		if (p->leader && snap_thread(pf, &g, p->leader, end))
			goto oom;
		if (cm_pfl_rest(pf, p, end, &t) && add_record(&g, &t, NULL, NULL, 0))
			goto oom;
	}
	for (size_t i = 0; i < pf->nprocs; i++)
		s->counters.exits += pf->procs[i]->threads_ended;
	s->counters.retired = s->counters.exits;
	cm_perf_get_counts(pf->perf, &pc);
	s->counters.samples = pc.samples;
	return 0;
oom:
	cm_err("out of memory reading the threads' figures");
	cm_snapshot_free(s);
	return -1;
}
