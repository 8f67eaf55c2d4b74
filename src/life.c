// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Thread life: the exit records of traced threads (bpf/common.bpf.h retire())
 * go into the books, with the syscall rows each thread leaves in the map,
 * which are drained here as the record arrives; block rows of ended
 * processes are drained, and the books trimmed, once a second. So the BPF
 * tables hold the live set only, at any churn.
 *
 * An exit record the ring had no room for stays in the threads map, marked
 * dead, as does a thread whose last switch-out the kernel never reported:
 * a sweep of the map collects both (late, not lost).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "life.h"
#include "books.h"
#include "contactmap.skel.h"

/* A process's last records arrive within microseconds of its group-dead
 * one; block requests complete within a second of it. */
#define GRACE_NS 1000000000ULL
#define SWEEP_NS 1000000000ULL
/* an exited thread with no final switch-out after this long never had one */
#define NO_FINAL_SWITCH_NS 1000000000ULL

struct cm_life {
	struct cm_books *books;
	int threads_fd, sys_fd, blk_fd;
	uint32_t *pending;	/* processes whose block rows wait to be drained */
	size_t npending, cappending;
	uint64_t last_sweep_ns;
	uint64_t swept;		/* records collected from the map, not the ring */
	uint64_t no_final_switch;
	uint64_t drain_errors;
	bool lookup_and_delete;	/* the kernel has it for hash maps (5.14) */
	/* told of every ended thread (the timeline, the critical path) */
	struct { cm_life_exit_fn fn; void *ctx; } on_exit[4];
	int non_exit;
};

int cm_life_on_exit(struct cm_tracer *tr, cm_life_exit_fn fn, void *ctx)
{
	struct cm_life *lf = tr->life;

	if (!lf || lf->non_exit == (int)(sizeof(lf->on_exit) / sizeof(lf->on_exit[0])))
		return -1;
	lf->on_exit[lf->non_exit].fn = fn;
	lf->on_exit[lf->non_exit++].ctx = ctx;
	return 0;
}

static int take(int fd, const void *key, void *val, bool *combined)
{
	if (*combined) {
		if (!bpf_map_lookup_and_delete_elem(fd, key, val))
			return 0;
		if (errno == ENOENT)
			return -1;
		*combined = false;	/* EINVAL/ENOTSUPP: an older kernel */
	}
	if (bpf_map_lookup_elem(fd, key, val))
		return -1;
	bpf_map_delete_elem(fd, key);
	return 0;
}

/* The thread's rows, by its sc_used bits; taken out of the map. */
static int drain_rows(struct cm_life *lf, const struct cm_thread *t, struct cm_sys_key **keys,
		      struct cm_sys_stat **rows, size_t *n)
{
	size_t cap = 0;

	*n = 0;
	*keys = NULL;
	*rows = NULL;
	for (unsigned w = 0; w < CM_SYS_USED_WORDS; w++)
		cap += (size_t)__builtin_popcountll(t->sc_used[w]);
	if (!cap)
		return 0;
	*keys = malloc(cap * sizeof(**keys));
	*rows = malloc(cap * sizeof(**rows));
	if (!*keys || !*rows)
		return -1;
	for (unsigned bit = 0; bit < CM_SYS_USED_WORDS * 64; bit++) {
		struct cm_sys_key k = { .gen = t->gen,
					.nr = bit == CM_SYS_USED_GPU ? CM_SYS_GPU_IOCTL : bit };

		if (!(t->sc_used[bit / 64] & (1ULL << (bit % 64))))
			continue;
		if (take(lf->sys_fd, &k, &(*rows)[*n], &lf->lookup_and_delete)) {
			lf->drain_errors++;
			continue;
		}
		(*keys)[(*n)++] = k;
	}
	return 0;
}

static void retire(struct cm_life *lf, struct cm_thread *t)
{
	struct cm_sys_key *keys;
	struct cm_sys_stat *rows;
	size_t n;

	for (int i = 0; i < lf->non_exit; i++)
		lf->on_exit[i].fn(lf->on_exit[i].ctx, t);
	if (drain_rows(lf, t, &keys, &rows, &n) ||
	    cm_books_retire(lf->books, t, keys, rows, n, cm_now_ns()))
		lf->drain_errors++;
	if ((t->flags & CM_TF_GROUP_DEAD) &&
	    !(lf->npending && lf->pending[lf->npending - 1] == t->pgen)) {
		/* the process has ended: its block rows, once they are final */
		uint32_t *np = lf->npending < lf->cappending ? lf->pending
			: realloc(lf->pending, (lf->cappending = lf->cappending * 2 + 16) * sizeof(*np));

		if (np) {
			lf->pending = np;
			lf->pending[lf->npending++] = t->pgen;
		}
	}
	free(keys);
	free(rows);
}

static int on_life_event(void *ctx, void *data, size_t len)
{
	struct cm_life *lf = ctx;
	struct cm_life_event *e = data;
	struct cm_thread t;

	if (len < sizeof(*e) || e->type != CM_EV_THREAD_EXIT)
		return 0;
	memcpy(&t, &e->t, sizeof(t));	/* the ring's memory is not ours to change */
	retire(lf, &t);
	return 0;
}

int cm_life_start(struct cm_tracer *tr, struct cm_books *books)
{
	struct cm_life *lf = calloc(1, sizeof(*lf));

	if (!lf)
		return -1;
	lf->books = books;
	lf->threads_fd = bpf_map__fd(tr->skel->maps.threads);
	lf->sys_fd = bpf_map__fd(tr->skel->maps.sysstats);
	lf->blk_fd = bpf_map__fd(tr->skel->maps.blkstats);
	lf->lookup_and_delete = true;
	lf->last_sweep_ns = cm_now_ns();
	tr->life = lf;
	if (cm_tracer_add_ring(tr, tr->skel->maps.life_events, on_life_event, lf)) {
		cm_err("cannot open the thread-exit ring buffer: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Threads the ring could not take, or whose final switch-out never came. */
static void sweep_threads(struct cm_life *lf, const struct cm_counters *c, uint64_t now)
{
	uint32_t key, next, *prev = NULL;
	uint32_t *dead = NULL;
	size_t ndead = 0, cap = 0;

	/* every exit is retired by BPF or by an earlier sweep: nothing to do */
	if (c->exits <= c->retired + lf->swept)
		return;
	while (!bpf_map_get_next_key(lf->threads_fd, prev, &next)) {
		struct cm_thread t;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(lf->threads_fd, &key, &t))
			continue;
		if (t.state != CM_DEAD &&
		    !((t.flags & CM_TF_EXITED) && now - t.exit_ts > NO_FINAL_SWITCH_NS))
			continue;
		if (ndead == cap) {
			uint32_t *nd = realloc(dead, (cap = cap * 2 + 64) * sizeof(*nd));

			if (!nd)
				break;
			dead = nd;
		}
		dead[ndead++] = key;
	}
	/* retired after the walk: deleting while walking restarts get_next_key */
	for (size_t i = 0; i < ndead; i++) {
		struct cm_thread t;

		if (take(lf->threads_fd, &dead[i], &t, &lf->lookup_and_delete))
			continue;
		if (t.state != CM_DEAD)
			lf->no_final_switch++;
		lf->swept++;
		retire(lf, &t);
	}
	free(dead);
}

/* Block rows of processes that have ended, into the books. */
static void drain_blocks(struct cm_life *lf, uint64_t now, uint64_t grace)
{
	struct cm_blk_key key, next, *prev = NULL;
	struct cm_blk_key *keys = NULL;
	size_t nkeys = 0, cap = 0, kept = 0;

	if (!lf->npending)
		return;
	while (!bpf_map_get_next_key(lf->blk_fd, prev, &next)) {
		key = next;
		prev = &key;
		if (!cm_books_proc_done(lf->books, key.pgen, now, grace))
			continue;
		if (nkeys == cap) {
			struct cm_blk_key *nk = realloc(keys, (cap = cap * 2 + 16) * sizeof(*nk));

			if (!nk)
				break;
			keys = nk;
		}
		keys[nkeys++] = key;
	}
	for (size_t i = 0; i < nkeys; i++) {
		struct cm_blk_stat st;

		if (!take(lf->blk_fd, &keys[i], &st, &lf->lookup_and_delete) &&
		    cm_books_blk(lf->books, &keys[i], &st))
			lf->drain_errors++;
	}
	free(keys);
	/* the processes still in their grace period wait for the next sweep */
	for (size_t i = 0; i < lf->npending; i++)
		if (!cm_books_proc_done(lf->books, lf->pending[i], now, grace))
			lf->pending[kept++] = lf->pending[i];
	lf->npending = kept;
}

static void sweep(struct cm_tracer *tr, uint64_t now, uint64_t grace)
{
	struct cm_life *lf = tr->life;

	lf->last_sweep_ns = now;
	sweep_threads(lf, &tr->skel->bss->counters, now);
	drain_blocks(lf, now, grace);
	/* after the drain: a folded process's rows must be in the books */
	cm_books_trim(lf->books, now, grace);
}

void cm_life_sweep(struct cm_tracer *tr)
{
	uint64_t now = cm_now_ns();

	if (tr->life && now - tr->life->last_sweep_ns >= SWEEP_NS)
		sweep(tr, now, GRACE_NS);
}

void cm_life_final(struct cm_tracer *tr)
{
	/* nothing runs any more: every ended process is final now */
	if (tr->life)
		sweep(tr, cm_now_ns(), 0);
}

int cm_life_poll_ms(const struct cm_tracer *tr)
{
	return tr->life ? (int)(SWEEP_NS / 1000000) : -1;
}

void cm_life_counts(const struct cm_tracer *tr, struct cm_life_counts *c)
{
	const struct cm_life *lf = tr->life;

	memset(c, 0, sizeof(*c));
	if (!lf)
		return;
	c->swept = lf->swept;
	c->no_final_switch = lf->no_final_switch;
	c->drain_errors = lf->drain_errors;
}

void cm_life_free(struct cm_tracer *tr)
{
	struct cm_life *lf = tr->life;

	if (!lf)
		return;
	free(lf->pending);
	free(lf);
	tr->life = NULL;
}
