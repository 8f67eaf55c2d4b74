// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The books (books.h): ended threads folded into their processes, and the
 * views that join them with the live threads for a report.
 */
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "books.h"
#include "tracer.h"

#define MAX_GROUPS 32		/* folded-thread rows per process (one per comm) */
#define TRIM_SLACK 64		/* ended processes beyond keep_procs before a trim */

static int grow(void **p, size_t *cap, size_t n, size_t elem, size_t first)
{
	void *np;
	size_t nc;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : first;
	np = realloc(*p, nc * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

/* ---- one thread's ledger ------------------------------------------------ */

void cm_thread_close(struct cm_thread *t, uint64_t end)
{
	uint64_t d;

	if (t->end_ns || t->state_ts >= end)
		return;
	d = end - t->state_ts;
	switch (t->state) {
	case CM_RUNNING:
		cm_account_oncpu(t, d, t->stime_at, t->fault_seg == t->state_ts);
		break;
	case CM_RUNQ_WAKE:
		t->runq_wake_ns += d;
		break;
	case CM_RUNQ_PREEMPT:
		t->runq_preempt_ns += d;
		break;
	case CM_BLOCKED:
		if (t->wake_ts >= t->state_ts && t->wake_ts <= end) {
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
}

uint64_t cm_tl_oncpu(const struct cm_tl *l)
{
	return l->oncpu_user + l->oncpu_sys + l->oncpu_kfault + l->oncpu_kother + l->gpu_spin;
}

void cm_tl_from_thread(struct cm_tl *l, const struct cm_thread *t, uint64_t end)
{
	uint64_t tend = t->end_ns ? t->end_ns : end, attributed;

	memset(l, 0, sizeof(*l));
	l->nthreads = 1;
	l->wall = tend > t->start_ns ? tend - t->start_ns : 0;
	l->oncpu_user = t->oncpu_user_ns;
	l->oncpu_sys = t->oncpu_sys_ns;
	l->oncpu_kfault = t->oncpu_kfault_ns;
	l->oncpu_kother = t->oncpu_kother_ns;
	l->gpu_spin = t->gpu_spin_ns;
	l->runq_wake = t->runq_wake_ns;
	l->runq_preempt = t->runq_preempt_ns;
	l->off_sys = t->sys_offcpu_ns;
	l->off_fault = t->off_fault_ns;
	l->off_other = t->off_other_ns;
	l->gpu_blocked = t->gpu_blocked_ns;
	l->gil = t->gil_ns;
	l->gil_waits = t->gil_waits;
	l->sys_iowait = t->sys_iowait_ns;
	l->fault_iowait = t->off_fault_iowait_ns;
	l->other_iowait = t->off_other_iowait_ns;
	attributed = cm_tl_oncpu(l) + l->runq_wake + l->runq_preempt + l->off_sys + l->off_fault + l->off_other +
		     l->gpu_blocked + l->gil;
	/* the state machine charges every interval once, so the remainder is
	 * what BPF itself could not classify (t->unattributed_ns) */
	l->unattributed = l->wall > attributed ? l->wall - attributed : 0;
	if (attributed > l->wall)
		l->wall = attributed;	/* never report a ledger that does not close */
	/* the steal clock's lag can reach past the thread's own slices */
	l->steal = t->steal_ns < cm_tl_oncpu(l) ? t->steal_ns : cm_tl_oncpu(l);
	l->vol = t->vol_switches;
	l->invol = t->invol_switches;
	l->migr = t->migrations;
	l->wakeups = t->wakeups;
	l->runq_waits = t->runq_waits;
	l->minflt = t->min_flt > t->min_flt_base ? t->min_flt - t->min_flt_base : 0;
	l->majflt = t->maj_flt > t->maj_flt_base ? t->maj_flt - t->maj_flt_base : 0;
	l->user_faults = t->user_faults;
	l->gpu_syncs = t->gpu_syncs;
	l->gpu_sync_ns = t->gpu_sync_ns;
	memcpy(l->runq_hist, t->runq_hist, sizeof(l->runq_hist));
}

void cm_tl_add(struct cm_tl *a, const struct cm_tl *b)
{
	uint64_t *x = (uint64_t *)a;
	const uint64_t *y = (const uint64_t *)b;

	for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
		x[i] += y[i];
}

/* ---- rows ----------------------------------------------------------------- */

static void sys_stat_add(struct cm_sys_stat *a, const struct cm_sys_stat *b)
{
	a->count += b->count;
	a->errors += b->errors;
	a->total_ns += b->total_ns;
	a->oncpu_ns += b->oncpu_ns;
	a->offcpu_ns += b->offcpu_ns;
	a->iowait_ns += b->iowait_ns;
	if (b->max_ns > a->max_ns)
		a->max_ns = b->max_ns;
	for (int h = 0; h < CM_HIST_SLOTS; h++)
		a->hist[h] += b->hist[h];
}

/* Rows sorted by nr: a binary search, then an insertion. */
static struct cm_sysrow *sys_slot(struct cm_proc *p, uint32_t nr)
{
	size_t lo = 0, hi = p->nsys;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (p->sys[mid].nr < nr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < p->nsys && p->sys[lo].nr == nr)
		return &p->sys[lo];
	if (grow((void **)&p->sys, &p->capsys, p->nsys, sizeof(*p->sys), 16))
		return NULL;
	memmove(&p->sys[lo + 1], &p->sys[lo], (p->nsys - lo) * sizeof(*p->sys));
	p->nsys++;
	memset(&p->sys[lo], 0, sizeof(p->sys[lo]));
	p->sys[lo].nr = nr;
	return &p->sys[lo];
}

const struct cm_sysrow *cm_proc_sys(const struct cm_proc *p, uint32_t nr)
{
	for (size_t i = 0; i < p->nsys; i++)
		if (p->sys[i].nr == nr)
			return &p->sys[i];
	return NULL;
}

static int causes_add(struct cm_cause **c, size_t *n, uint32_t nr, uint64_t offcpu, uint64_t iowait)
{
	struct cm_cause *nc;

	if (!offcpu)
		return 0;
	for (size_t i = 0; i < *n; i++)
		if ((*c)[i].nr == nr) {
			(*c)[i].offcpu += offcpu;
			(*c)[i].iowait += iowait;
			return 0;
		}
	nc = realloc(*c, (*n + 1) * sizeof(**c));
	if (!nc)
		return -1;
	*c = nc;
	nc[*n] = (struct cm_cause){ .nr = nr, .offcpu = offcpu, .iowait = iowait };
	(*n)++;
	return 0;
}

static int blk_add(struct cm_proc *p, uint32_t dev, uint32_t op, const struct cm_blk_stat *st)
{
	struct cm_blkrow *r = NULL;

	for (size_t i = 0; i < p->nblk && !r; i++)
		if (p->blk[i].dev == dev && p->blk[i].op == op)
			r = &p->blk[i];
	if (!r) {
		if (grow((void **)&p->blk, &p->capblk, p->nblk, sizeof(*p->blk), 4))
			return -1;
		r = &p->blk[p->nblk++];
		memset(r, 0, sizeof(*r));
		r->dev = dev;
		r->op = op;
	}
	r->st.submitted += st->submitted;
	r->st.count += st->count;
	r->st.bytes += st->bytes;
	r->st.completed_bytes += st->completed_bytes;
	r->st.total_ns += st->total_ns;
	if (st->max_ns > r->st.max_ns)
		r->st.max_ns = st->max_ns;
	for (int h = 0; h < CM_HIST_SLOTS; h++)
		r->st.hist[h] += st->hist[h];
	return 0;
}

/* ---- thread rows and groups ---------------------------------------------- */

static void trow_free(struct cm_trow *r)
{
	free(r->causes);
	r->causes = NULL;
	r->ncauses = 0;
}

static int trow_merge(struct cm_trow *into, const struct cm_trow *r)
{
	cm_tl_add(&into->l, &r->l);
	if (!into->start_ns || (r->start_ns && r->start_ns < into->start_ns))
		into->start_ns = r->start_ns;
	if (r->end_ns > into->end_ns)
		into->end_ns = r->end_ns;
	for (size_t i = 0; i < r->ncauses; i++)
		if (causes_add(&into->causes, &into->ncauses, r->causes[i].nr, r->causes[i].offcpu,
			       r->causes[i].iowait))
			return -1;
	return 0;
}

/* The folded-thread row of r's comm ("(other)" once a process has many). */
static int fold_thread(struct cm_proc *p, struct cm_trow *r)
{
	struct cm_trow *g = NULL;
	const char *comm = r->comm;

	for (int pass = 0; pass < 2 && !g; pass++) {
		for (size_t i = 0; i < p->ngroups; i++)
			if (!strncmp(p->groups[i].comm, comm, CM_COMM_LEN)) {
				g = &p->groups[i];
				break;
			}
		if (!g && p->ngroups < MAX_GROUPS - 1) {
			if (grow((void **)&p->groups, &p->capgroups, p->ngroups, sizeof(*p->groups), 4))
				return -1;
			g = &p->groups[p->ngroups++];
			memset(g, 0, sizeof(*g));
			memcpy(g->comm, comm, CM_COMM_LEN);
		} else if (!g) {
			comm = "(other)";
			if (pass == 0 && p->ngroups == MAX_GROUPS - 1) {
				if (grow((void **)&p->groups, &p->capgroups, p->ngroups, sizeof(*p->groups), 4))
					return -1;
				g = &p->groups[p->ngroups++];
				memset(g, 0, sizeof(*g));
				strcpy(g->comm, comm);
			}
		}
	}
	if (!g)
		return -1;
	g->tid = 0;
	if (trow_merge(g, r))
		return -1;
	trow_free(r);
	return 0;
}

/* Keeps r as a row of its own while there is room, else folds the lighter
 * of r and the lightest kept row. Takes r's causes. */
static int keep_thread(struct cm_proc *p, struct cm_trow *r, unsigned keep)
{
	size_t light = 0;

	if (p->nthreads < keep) {
		if (grow((void **)&p->threads, &p->capthreads, p->nthreads, sizeof(*p->threads), 8))
			return -1;
		p->threads[p->nthreads++] = *r;
		return 0;
	}
	if (!keep)
		return fold_thread(p, r);
	for (size_t i = 1; i < p->nthreads; i++)
		if (p->threads[i].l.wall < p->threads[light].l.wall)
			light = i;
	if (p->threads[light].l.wall < r->l.wall) {
		struct cm_trow out = p->threads[light];

		p->threads[light] = *r;
		return fold_thread(p, &out);
	}
	return fold_thread(p, r);
}

/* ---- processes ------------------------------------------------------------ */

static size_t slot_of(uint32_t pgen, size_t cap)
{
	return (pgen * 2654435761u) & (cap - 1);
}

static int rehash(struct cm_books *b, size_t cap)
{
	struct cm_proc **n = calloc(cap, sizeof(*n));

	if (!n)
		return -1;
	for (size_t i = 0; i < b->cap; i++) {
		struct cm_proc *p = b->procs[i];
		size_t j;

		if (!p)
			continue;
		for (j = slot_of(p->pgen, cap); n[j]; j = (j + 1) & (cap - 1))
			;
		n[j] = p;
	}
	free(b->procs);
	b->procs = n;
	b->cap = cap;
	return 0;
}

static struct cm_proc *proc_find(const struct cm_books *b, uint32_t pgen)
{
	if (!b->cap)
		return NULL;
	for (size_t j = slot_of(pgen, b->cap); b->procs[j]; j = (j + 1) & (b->cap - 1))
		if (b->procs[j]->pgen == pgen)
			return b->procs[j];
	return NULL;
}

static void proc_free(struct cm_proc *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nthreads; i++)
		trow_free(&p->threads[i]);
	for (size_t i = 0; i < p->ngroups; i++)
		trow_free(&p->groups[i]);
	free(p->threads);
	free(p->groups);
	free(p->sys);
	free(p->blk);
	free(p);
}

static void proc_identity(struct cm_proc *p, const struct cm_thread *t)
{
	p->pgen = t->pgen;
	p->pid = t->pid;
	p->ppid = t->ppid;
	memcpy(p->comm, t->comm, CM_COMM_LEN);
	p->start_ns = t->start_ns;
}

static struct cm_proc *proc_get(struct cm_books *b, const struct cm_thread *t)
{
	struct cm_proc *p = proc_find(b, t->pgen);
	size_t j;

	if (p)
		return p;
	if ((b->n + 1) * 2 > b->cap && rehash(b, b->cap ? b->cap * 2 : 256))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	proc_identity(p, t);
	for (j = slot_of(p->pgen, b->cap); b->procs[j]; j = (j + 1) & (b->cap - 1))
		;
	b->procs[j] = p;
	b->n++;
	return p;
}

/* A thread's rows: into the process's syscall rows and the thread's causes. */
static int add_rows(struct cm_proc *p, struct cm_trow *r, const struct cm_thread *t,
		    const struct cm_sys_key *keys, const struct cm_sys_stat *rows, size_t n)
{
	uint64_t in_rows = 0;

	for (size_t i = 0; i < n; i++) {
		struct cm_sysrow *s = sys_slot(p, keys[i].nr);

		if (!s)
			return -1;
		sys_stat_add(&s->st, &rows[i]);
		in_rows += rows[i].offcpu_ns;
		if (causes_add(&r->causes, &r->ncauses, keys[i].nr, rows[i].offcpu_ns, rows[i].iowait_ns))
			return -1;
	}
	/* time whose row could not be stored (syscall_map_full): its cause is
	 * unknown, but it stays in the ledger */
	if (t->sys_offcpu_ns > in_rows)
		return causes_add(&r->causes, &r->ncauses, UINT32_MAX, t->sys_offcpu_ns - in_rows, 0);
	return 0;
}

static void proc_thread_identity(struct cm_proc *p, const struct cm_thread *t)
{
	if (t->tid == t->pid) {
		p->leader_seen = true;
		p->ppid = t->ppid;
		memcpy(p->comm, t->comm, CM_COMM_LEN);
	} else if (!p->leader_seen) {
		memcpy(p->comm, t->comm, CM_COMM_LEN);
	}
	if (t->start_ns && (!p->start_ns || t->start_ns < p->start_ns))
		p->start_ns = t->start_ns;
}

/* The thread's row, ledger and rows; its interval closed at end. */
static int thread_row(struct cm_proc *p, struct cm_trow *r, struct cm_thread *t,
		      const struct cm_sys_key *keys, const struct cm_sys_stat *rows, size_t n,
		      uint64_t end)
{
	memset(r, 0, sizeof(*r));
	r->tid = t->tid;
	memcpy(r->comm, t->comm, CM_COMM_LEN);
	r->start_ns = t->start_ns;
	r->end_ns = t->end_ns;
	cm_thread_close(t, end);
	cm_tl_from_thread(&r->l, t, end);
	if (add_rows(p, r, t, keys, rows, n)) {
		trow_free(r);
		return -1;
	}
	cm_tl_add(&p->tot, &r->l);
	proc_thread_identity(p, t);
	return 0;
}

int cm_books_retire(struct cm_books *b, struct cm_thread *t, const struct cm_sys_key *keys,
		    const struct cm_sys_stat *rows, size_t n, uint64_t now_ns)
{
	struct cm_trow r;
	struct cm_proc *p;
	uint64_t end;

	if (t->flags & CM_TF_OBSERVER) {
		b->obs_threads++;
		b->obs_oncpu_ns += t->oncpu_user_ns + t->oncpu_sys_ns + t->oncpu_kfault_ns +
				   t->oncpu_kother_ns + t->gpu_spin_ns;
		return 0;
	}
	p = proc_get(b, t);
	if (!p)
		return -1;
	/* a thread whose last switch-out the kernel never reported ends at its exit */
	if (!t->end_ns)
		t->end_ns = t->exit_ts ? t->exit_ts : now_ns;
	end = t->end_ns;
	if (thread_row(p, &r, t, keys, rows, n, end))
		return -1;
	if (end > p->end_ns)
		p->end_ns = end;
	if (t->tid == t->pid && (t->flags & CM_TF_EXITED)) {
		p->leader_exited = true;
		p->exit_code = t->exit_code;
	}
	if ((t->flags & CM_TF_GROUP_DEAD) && !p->group_dead) {
		p->group_dead = true;
		p->dead_seen_ns = now_ns;
	}
	b->threads_retired++;
	if (p->nthreads >= b->keep_threads)
		b->threads_folded++;
	return keep_thread(p, &r, b->keep_threads);
}

int cm_books_blk(struct cm_books *b, const struct cm_blk_key *k, const struct cm_blk_stat *st)
{
	struct cm_proc *p = proc_find(b, k->pgen);

	return p ? blk_add(p, k->dev, k->op, st) : -1;
}

bool cm_books_proc_done(const struct cm_books *b, uint32_t pgen, uint64_t now_ns, uint64_t grace_ns)
{
	const struct cm_proc *p = proc_find(b, pgen);

	return p && p->group_dead && now_ns - p->dead_seen_ns >= grace_ns;
}

/* Adds process q (ended, or a group) into the group g of its comm. */
static int proc_merge(struct cm_proc *g, struct cm_proc *q)
{
	g->folded += q->folded ? q->folded : 1;
	cm_tl_add(&g->tot, &q->tot);
	if (!g->start_ns || (q->start_ns && q->start_ns < g->start_ns))
		g->start_ns = q->start_ns;
	if (q->end_ns > g->end_ns)
		g->end_ns = q->end_ns;
	for (size_t i = 0; i < q->nsys; i++) {
		struct cm_sysrow *s = sys_slot(g, q->sys[i].nr);

		if (!s)
			return -1;
		sys_stat_add(&s->st, &q->sys[i].st);
	}
	for (size_t i = 0; i < q->nblk; i++)
		if (blk_add(g, q->blk[i].dev, q->blk[i].op, &q->blk[i].st))
			return -1;
	/* its threads become rows of the group, by comm */
	for (size_t i = 0; i < q->nthreads; i++)
		if (fold_thread(g, &q->threads[i]))
			return -1;
	q->nthreads = 0;
	for (size_t i = 0; i < q->ngroups; i++)
		if (fold_thread(g, &q->groups[i]))
			return -1;
	q->ngroups = 0;
	return 0;
}

static struct cm_proc *pgroup_of(struct cm_books *b, const char *comm)
{
	struct cm_proc *g;

	for (size_t i = 0; i < b->npgroups; i++)
		if (!strncmp(b->pgroups[i]->comm, comm, CM_COMM_LEN))
			return b->pgroups[i];
	if (grow((void **)&b->pgroups, &b->cappgroups, b->npgroups, sizeof(*b->pgroups), 8))
		return NULL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	memcpy(g->comm, comm, CM_COMM_LEN);
	g->group_dead = g->leader_exited = true;
	b->pgroups[b->npgroups++] = g;
	return g;
}

/* An ended process and its slot in the table. */
struct done_proc {
	struct cm_proc *p;
	size_t slot;
};

static int cmp_wall(const void *a, const void *b)
{
	const struct cm_proc *x = ((const struct done_proc *)a)->p, *y = ((const struct done_proc *)b)->p;

	return x->tot.wall < y->tot.wall ? -1 : x->tot.wall > y->tot.wall;
}

void cm_books_trim(struct cm_books *b, uint64_t now_ns, uint64_t grace_ns)
{
	struct done_proc *done;
	size_t ndone = 0, nfold;

	if (b->n <= (size_t)b->keep_procs + TRIM_SLACK)
		return;
	done = malloc(b->n * sizeof(*done));
	if (!done)
		return;
	for (size_t i = 0; i < b->cap; i++) {
		struct cm_proc *p = b->procs[i];

		if (p && p->group_dead && now_ns - p->dead_seen_ns >= grace_ns)
			done[ndone++] = (struct done_proc){ .p = p, .slot = i };
	}
	if (ndone <= b->keep_procs) {
		free(done);
		return;
	}
	/* the lightest ended processes go: thread-seconds, as the map counts them */
	qsort(done, ndone, sizeof(*done), cmp_wall);
	nfold = ndone - b->keep_procs;
	for (size_t k = 0; k < nfold; k++) {
		struct cm_proc *p = done[k].p, *g = pgroup_of(b, p->comm);

		if (!g || proc_merge(g, p)) {
			nfold = k;	/* out of memory: keep the rest as they are */
			break;
		}
		b->procs[done[k].slot] = NULL;
		proc_free(p);
		b->n--;
		b->procs_folded++;
	}
	free(done);
	/* tombstones would break the probe chains: rebuild */
	rehash(b, b->cap);
}

struct cm_books *cm_books_new(unsigned keep_threads, unsigned keep_procs)
{
	struct cm_books *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->keep_threads = keep_threads;
	b->keep_procs = keep_procs;
	return b;
}

void cm_books_free(struct cm_books *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->cap; i++)
		proc_free(b->procs[i]);
	for (size_t i = 0; i < b->npgroups; i++)
		proc_free(b->pgroups[i]);
	free(b->procs);
	free(b->pgroups);
	free(b);
}

/* ---- views ---------------------------------------------------------------- */

static struct cm_proc *proc_copy(const struct cm_proc *p)
{
	struct cm_proc *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	*c = *p;
	c->sys = NULL;
	c->threads = c->groups = NULL;
	c->blk = NULL;
	c->nsys = c->capsys = c->nthreads = c->capthreads = c->ngroups = c->capgroups = 0;
	c->nblk = c->capblk = 0;
	if (p->nsys && !(c->sys = malloc(p->nsys * sizeof(*c->sys))))
		goto fail;
	memcpy(c->sys, p->sys, p->nsys * sizeof(*c->sys));
	c->nsys = c->capsys = p->nsys;
	if (p->nblk && !(c->blk = malloc(p->nblk * sizeof(*c->blk))))
		goto fail;
	memcpy(c->blk, p->blk, p->nblk * sizeof(*c->blk));
	c->nblk = c->capblk = p->nblk;
	for (int pass = 0; pass < 2; pass++) {
		const struct cm_trow *src = pass ? p->groups : p->threads;
		size_t n = pass ? p->ngroups : p->nthreads;
		struct cm_trow **dst = pass ? &c->groups : &c->threads;
		size_t *dn = pass ? &c->ngroups : &c->nthreads, *dc = pass ? &c->capgroups : &c->capthreads;

		if (!n)
			continue;
		*dst = calloc(n, sizeof(**dst));
		if (!*dst)
			goto fail;
		*dc = n;
		for (size_t i = 0; i < n; i++) {
			(*dst)[i] = src[i];
			(*dst)[i].causes = NULL;
			(*dst)[i].ncauses = 0;
			(*dn)++;
			if (src[i].ncauses) {
				(*dst)[i].causes = malloc(src[i].ncauses * sizeof(*src[i].causes));
				if (!(*dst)[i].causes)
					goto fail;
				memcpy((*dst)[i].causes, src[i].causes, src[i].ncauses * sizeof(*src[i].causes));
				(*dst)[i].ncauses = src[i].ncauses;
			}
		}
	}
	return c;
fail:
	proc_free(c);
	return NULL;
}

static int cmp_sys_gen(const void *a, const void *b, void *ctx)
{
	const struct cm_sys_key *k = ctx;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return k[x].gen < k[y].gen ? -1 : k[x].gen > k[y].gen;
}

static int cmp_thread_pgen(const void *a, const void *b, void *ctx)
{
	const struct cm_thread *t = ctx;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	if (t[x].pgen != t[y].pgen)
		return t[x].pgen < t[y].pgen ? -1 : 1;
	return t[x].tid < t[y].tid ? -1 : t[x].tid > t[y].tid;
}

static int cmp_proc_pgen(const void *a, const void *b)
{
	const struct cm_proc *x = *(const struct cm_proc *const *)a, *y = *(const struct cm_proc *const *)b;

	return x->pgen < y->pgen ? -1 : x->pgen > y->pgen;
}

static int cmp_proc_pid(const void *a, const void *b)
{
	const struct cm_proc *x = *(const struct cm_proc *const *)a, *y = *(const struct cm_proc *const *)b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->pgen < y->pgen ? -1 : x->pgen > y->pgen;
}

/* The view's own copy of process pgen (made on first use). */
static struct cm_proc *owned(struct cm_view *v, const struct cm_books *b, const struct cm_thread *t,
			     uint32_t pgen)
{
	const struct cm_proc *base = proc_find(b, pgen);
	struct cm_proc *c, **n;

	/* live threads come sorted by pgen: the last copy is the usual hit */
	if (v->nowned && v->owned[v->nowned - 1]->pgen == pgen)
		return v->owned[v->nowned - 1];
	for (size_t i = 0; !t && i < v->nowned; i++)
		if (v->owned[i]->pgen == pgen)
			return v->owned[i];
	if (base) {
		c = proc_copy(base);
	} else {
		if (!t)
			return NULL;	/* a row of a process neither live nor in the books */
		c = calloc(1, sizeof(*c));
		if (c)
			proc_identity(c, t);
	}
	if (!c)
		return NULL;
	n = realloc(v->owned, (v->nowned + 1) * sizeof(*n));
	if (!n) {
		proc_free(c);
		return NULL;
	}
	v->owned = n;
	v->owned[v->nowned++] = c;
	return c;
}

/* A live thread's syscall rows, with the call in flight (its time so far,
 * not the call) in the row of its syscall. */
static int live_rows(struct cm_thread *t, const struct cm_snapshot *s, const size_t *order,
		     size_t lo, size_t hi, struct cm_sys_key **keys, struct cm_sys_stat **rows, size_t *n)
{
	bool inflight = t->sc_nr1 && !t->end_ns;
	uint32_t inr = inflight ? t->sc_nr1 - 1 : 0;
	bool found = false;

	*n = 0;
	*keys = malloc((hi - lo + 1) * sizeof(**keys));
	*rows = malloc((hi - lo + 1) * sizeof(**rows));
	if (!*keys || !*rows)
		return -1;
	if (inflight && cm_sys_used_bit(inr) == CM_SYS_USED_OTHER)
		inr = CM_SYS_USED_OTHER;
	for (size_t i = lo; i < hi; i++) {
		size_t k = order[i];

		(*keys)[*n] = s->sys_keys[k];
		(*rows)[*n] = s->sys_stats[k];
		if (inflight && s->sys_keys[k].nr == inr) {
			(*rows)[*n].oncpu_ns += t->sc_oncpu;
			(*rows)[*n].offcpu_ns += t->sc_offcpu;
			(*rows)[*n].iowait_ns += t->sc_iowait;
			found = true;
		}
		(*n)++;
	}
	if (inflight && !found) {
		(*keys)[*n] = (struct cm_sys_key){ .gen = t->gen, .nr = inr };
		memset(&(*rows)[*n], 0, sizeof(**rows));
		(*rows)[*n].oncpu_ns = t->sc_oncpu;
		(*rows)[*n].offcpu_ns = t->sc_offcpu;
		(*rows)[*n].iowait_ns = t->sc_iowait;
		(*n)++;
	}
	return 0;
}

int cm_view_build(struct cm_view *v, const struct cm_books *b, struct cm_snapshot *s, uint64_t end_ns)
{
	size_t *torder = NULL, *sorder = NULL;
	int rc = -1;

	memset(v, 0, sizeof(*v));
	v->books = b;
	torder = malloc((s->nthreads + 1) * sizeof(*torder));
	sorder = malloc((s->nsys + 1) * sizeof(*sorder));
	if (!torder || !sorder)
		goto out;
	for (size_t i = 0; i < s->nthreads; i++)
		torder[i] = i;
	for (size_t i = 0; i < s->nsys; i++)
		sorder[i] = i;
	qsort_r(torder, s->nthreads, sizeof(*torder), cmp_thread_pgen, s->threads);
	qsort_r(sorder, s->nsys, sizeof(*sorder), cmp_sys_gen, s->sys_keys);

	for (size_t i = 0; i < s->nthreads; i++) {
		struct cm_thread *t = &s->threads[torder[i]];
		struct cm_sys_key *keys = NULL;
		struct cm_sys_stat *rows = NULL;
		size_t lo = 0, hi = s->nsys, n = 0;
		struct cm_proc *p;
		struct cm_trow r;
		int err;

		if (t->flags & CM_TF_OBSERVER)
			continue;
		/* its rows: the run of sorder with its gen */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (s->sys_keys[sorder[mid]].gen < t->gen)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (hi = lo; hi < s->nsys && s->sys_keys[sorder[hi]].gen == t->gen; hi++)
			;
		p = owned(v, b, t, t->pgen);
		if (!p)
			goto out;
		err = live_rows(t, s, sorder, lo, hi, &keys, &rows, &n) ||
		      thread_row(p, &r, t, keys, rows, n, end_ns);
		free(keys);
		free(rows);
		if (err)
			goto out;
		if (t->end_ns) {
			/* ended, record not yet folded (it waits in the map) */
			if (t->end_ns > p->end_ns)
				p->end_ns = t->end_ns;
			if (t->tid == t->pid && (t->flags & CM_TF_EXITED)) {
				p->leader_exited = true;
				p->exit_code = t->exit_code;
			}
			if (t->flags & CM_TF_GROUP_DEAD)
				p->group_dead = true;
		} else {
			p->live++;
		}
		/* live threads are always rows of their own */
		if (grow((void **)&p->threads, &p->capthreads, p->nthreads, sizeof(*p->threads), 8)) {
			trow_free(&r);
			goto out;
		}
		p->threads[p->nthreads++] = r;
	}
	/* block rows still in the map */
	for (size_t k = 0; k < s->nblk; k++) {
		struct cm_proc *p = owned(v, b, NULL, s->blk_keys[k].pgen);

		if (p && blk_add(p, s->blk_keys[k].dev, s->blk_keys[k].op, &s->blk_stats[k]))
			goto out;
	}
	/* every process: the books' own, or the view's copy with live threads */
	v->procs = malloc((b->n + v->nowned + 1) * sizeof(*v->procs));
	if (!v->procs)
		goto out;
	qsort(v->owned, v->nowned, sizeof(*v->owned), cmp_proc_pgen);
	for (size_t i = 0; i < v->nowned; i++)
		v->procs[v->nprocs++] = v->owned[i];
	for (size_t i = 0; i < b->cap; i++) {
		const struct cm_proc *p = b->procs[i];

		if (p && !bsearch(&p, v->owned, v->nowned, sizeof(*v->owned), cmp_proc_pgen))
			v->procs[v->nprocs++] = p;
	}
	qsort(v->procs, v->nprocs, sizeof(*v->procs), cmp_proc_pid);
	rc = 0;
out:
	free(torder);
	free(sorder);
	if (rc)
		cm_view_free(v);
	return rc;
}

void cm_view_free(struct cm_view *v)
{
	for (size_t i = 0; i < v->nowned; i++)
		proc_free(v->owned[i]);
	free(v->owned);
	free(v->procs);
	memset(v, 0, sizeof(*v));
}
