// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The per-thread rows of the text map (-t). A thread-per-connection server
 * has thousands of threads of one name, so the rows are the longest wall
 * time first, at most max_rows of them, and when there are more threads than
 * rows, the threads of the most common name are added up into one row
 * ("×2000 python3"), then those of the next name, until the rows fit.
 * Threads the collector already folded by name when it built the report
 * (a process's threads_folded: [{comm, count, ledger}]) join their name's
 * row. Below the table, one line says what was folded or left out.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "render_threads.h"

#define T(ns) cm_fmt_ns((ns), (char[32]){0}, 32)

/* 2 + tid 7 + comm 16 + four times 8 + 2 before the cause */
#define THREAD_FIXED 59

struct entry {
	const char *comm;
	uint64_t tid, count;
	json_object *ledger;
	bool folded;		/* a threads_folded row */
};

struct row {
	const char *comm;
	uint64_t tid, count;	/* count > 1 or folded: a row of several threads */
	uint64_t wall, oncpu, runq, offcpu;
	bool folded;
	size_t first, n;	/* its entries (in name order) */
};

static uint64_t val(json_object *v)
{
	double d;

	switch (v ? json_object_get_type(v) : json_type_null) {
	case json_type_int:
		return json_object_get_uint64(v);
	case json_type_double:
		d = json_object_get_double(v);
		return d > 0 ? (d >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)d) : 0;
	default:
		return 0;
	}
}

static uint64_t num(json_object *o, const char *k)
{
	return val(cm_json_get(o, k));
}

/* Sums that saturate: a hostile report's huge numbers must not wrap. */
static uint64_t add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int by_comm(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->comm, y->comm);

	if (c)
		return c;
	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

static int by_wall(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c;

	if (x->wall != y->wall)
		return x->wall < y->wall ? 1 : -1;
	if ((c = strcmp(x->comm, y->comm)))
		return c;
	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

static size_t arr_len(json_object *a)
{
	return a ? json_object_array_length(a) : 0;
}

uint64_t cm_thread_count(json_object *p)
{
	json_object *th = cm_json_get_type(p, "threads", json_type_array);
	json_object *fo = cm_json_get_type(p, "threads_folded", json_type_array);
	uint64_t n = arr_len(th);

	for (size_t i = 0; i < arr_len(fo); i++) {
		json_object *e = json_object_array_get_idx(fo, i);

		if (json_object_is_type(e, json_type_object))
			n = add(n, cm_json_get(e, "count") ? num(e, "count") : 1);
	}
	return n;
}

/* The largest off-CPU cause of a row's entries, summed by name. */
static void top_cause(const struct entry *e, size_t n, char *name, size_t sz, uint64_t *ns)
{
	json_object *sum = json_object_new_object();
	uint64_t best = 0;

	name[0] = 0;
	for (size_t i = 0; sum && i < n; i++) {
		json_object *by = cm_json_get_type(e[i].ledger, "offcpu_by_cause", json_type_object);

		if (!by)
			continue;
		json_object_object_foreach(by, k, v) {
			json_object *cur = cm_json_get(sum, k);
			uint64_t t = add(cur ? (uint64_t)json_object_get_int64(cur) : 0, val(v));

			if (t > INT64_MAX)
				t = INT64_MAX;
			json_object_object_add(sum, k, json_object_new_int64((int64_t)t));
		}
	}
	if (sum) {
		json_object_object_foreach(sum, k, v) {
			uint64_t t = (uint64_t)json_object_get_int64(v);

			/* ties to the smaller name: the same text every time */
			if (t > best || (t == best && t && strcmp(k, name) < 0)) {
				best = t;
				snprintf(name, sz, "%s", k);
			}
		}
	}
	json_object_put(sum);
	*ns = best;
}

static void pad_text(FILE *out, const char *s, int w, bool right)
{
	int n = cm_text_cols(s);

	if (right)
		for (int i = n; i < w; i++)
			fputc(' ', out);
	n = cm_put_text(out, s, w);
	if (!right)
		for (; n < w; n++)
			fputc(' ', out);
}

static void print_row(FILE *out, const struct row *r, const struct entry *e, int causew)
{
	char id[32], cause[128];
	uint64_t cns;

	if (r->count > 1 || r->folded)
		snprintf(id, sizeof(id), "\u00d7%" PRIu64, r->count);
	else
		snprintf(id, sizeof(id), "%" PRIu64, r->tid);
	fputs("  ", out);
	pad_text(out, id, 7, true);
	fputc(' ', out);
	pad_text(out, r->comm, 15, false);
	fprintf(out, " %7s %7s %7s %7s", T(r->wall), T(r->oncpu), T(r->runq), T(r->offcpu));
	top_cause(e + r->first, r->n, cause, sizeof(cause), &cns);
	if (cns && causew > 0) {
		fputs("  ", out);
		/* "syscall:" is most of the column; "sys:" keeps the name whole */
		if (cm_text_cols(cause) > causew && !strncmp(cause, "syscall:", 8)) {
			fputs("sys:", out);
			cm_put_text(out, cause + 8, causew - 4);
		} else {
			cm_put_text(out, cause, causew);
		}
	}
	fputc('\n', out);
}

void cm_render_threads(json_object *p, int width, int max_rows, FILE *out)
{
	json_object *th = cm_json_get_type(p, "threads", json_type_array);
	json_object *fo = cm_json_get_type(p, "threads_folded", json_type_array);
	size_t ne = 0, nr = 0, nrows, full_rows, ngroups = 0, cap = arr_len(th) + arr_len(fo);
	struct entry *e = calloc(cap + 1, sizeof(*e));
	struct row *g = calloc(cap + 1, sizeof(*g)), *rows = NULL;
	uint64_t folded_threads = 0, grouped_threads = 0;
	int causew = width - THREAD_FIXED;

	if (max_rows <= 0)
		max_rows = CM_THREAD_ROWS;
	if (!e || !g)
		goto out;
	for (int pass = 0; pass < 2; pass++) {
		json_object *a = pass ? fo : th;

		for (size_t i = 0; i < arr_len(a); i++) {
			json_object *t = json_object_array_get_idx(a, i);
			const char *comm = cm_json_str(t, "comm");

			if (!json_object_is_type(t, json_type_object))
				continue;
			e[ne] = (struct entry){ .comm = comm ? comm : "?", .tid = num(t, "tid"),
						.count = pass ? (cm_json_get(t, "count") ? num(t, "count") : 1) : 1,
						.ledger = cm_json_get_type(t, "ledger", json_type_object),
						.folded = pass };
			ne++;
		}
	}
	if (!ne)
		goto out;
	/* one group per name: its threads, summed */
	qsort(e, ne, sizeof(*e), by_comm);
	for (size_t i = 0; i < ne; i++) {
		struct row *r;

		if (!ngroups || strcmp(g[ngroups - 1].comm, e[i].comm))
			g[ngroups++] = (struct row){ .comm = e[i].comm, .first = i };
		r = &g[ngroups - 1];
		r->n++;
		r->count = add(r->count, e[i].count);
		r->folded |= e[i].folded;
		r->tid = e[r->first].tid;
		r->wall = add(r->wall, num(e[i].ledger, "wall_ns"));
		r->oncpu = add(r->oncpu, num(e[i].ledger, "oncpu_ns"));
		r->runq = add(r->runq, num(e[i].ledger, "runq_ns"));
		r->offcpu = add(r->offcpu, num(e[i].ledger, "offcpu_ns"));
	}
	/* groups with folded threads are one row already; then the most
	 * common names fold until the rows fit */
	nrows = 0;
	for (size_t k = 0; k < ngroups; k++)
		nrows += g[k].folded ? 1 : g[k].n;
	full_rows = nrows;
	while (nrows > (size_t)max_rows) {
		struct row *big = NULL;

		for (size_t k = 0; k < ngroups; k++)
			if (!g[k].folded && g[k].n > 1 &&
			    (!big || g[k].n > big->n || (g[k].n == big->n && g[k].wall > big->wall)))
				big = &g[k];
		if (!big)
			break;
		big->folded = true;	/* shown as one row from here */
		grouped_threads += big->count;
		nrows -= big->n - 1;
	}
	rows = calloc(nrows + 1, sizeof(*rows));
	if (!rows)
		goto out;
	for (size_t k = 0; k < ngroups; k++) {
		if (g[k].folded) {
			rows[nr++] = g[k];
			continue;
		}
		for (size_t i = g[k].first; i < g[k].first + g[k].n; i++) {
			json_object *l = e[i].ledger;

			rows[nr++] = (struct row){ .comm = e[i].comm, .tid = e[i].tid, .count = 1,
						   .wall = num(l, "wall_ns"), .oncpu = num(l, "oncpu_ns"),
						   .runq = num(l, "runq_ns"), .offcpu = num(l, "offcpu_ns"),
						   .first = i, .n = 1 };
		}
	}
	for (size_t i = 0; i < ne; i++)
		if (e[i].folded)
			folded_threads = add(folded_threads, e[i].count);
	qsort(rows, nr, sizeof(*rows), by_wall);

	fprintf(out, "  %7s %-15s %7s %7s %7s %7s  %s\n",
		"tid", "comm", "wall", "on-CPU", "runq", "off-CPU", "top cause");
	for (size_t i = 0; i < nr && i < (size_t)max_rows; i++)
		print_row(out, &rows[i], e, causew);
	if (nr > (size_t)max_rows) {
		uint64_t nth = 0, wall = 0;

		for (size_t i = (size_t)max_rows; i < nr; i++) {
			nth = add(nth, rows[i].count);
			wall = add(wall, rows[i].wall);
		}
		fprintf(out, "  (%" PRIu64 " more thread%s in %zu rows, %s of wall time: -t %zu shows them)\n",
			nth, nth == 1 ? "" : "s", nr - (size_t)max_rows, T(wall), nr);
	}
	if (grouped_threads)
		fprintf(out, "  (\u00d7N rows add up N threads of one name; -t %zu for a row each)\n",
			full_rows);
	if (folded_threads)
		fprintf(out, "  (%" PRIu64 " exited thread%s folded by name when the report was made)\n",
			folded_threads, folded_threads == 1 ? " was" : "s were");
out:
	free(rows);
	free(g);
	free(e);
}
