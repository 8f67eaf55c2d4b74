// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Wake-ups and the critical path (critpath.h).
 *
 * A thread's history is its switch-in records in order. Between two records
 * it was on a CPU the whole time (an on-CPU stretch: the difference of the
 * records' cumulative vectors says how that time split by subsystem); each
 * record holds the off-CPU stretch that ended at its switch-in: blocked by a
 * cause from off_start to the wake-up, then runnable. A walk over [a, b]
 * books on-CPU stretches by their split (proportionally where the interval
 * cuts one), runnable time as run queue, and a blocked stretch either by its
 * cause (the leaf) or, when a traced thread woke it, as a walk of the waker
 * over the same time: the waker was what the sleeper waited for.
 *
 * Histories are kept only as far back as someone may still ask (the main
 * thread's walk, open requests), at most HORIZON_NS.
 */
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "critpath.h"
#include "books.h"

#define MAX_DEPTH 16			/* waker chains followed this deep */
#define HORIZON_NS (30ULL * 1000000000ULL)
#define MAX_RECORDS (1u << 20)		/* about 180 MiB: then history is trimmed sooner */
#define TRIM_EVERY_NS 1000000000ULL

struct rec {
	uint64_t off_start, wake, off_end;
	uint32_t state, cause, nr, waker, flags;
	uint64_t vec[CM_SS_SLOTS];
};

struct hist {
	uint32_t gen, tid, pid;
	bool started;			/* its first switch-in record came (t0, vec0 set) */
	uint64_t t0;			/* the history starts here, on a CPU, with vec0 */
	uint64_t vec0[CM_SS_SLOTS];
	struct rec *r;
	size_t n, cap;
	bool ended;
	uint64_t end_ns;
	uint64_t vec_end[CM_SS_SLOTS];
};

struct cm_critpath {
	struct hist **tab;		/* open addressing by gen, cap a power of two */
	size_t cap, n;
	size_t nrecs;
	uint64_t last_trim;
	uint64_t trimmed_to;		/* no history before this is kept */
	uint64_t trimmed_early;		/* times the record cap cut the horizon short */
	/* the wrapped command's main thread */
	uint32_t main_tid, main_gen;
	bool main_set, main_found;
	uint64_t main_start, main_cursor;	/* walked up to main_cursor */
	size_t main_next;			/* its next record to walk */
	struct cm_cp_acc main_acc;
};

/* ---- accumulators --------------------------------------------------------- */

static void rows_add(struct cm_cp_acc *acc, uint32_t tid, uint32_t ss, uint64_t ns)
{
	for (size_t i = 0; i < acc->nrows; i++)
		if (acc->rows[i].tid == tid && acc->rows[i].ss == ss) {
			acc->rows[i].ns += ns;
			return;
		}
	if (acc->nrows == acc->caprows) {
		size_t nc = acc->caprows ? acc->caprows * 2 : 8;
		struct cm_cp_row *n = realloc(acc->rows, nc * sizeof(*n));

		if (!n)
			return;	/* the detail is short; the totals stay right */
		acc->rows = n;
		acc->caprows = nc;
	}
	acc->rows[acc->nrows++] = (struct cm_cp_row){ .tid = tid, .ss = ss, .ns = ns };
}

static void acc_add(struct cm_cp_acc *acc, uint32_t tid, uint32_t ss, uint64_t ns)
{
	if (!ns)
		return;
	if (ss >= CM_SS_SLOTS)
		ss = CM_SS_OTHER;
	acc->ss[ss] += ns;
	if (acc->detail)
		rows_add(acc, tid, ss, ns);
}

void cm_cp_acc_free(struct cm_cp_acc *acc)
{
	free(acc->rows);
	memset(acc, 0, sizeof(*acc));
}

void cm_cp_acc_add(struct cm_cp_acc *a, const struct cm_cp_acc *b)
{
	for (int i = 0; i < CM_SS_SLOTS; i++)
		a->ss[i] += b->ss[i];
	a->truncated_ns += b->truncated_ns;
	if (a->detail)
		for (size_t i = 0; i < b->nrows; i++)
			rows_add(a, b->rows[i].tid, b->rows[i].ss, b->rows[i].ns);
}

/* ---- histories ------------------------------------------------------------ */

static size_t slot(uint32_t gen, size_t cap)
{
	return (gen * 2654435761u) & (cap - 1);
}

static struct hist *find(const struct cm_critpath *cp, uint32_t gen)
{
	if (!cp->cap || !gen)
		return NULL;
	for (size_t j = slot(gen, cp->cap); cp->tab[j]; j = (j + 1) & (cp->cap - 1))
		if (cp->tab[j]->gen == gen)
			return cp->tab[j];
	return NULL;
}

static int rehash(struct cm_critpath *cp, size_t cap)
{
	struct hist **n = calloc(cap, sizeof(*n));

	if (!n)
		return -1;
	for (size_t i = 0; i < cp->cap; i++) {
		size_t j;

		if (!cp->tab[i])
			continue;
		for (j = slot(cp->tab[i]->gen, cap); n[j]; j = (j + 1) & (cap - 1))
			;
		n[j] = cp->tab[i];
	}
	free(cp->tab);
	cp->tab = n;
	cp->cap = cap;
	return 0;
}

static struct hist *get(struct cm_critpath *cp, uint32_t gen)
{
	struct hist *h = find(cp, gen);
	size_t j;

	if (h)
		return h;
	if ((cp->n + 1) * 2 > cp->cap && rehash(cp, cp->cap ? cp->cap * 2 : 1024))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->gen = gen;
	for (j = slot(gen, cp->cap); cp->tab[j]; j = (j + 1) & (cp->cap - 1))
		;
	cp->tab[j] = h;
	cp->n++;
	return h;
}

static uint64_t vsum(const __u64 *v)
{
	uint64_t s = 0;

	for (int i = 0; i < CM_SS_SLOTS; i++)
		s += v[i];
	return s;
}

void cm_critpath_switch_in(struct cm_critpath *cp, const struct cm_cp_event *e)
{
	struct hist *h;
	struct rec *r;

	/* a record of time already trimmed (its thread's history, ended, may be
	 * gone): no one needs it, and it must not start a history again */
	if (e->ts < cp->trimmed_to)
		return;
	/* a record may come after its thread's exit record (another ring,
	 * read first): it still belongs to the history, which the exit record
	 * started, ended */
	h = get(cp, e->gen);
	if (!h)
		return;
	if (!h->started) {
		h->started = true;
		/* before its first record it ran (seeded while running) for as long
		 * as its on-CPU time says, or not at all (new: runnable from fork) */
		h->tid = e->tid;
		h->pid = e->pid;
		h->t0 = e->off_start - vsum(e->vec);
		if (cp->main_set && !cp->main_found && e->tid == cp->main_tid) {
			cp->main_found = true;
			cp->main_gen = e->gen;
			cp->main_start = cp->main_cursor = h->t0;
		}
	}
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 4;
		struct rec *n = realloc(h->r, nc * sizeof(*n));

		if (!n)
			return;
		h->r = n;
		h->cap = nc;
	}
	r = &h->r[h->n++];
	r->off_start = e->off_start;
	r->wake = e->wake_ts;
	r->off_end = e->ts;
	r->state = e->state;
	r->cause = e->cause;
	r->nr = e->nr;
	r->waker = e->waker_gen;
	r->flags = e->flags;
	memcpy(r->vec, e->vec, sizeof(r->vec));
	cp->nrecs++;
}

void cm_critpath_thread_end(struct cm_critpath *cp, const struct cm_thread *t)
{
	uint64_t end = t->end_ns ? t->end_ns : t->exit_ts;
	struct hist *h;

	if (end < cp->trimmed_to)
		return;
	/* its switch-in records may still be on their way (the exit record
	 * comes through another ring): the history is made here, ended, and
	 * they join it; trimming frees it in the end either way */
	h = get(cp, t->gen);
	if (!h)
		return;
	h->tid = t->tid;
	h->pid = t->pid;
	h->ended = true;
	h->end_ns = end;
	memcpy(h->vec_end, t->oncpu_ss, sizeof(h->vec_end));
}

void cm_critpath_set_main(struct cm_critpath *cp, uint32_t tid)
{
	cp->main_set = true;
	cp->main_tid = tid;
}

/* How far the history is known: to its end, or to its last switch-in. */
static uint64_t covered(const struct hist *h)
{
	if (h->ended)
		return h->end_ns;
	return h->n ? h->r[h->n - 1].off_end : h->t0;
}

/* ---- walks ---------------------------------------------------------------- */

/* The subsystem of a blocked stretch booked as itself. */
static uint32_t leaf_of(const struct rec *r)
{
	if (r->state == CM_UNKNOWN)
		return CM_SS_UNATTRIBUTED;
	if (r->flags & CM_CP_IOWAIT)
		return CM_SS_BLOCK_IO;
	switch (r->cause) {
	case CM_CAUSE_SYSCALL:
		return cm_syscall_group(r->nr);
	case CM_CAUSE_FAULT:
		return CM_SS_MEMORY;
	case CM_CAUSE_GPU_SYNC:
		return CM_SS_GPU;
	case CM_CAUSE_GIL:
		return CM_SS_GIL;
	default:
		return CM_SS_OTHER;
	}
}

static uint64_t ovl(uint64_t a, uint64_t b, uint64_t p0, uint64_t p1)
{
	uint64_t lo = a > p0 ? a : p0, hi = b < p1 ? b : p1;

	return hi > lo ? hi - lo : 0;
}

/* An on-CPU stretch [p0, p1] with cumulative vectors v0 -> v1, the part in [a, b]. */
static void on_piece(struct cm_cp_acc *acc, uint32_t tid, uint64_t a, uint64_t b, uint64_t p0,
		     uint64_t p1, const uint64_t *v0, const uint64_t *v1)
{
	uint64_t o = ovl(a, b, p0, p1), len = p1 - p0, booked = 0, d[CM_SS_SLOTS], tot = 0;
	int big = 0;

	if (!o)
		return;
	for (int i = 0; i < CM_SS_SLOTS; i++) {
		d[i] = v1[i] > v0[i] ? v1[i] - v0[i] : 0;
		tot += d[i];
		if (d[i] > d[big])
			big = i;
	}
	if (!tot) {
		acc_add(acc, tid, CM_SS_CPU_USER, o);	/* a stretch with no time charged yet */
		return;
	}
	/* the cut's length exactly, split as the stretch was */
	for (int i = 0; i < CM_SS_SLOTS; i++) {
		uint64_t part = (uint64_t)((long double)d[i] * o / (len ? len : tot));

		if (i != big) {
			acc_add(acc, tid, i, part);
			booked += part;
		}
	}
	acc_add(acc, tid, big, o > booked ? o - booked : 0);
}

static int walk(struct cm_critpath *cp, const struct hist *h, uint64_t a, uint64_t b, int depth,
		bool recursive, bool with_on, bool force, uint32_t leaf, struct cm_cp_acc *acc);

/* An off-CPU stretch, the part in [a, b]. */
static int off_piece(struct cm_critpath *cp, const struct hist *h, const struct rec *r, uint64_t a,
		     uint64_t b, int depth, bool recursive, bool force, struct cm_cp_acc *acc)
{
	uint64_t bend = r->off_start, o;

	if (r->state == CM_BLOCKED || (r->state == CM_UNKNOWN && r->wake))
		bend = r->wake ? r->wake : r->off_end;
	/* runnable: after the wake-up, or all along */
	acc_add(acc, h->tid, CM_SS_RUNQ, ovl(a, b, bend, r->off_end));
	o = ovl(a, b, r->off_start, bend);
	if (!o)
		return 0;
	if (recursive && r->waker && r->waker != h->gen && depth < MAX_DEPTH) {
		const struct hist *w = find(cp, r->waker);

		if (w && w->started) {
			uint64_t lo = a > r->off_start ? a : r->off_start, hi = b < bend ? b : bend;

			return walk(cp, w, lo, hi, depth + 1, true, true, force, leaf_of(r), acc);
		}
	}
	acc_add(acc, h->tid, leaf_of(r), o);
	return 0;
}

/* Books [a, b] of h into acc; `leaf` takes what its history does not hold.
 * 1: the history does not reach b yet (and not force). */
static int walk(struct cm_critpath *cp, const struct hist *h, uint64_t a, uint64_t b, int depth,
		bool recursive, bool with_on, bool force, uint32_t leaf, struct cm_cp_acc *acc)
{
	uint64_t cov = covered(h), prev_end = h->t0;
	const uint64_t *prev_vec = h->vec0;
	size_t lo = 0, hi = h->n;

	if (a >= b)
		return 0;
	if (b > cov && !h->ended && !force)
		return 1;
	/* before its history (trimmed, or the thread did not exist yet) */
	if (a < h->t0) {
		uint64_t gap = (b < h->t0 ? b : h->t0) - a;

		acc_add(acc, h->tid, leaf, gap);
		acc->truncated_ns += gap;
		a += gap;
	}
	/* after it: not yet known (forced), or gone */
	if (b > cov) {
		uint64_t from = a > cov ? a : cov;

		acc_add(acc, h->tid, leaf, b - from);
		acc->truncated_ns += b - from;
		b = from;
	}
	if (a >= b)
		return 0;
	/* the first record whose stretch ends after a */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (h->r[mid].off_end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo) {
		prev_end = h->r[lo - 1].off_end;
		prev_vec = h->r[lo - 1].vec;
	}
	for (size_t k = lo; k <= h->n; k++) {
		const struct rec *r = k < h->n ? &h->r[k] : NULL;
		uint64_t p1 = r ? r->off_start : (h->ended ? h->end_ns : cov);
		const uint64_t *v1 = r ? r->vec : h->vec_end;

		if (prev_end >= b)
			break;
		if (with_on && (r || h->ended))
			on_piece(acc, h->tid, a, b, prev_end, p1, prev_vec, v1);
		if (!r)
			break;
		if (r->off_start >= b)
			break;
		if (off_piece(cp, h, r, a, b, depth, recursive, force, acc))
			return 1;
		prev_end = r->off_end;
		prev_vec = r->vec;
	}
	return 0;
}

static int top_walk(struct cm_critpath *cp, uint32_t gen, uint64_t b, uint64_t e, const uint64_t *vb,
		    const uint64_t *ve, bool force, bool recursive, struct cm_cp_acc *acc)
{
	const struct hist *h = find(cp, gen);
	struct cm_cp_acc tmp = { .detail = acc->detail };
	int rc;

	if (h && !h->started)	/* ended with no switch-in record (yet) */
		h = NULL;
	if (!h) {
		if (!force)
			return 1;
		acc_add(acc, 0, CM_SS_UNATTRIBUTED, e - b);
		acc->truncated_ns += e - b;
		return 0;
	}
	/* exact on-CPU split from the markers' vectors; the walk adds the rest */
	if (vb && ve)
		for (int i = 0; i < CM_SS_SLOTS; i++)
			acc_add(&tmp, h->tid, i, ve[i] > vb[i] ? ve[i] - vb[i] : 0);
	/* into a scratch accumulator: a walk that must wait leaves acc as it was */
	rc = walk(cp, h, b, e, 0, recursive, !(vb && ve), force, CM_SS_UNATTRIBUTED, &tmp);
	if (!rc)
		cm_cp_acc_add(acc, &tmp);
	cm_cp_acc_free(&tmp);
	return rc;
}

int cm_critpath_walk(struct cm_critpath *cp, uint32_t gen, uint64_t b, uint64_t e,
		     const uint64_t *vb, const uint64_t *ve, bool force, struct cm_cp_acc *acc)
{
	return top_walk(cp, gen, b, e, vb, ve, force, true, acc);
}

int cm_critpath_own(struct cm_critpath *cp, uint32_t gen, uint64_t b, uint64_t e,
		    const uint64_t *vb, const uint64_t *ve, bool force, struct cm_cp_acc *acc)
{
	return top_walk(cp, gen, b, e, vb, ve, force, false, acc);
}

/* ---- the main thread, and trimming ----------------------------------------- */

/* Walks the main thread's history on, stretch by stretch, as far as every
 * history it needs reaches. */
static void advance_main(struct cm_critpath *cp, bool force)
{
	const struct hist *h;

	if (!cp->main_found || !(h = find(cp, cp->main_gen)))
		return;
	while (cp->main_next < h->n) {
		const struct rec *r = &h->r[cp->main_next];
		struct cm_cp_acc tmp = { 0 };

		/* its on-CPU stretch up to this record, then the record's off-CPU one */
		if (walk(cp, h, cp->main_cursor, r->off_end, 0, true, true, force, CM_SS_UNATTRIBUTED,
			 &tmp))
			return;
		for (int i = 0; i < CM_SS_SLOTS; i++)
			cp->main_acc.ss[i] += tmp.ss[i];
		cp->main_acc.truncated_ns += tmp.truncated_ns;
		cp->main_cursor = r->off_end;
		cp->main_next++;
	}
}

static void trim(struct cm_critpath *cp, uint64_t keep)
{
	for (size_t i = 0; i < cp->cap; i++) {
		struct hist *h = cp->tab[i];
		size_t k = 0;

		if (!h)
			continue;
		if (h->ended && h->end_ns < keep && h->gen != cp->main_gen) {
			cp->nrecs -= h->n;
			free(h->r);
			free(h);
			cp->tab[i] = NULL;
			cp->n--;
			continue;
		}
		while (k < h->n && h->r[k].off_end < keep)
			k++;
		if (!k)
			continue;
		h->t0 = h->r[k - 1].off_end;
		memcpy(h->vec0, h->r[k - 1].vec, sizeof(h->vec0));
		memmove(h->r, h->r + k, (h->n - k) * sizeof(*h->r));
		h->n -= k;
		cp->nrecs -= k;
		if (h->gen == cp->main_gen)
			cp->main_next = cp->main_next > k ? cp->main_next - k : 0;
		/* an idle thread holds no room for the records it had */
		if (h->n * 4 < h->cap && h->cap > 4) {
			size_t nc = h->n > 4 ? h->n : 4;
			struct rec *n = realloc(h->r, nc * sizeof(*n));

			if (n) {
				h->r = n;
				h->cap = nc;
			}
		}
	}
	if (keep > cp->trimmed_to)
		cp->trimmed_to = keep;
	rehash(cp, cp->cap);	/* removals break the probe chains */
}

void cm_critpath_poll(struct cm_critpath *cp, uint64_t now, uint64_t keep_from)
{
	uint64_t keep = keep_from;

	advance_main(cp, false);
	if (now - cp->last_trim < TRIM_EVERY_NS && cp->nrecs < MAX_RECORDS)
		return;
	cp->last_trim = now;
	if (cp->main_found && cp->main_cursor < keep)
		keep = cp->main_cursor;
	if (now > HORIZON_NS && keep < now - HORIZON_NS)
		keep = now - HORIZON_NS;
	if (cp->nrecs >= MAX_RECORDS) {
		/* too much history held: the last few seconds only */
		cp->trimmed_early++;
		if (keep < now - HORIZON_NS / 6)
			keep = now - HORIZON_NS / 6;
	}
	/* the main thread's walk cannot wait on history that is going */
	if (cp->main_found && cp->main_cursor < keep)
		advance_main(cp, true);
	trim(cp, keep);
}

json_object *cm_cp_rows_json(const struct cm_cp_acc *acc)
{
	json_object *a = json_object_new_array();
	uint64_t tot = 0;
	int order[CM_SS_SLOTS], n = 0;

	for (int i = 0; i < CM_SS_COUNT; i++)
		tot += acc->ss[i];
	for (int i = 0; i < CM_SS_COUNT; i++)
		if (acc->ss[i])
			order[n++] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && acc->ss[order[j]] > acc->ss[order[j - 1]]; j--) {
			int x = order[j];

			order[j] = order[j - 1];
			order[j - 1] = x;
		}
	for (int k = 0; k < n; k++) {
		int i = order[k];
		json_object *r = json_object_new_object();

		json_object_object_add(r, "subsystem", json_object_new_string(cm_subsys_key(i)));
		json_object_object_add(r, "label", json_object_new_string(cm_subsys_label(i)));
		json_object_object_add(r, "time_ns", json_object_new_int64((int64_t)acc->ss[i]));
		json_object_object_add(r, "share", json_object_new_double(tot ? (double)acc->ss[i] / tot : 0));
		json_object_object_add(r, "count", json_object_new_int64(0));
		json_object_array_add(a, r);
	}
	return a;
}

void cm_critpath_finish(struct cm_critpath *cp, const struct cm_thread *live, size_t nlive,
			uint64_t end_ns)
{
	/* the last stretch of each thread still in the maps: to its end, or,
	 * alive, to the window's end (the snapshot's threads are closed there) */
	for (size_t i = 0; cp && i < nlive; i++) {
		struct hist *h = find(cp, live[i].gen);
		struct cm_thread t;

		if (!h || h->ended)
			continue;
		t = live[i];
		cm_thread_close(&t, end_ns);
		h->ended = true;
		h->end_ns = t.end_ns ? t.end_ns : end_ns;
		memcpy(h->vec_end, t.oncpu_ss, sizeof(h->vec_end));
	}
}

json_object *cm_critpath_json(struct cm_critpath *cp)
{
	struct hist *h;
	json_object *o;
	struct cm_cp_acc acc;
	uint64_t end;

	if (!cp || !cp->main_found || !(h = find(cp, cp->main_gen)))
		return NULL;
	advance_main(cp, true);
	acc = cp->main_acc;
	end = h->ended ? h->end_ns : covered(h);
	walk(cp, h, cp->main_cursor, end, 0, true, true, true, CM_SS_UNATTRIBUTED, &acc);
	o = json_object_new_object();
	json_object_object_add(o, "tid", json_object_new_int64(h->tid));
	json_object_object_add(o, "pid", json_object_new_int64(h->pid));
	json_object_object_add(o, "start_ns", json_object_new_int64((int64_t)cp->main_start));
	json_object_object_add(o, "end_ns", json_object_new_int64((int64_t)end));
	json_object_object_add(o, "truncated_ns", json_object_new_int64((int64_t)acc.truncated_ns));
	json_object_object_add(o, "contact_map", cm_cp_rows_json(&acc));
	return o;
}

struct cm_critpath *cm_critpath_new(void)
{
	return calloc(1, sizeof(struct cm_critpath));
}

void cm_critpath_free(struct cm_critpath *cp)
{
	if (!cp)
		return;
	for (size_t i = 0; i < cp->cap; i++)
		if (cp->tab[i]) {
			free(cp->tab[i]->r);
			free(cp->tab[i]);
		}
	free(cp->tab);
	cm_cp_acc_free(&cp->main_acc);
	free(cp);
}
