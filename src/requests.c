// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Requests (requests.h). A begin record opens a request on its thread, the
 * end record with the same id on the same thread closes it; once every
 * history its critical path needs is in (critpath.c), it is resolved: its
 * latency goes into a log-linear histogram (64 buckets per power of two:
 * percentiles within 1.6%) whose buckets also sum the requests' own time and
 * critical paths by subsystem, so the bands need no list of all requests; the
 * slowest few are kept whole, with the threads on their critical path.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "requests.h"
#include "critpath.h"
#include "tracer.h"
#include "contactmap.skel.h"

#ifndef CM_PREFIX
#define CM_PREFIX "/usr/local"
#endif

#define MAX_OPEN 65536			/* requests begun and not ended, at once */
#define SLOWEST 10
#define RESOLVE_WAIT_NS 5000000000ULL	/* then resolved with what history there is */
#define NBUCKETS (64 + 58 * 64)

struct open_req {
	uint32_t gen, tid, pid, used;
	uint64_t id, b;
	uint64_t vb[CM_SS_SLOTS];
};

struct done_req {
	uint32_t gen, tid, pid;
	uint64_t id, b, e;
	uint64_t vb[CM_SS_SLOTS], ve[CM_SS_SLOTS];
};

struct bucket {
	uint64_t count;
	uint64_t own[CM_SS_SLOTS], cp[CM_SS_SLOTS];
};

struct slow {
	uint32_t tid, pid;
	uint64_t id, latency;
	uint64_t oncpu;
	struct cm_cp_acc own, cp;
};

struct cm_requests {
	struct cm_critpath *cp;
	struct open_req *open;		/* open addressing by (gen, id), MAX_OPEN slots */
	size_t nopen;
	struct done_req *pending;	/* ended, waiting for histories */
	size_t npending, cappending;
	struct bucket *buckets;
	uint64_t count, max_ns, sum_ns, truncated_ns;
	uint64_t unmatched_end, restarted, open_full, forced, cp_lost;
	struct slow slow[SLOWEST];
	int nslow;
	struct bpf_link *links[8];
	int nlinks;
	char path[PATH_MAX];
	cm_request_fn on_request;
	void *on_request_ctx;
};

struct cm_requests *cm_requests_new(struct cm_critpath *cp)
{
	struct cm_requests *rq = calloc(1, sizeof(*rq));

	if (!rq)
		return NULL;
	rq->cp = cp;
	rq->open = calloc(MAX_OPEN, sizeof(*rq->open));
	if (!rq->open) {
		free(rq);
		return NULL;
	}
	return rq;
}

void cm_requests_free(struct cm_requests *rq)
{
	if (!rq)
		return;
	cm_requests_detach(rq);
	for (int i = 0; i < rq->nslow; i++) {
		cm_cp_acc_free(&rq->slow[i].own);
		cm_cp_acc_free(&rq->slow[i].cp);
	}
	free(rq->open);
	free(rq->pending);
	free(rq->buckets);
	free(rq);
}

void cm_requests_on_request(struct cm_requests *rq, cm_request_fn fn, void *ctx)
{
	rq->on_request = fn;
	rq->on_request_ctx = ctx;
}

/* ---- the marker library ----------------------------------------------------- */

static int attach_one(struct cm_requests *rq, struct cm_tracer *tr, const char *path)
{
	static const char *const fn[] = { "contactmap_request_begin", "contactmap_request_end" };
	struct bpf_program *prog[] = { tr->skel->progs.req_begin, tr->skel->progs.req_end };

	if (access(path, R_OK) || rq->nlinks + 2 > (int)(sizeof(rq->links) / sizeof(rq->links[0])))
		return -1;
	for (int i = 0; i < 2; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = fn[i]);
		struct bpf_link *l = bpf_program__attach_uprobe_opts(prog[i], -1, path, 0, &opts);

		if (!l) {
			cm_warn("cannot probe %s in %s: %s (requests there are not seen)", fn[i], path,
				strerror(errno));
			return -1;
		}
		rq->links[rq->nlinks++] = l;
	}
	cm_info("request markers probed in %s", path);
	return 0;
}

const char *cm_requests_attach(struct cm_requests *rq, struct cm_tracer *tr, const char *path)
{
	char exe[PATH_MAX], cand[2][PATH_MAX + 32];
	ssize_t n;

	if (bpf_program__fd(tr->skel->progs.req_begin) < 0)
		return NULL;	/* the critical path is off: the programs were not loaded */
	if (path) {
		if (attach_one(rq, tr, path)) {
			cm_warn("no request markers: cannot probe %s", path);
			return NULL;
		}
		snprintf(rq->path, sizeof(rq->path), "%s", path);
		return rq->path;
	}
	/* next to the binary (the build's .output/), and where make install puts it */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	if (strrchr(exe, '/'))
		*strrchr(exe, '/') = 0;
	snprintf(cand[0], sizeof(cand[0]), "%s/libcontactmap-mark.so", exe);
	snprintf(cand[1], sizeof(cand[1]), "%s/lib/libcontactmap-mark.so", CM_PREFIX);
	for (int i = 0; i < 2; i++) {
		char real[PATH_MAX];

		if (!realpath(cand[i], real) || (i == 1 && !strcmp(real, rq->path)))
			continue;
		if (!attach_one(rq, tr, real) && !rq->path[0])
			snprintf(rq->path, sizeof(rq->path), "%s", real);
	}
	return rq->path[0] ? rq->path : NULL;
}

void cm_requests_detach(struct cm_requests *rq)
{
	for (int i = 0; i < rq->nlinks; i++)
		bpf_link__destroy(rq->links[i]);
	rq->nlinks = 0;
}

/* ---- open requests -------------------------------------------------------- */

static size_t oslot(uint32_t gen, uint64_t id)
{
	uint64_t h = (id ^ ((uint64_t)gen << 32) ^ gen) * 0x9e3779b97f4a7c15ULL;

	return (size_t)(h >> 40) & (MAX_OPEN - 1);
}

static struct open_req *ofind(struct cm_requests *rq, uint32_t gen, uint64_t id)
{
	for (size_t j = oslot(gen, id), k = 0; k < MAX_OPEN && rq->open[j].used;
	     j = (j + 1) & (MAX_OPEN - 1), k++)
		if (rq->open[j].gen == gen && rq->open[j].id == id)
			return &rq->open[j];
	return NULL;
}

/* Linear probing: a removal shifts back the entries after it. */
static void oremove(struct cm_requests *rq, struct open_req *o)
{
	size_t i = (size_t)(o - rq->open), j = i;

	rq->open[i].used = 0;
	for (;;) {
		size_t home;

		j = (j + 1) & (MAX_OPEN - 1);
		if (!rq->open[j].used)
			break;
		home = oslot(rq->open[j].gen, rq->open[j].id);
		/* j's entry may move to i if its home is not in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			rq->open[i] = rq->open[j];
			rq->open[j].used = 0;
			i = j;
		}
	}
	rq->nopen--;
}

void cm_requests_event(struct cm_requests *rq, const struct cm_cp_event *e)
{
	struct open_req *o = ofind(rq, e->gen, e->id);

	if (e->type == CM_EV_REQ_BEGIN) {
		if (o) {
			rq->restarted++;	/* begun again before its end: from here */
		} else {
			if (rq->nopen + 1 >= MAX_OPEN / 2) {
				rq->open_full++;
				return;
			}
			for (size_t j = oslot(e->gen, e->id);; j = (j + 1) & (MAX_OPEN - 1))
				if (!rq->open[j].used) {
					o = &rq->open[j];
					break;
				}
			rq->nopen++;
		}
		o->used = 1;
		o->gen = e->gen;
		o->tid = e->tid;
		o->pid = e->pid;
		o->id = e->id;
		o->b = e->ts;
		memcpy(o->vb, e->vec, sizeof(o->vb));
		return;
	}
	if (!o) {
		rq->unmatched_end++;
		return;
	}
	if (rq->npending == rq->cappending) {
		size_t nc = rq->cappending ? rq->cappending * 2 : 64;
		struct done_req *n = realloc(rq->pending, nc * sizeof(*n));

		if (!n) {
			oremove(rq, o);
			return;
		}
		rq->pending = n;
		rq->cappending = nc;
	}
	struct done_req *d = &rq->pending[rq->npending++];

	d->gen = o->gen;
	d->tid = o->tid;
	d->pid = o->pid;
	d->id = o->id;
	d->b = o->b;
	d->e = e->ts;
	memcpy(d->vb, o->vb, sizeof(d->vb));
	memcpy(d->ve, e->vec, sizeof(d->ve));
	if (rq->on_request)
		rq->on_request(rq->on_request_ctx, d->pid, d->tid, d->id, d->b, d->e);
	oremove(rq, o);
}

/* ---- resolution ------------------------------------------------------------- */

static size_t bucket_of(uint64_t v)
{
	int oct;

	if (v < 64)
		return (size_t)v;
	oct = 63 - __builtin_clzll(v);
	return 64 + (size_t)(oct - 6) * 64 + ((v >> (oct - 6)) & 63);
}

/* [lo, lo + width) of bucket i */
static uint64_t bucket_lo(size_t i, uint64_t *width)
{
	int oct;

	if (i < 64) {
		*width = 1;
		return i;
	}
	oct = (int)((i - 64) / 64) + 6;
	*width = 1ULL << (oct - 6);
	return (64 + (i - 64) % 64) << (oct - 6);
}

static void keep_slow(struct cm_requests *rq, const struct done_req *d, struct cm_cp_acc *own,
		      struct cm_cp_acc *cp)
{
	uint64_t lat = d->e - d->b, oncpu = 0;
	int at = rq->nslow;

	for (int i = 0; i < CM_SS_SLOTS; i++)
		oncpu += d->ve[i] > d->vb[i] ? d->ve[i] - d->vb[i] : 0;
	if (rq->nslow == SLOWEST) {
		/* the table is sorted, slowest first: the last one goes */
		if (lat <= rq->slow[SLOWEST - 1].latency) {
			cm_cp_acc_free(own);
			cm_cp_acc_free(cp);
			return;
		}
		cm_cp_acc_free(&rq->slow[SLOWEST - 1].own);
		cm_cp_acc_free(&rq->slow[SLOWEST - 1].cp);
		at = SLOWEST - 1;
	} else {
		rq->nslow++;
	}
	while (at > 0 && rq->slow[at - 1].latency < lat) {
		rq->slow[at] = rq->slow[at - 1];
		at--;
	}
	rq->slow[at] = (struct slow){ .tid = d->tid, .pid = d->pid, .id = d->id, .latency = lat,
				      .oncpu = oncpu, .own = *own, .cp = *cp };
}

/* 0: resolved; 1: wait for more history. */
static int resolve(struct cm_requests *rq, const struct done_req *d, bool force)
{
	uint64_t lat = d->e - d->b;
	bool slow = rq->nslow < SLOWEST || lat > rq->slow[SLOWEST - 1].latency;
	struct cm_cp_acc own = { .detail = false }, cp = { .detail = slow };
	struct bucket *bk;

	if (cm_critpath_own(rq->cp, d->gen, d->b, d->e, d->vb, d->ve, force, &own) ||
	    cm_critpath_walk(rq->cp, d->gen, d->b, d->e, d->vb, d->ve, force, &cp)) {
		cm_cp_acc_free(&own);
		cm_cp_acc_free(&cp);
		return 1;
	}
	if (!rq->buckets && !(rq->buckets = calloc(NBUCKETS, sizeof(*rq->buckets)))) {
		cm_cp_acc_free(&cp);
		return 0;
	}
	bk = &rq->buckets[bucket_of(lat)];
	bk->count++;
	for (int i = 0; i < CM_SS_SLOTS; i++) {
		bk->own[i] += own.ss[i];
		bk->cp[i] += cp.ss[i];
	}
	rq->count++;
	rq->sum_ns += lat;
	if (lat > rq->max_ns)
		rq->max_ns = lat;
	rq->truncated_ns += cp.truncated_ns;
	if (slow) {
		keep_slow(rq, d, &own, &cp);
	} else {
		cm_cp_acc_free(&own);
		cm_cp_acc_free(&cp);
	}
	return 0;
}

void cm_requests_poll(struct cm_requests *rq, uint64_t now, bool force)
{
	size_t kept = 0;

	for (size_t i = 0; i < rq->npending; i++) {
		const struct done_req *d = &rq->pending[i];
		bool f = force || now - d->e > RESOLVE_WAIT_NS;

		if (resolve(rq, d, f)) {
			rq->pending[kept++] = *d;
		} else if (f && !force) {
			rq->forced++;
		}
	}
	rq->npending = kept;
}

uint64_t cm_requests_keep_from(const struct cm_requests *rq, uint64_t now)
{
	uint64_t keep = now;

	for (size_t i = 0; i < rq->npending; i++)
		if (rq->pending[i].b < keep)
			keep = rq->pending[i].b;
	if (rq->nopen)
		for (size_t j = 0; j < MAX_OPEN; j++)
			if (rq->open[j].used && rq->open[j].b < keep)
				keep = rq->open[j].b;
	return keep;
}

/* ---- the report --------------------------------------------------------------- */

/* The latency at quantile q, interpolated inside its bucket. */
static uint64_t quantile(const struct cm_requests *rq, double q)
{
	double rank = q * (double)rq->count, seen = 0;

	for (size_t i = 0; i < NBUCKETS; i++) {
		const struct bucket *b = &rq->buckets[i];
		uint64_t lo, w;

		if (!b->count)
			continue;
		if (seen + b->count >= rank) {
			lo = bucket_lo(i, &w);
			lo += (uint64_t)((rank - seen) / b->count * (double)w);
			return lo < rq->max_ns ? lo : rq->max_ns;
		}
		seen += b->count;
	}
	return rq->max_ns;
}

static json_object *vec_rows(const uint64_t *v)
{
	struct cm_cp_acc a = { 0 };

	memcpy(a.ss, v, sizeof(a.ss));
	return cm_cp_rows_json(&a);
}

static json_object *bands_json(const struct cm_requests *rq)
{
	static const char *const names[] = { "p0-p50", "p50-p90", "p90-p99", "p99-p100" };
	uint64_t edge[5] = { 0, rq->count / 2, rq->count * 9 / 10, rq->count * 99 / 100, rq->count };
	long double own[4][CM_SS_SLOTS] = { { 0 } }, cp[4][CM_SS_SLOTS] = { { 0 } };
	uint64_t cnt[4] = { 0 }, lo[4] = { 0 }, hi[4] = { 0 }, rank = 0;
	json_object *a = json_object_new_array();

	/* each bucket's requests, split by rank between the bands they fall in */
	for (size_t i = 0; i < NBUCKETS; i++) {
		const struct bucket *b = &rq->buckets[i];
		uint64_t w, l;

		if (!b->count)
			continue;
		l = bucket_lo(i, &w);
		for (int k = 0; k < 4; k++) {
			uint64_t s = rank > edge[k] ? rank : edge[k];
			uint64_t e = rank + b->count < edge[k + 1] ? rank + b->count : edge[k + 1];

			if (e <= s)
				continue;
			cnt[k] += e - s;
			if (!lo[k])
				lo[k] = l;
			hi[k] = l + w;
			for (int j = 0; j < CM_SS_SLOTS; j++) {
				own[k][j] += (long double)b->own[j] * (e - s) / b->count;
				cp[k][j] += (long double)b->cp[j] * (e - s) / b->count;
			}
		}
		rank += b->count;
	}
	for (int k = 0; k < 4; k++) {
		json_object *o = json_object_new_object(), *lat = json_object_new_object();
		uint64_t vo[CM_SS_SLOTS], vc[CM_SS_SLOTS];

		for (int j = 0; j < CM_SS_SLOTS; j++) {
			vo[j] = (uint64_t)(own[k][j] + 0.5);
			vc[j] = (uint64_t)(cp[k][j] + 0.5);
		}
		json_object_object_add(o, "band", json_object_new_string(names[k]));
		json_object_object_add(o, "count", json_object_new_int64((int64_t)cnt[k]));
		json_object_object_add(lat, "from", json_object_new_int64((int64_t)lo[k]));
		json_object_object_add(lat, "to", json_object_new_int64((int64_t)(hi[k] < rq->max_ns ? hi[k] : rq->max_ns)));
		json_object_object_add(o, "latency_ns", lat);
		json_object_object_add(o, "contact_map", vec_rows(vo));
		json_object_object_add(o, "critical_path", vec_rows(vc));
		json_object_array_add(a, o);
	}
	return a;
}

static json_object *slow_json(const struct slow *s)
{
	json_object *o = json_object_new_object(), *l = json_object_new_object();
	json_object *path = json_object_new_array();
	uint64_t runq = s->own.ss[CM_SS_RUNQ];

	json_object_object_add(o, "id", json_object_new_uint64(s->id));
	json_object_object_add(o, "tid", json_object_new_int64(s->tid));
	json_object_object_add(o, "pid", json_object_new_int64(s->pid));
	json_object_object_add(o, "latency_ns", json_object_new_int64((int64_t)s->latency));
	json_object_object_add(l, "wall_ns", json_object_new_int64((int64_t)s->latency));
	json_object_object_add(l, "oncpu_ns", json_object_new_int64((int64_t)s->oncpu));
	json_object_object_add(l, "runq_ns", json_object_new_int64((int64_t)runq));
	json_object_object_add(l, "offcpu_ns", json_object_new_int64(
		(int64_t)(s->latency > s->oncpu + runq ? s->latency - s->oncpu - runq : 0)));
	json_object_object_add(o, "ledger", l);
	json_object_object_add(o, "contact_map", cm_cp_rows_json(&s->own));
	for (size_t i = 0; i < s->cp.nrows; i++) {
		json_object *r = json_object_new_object();

		json_object_object_add(r, "subsystem", json_object_new_string(cm_subsys_key(s->cp.rows[i].ss)));
		json_object_object_add(r, "time_ns", json_object_new_int64((int64_t)s->cp.rows[i].ns));
		json_object_object_add(r, "tid", json_object_new_int64(s->cp.rows[i].tid));
		json_object_array_add(path, r);
	}
	json_object_object_add(o, "critical_path", path);
	return o;
}

json_object *cm_requests_json(struct cm_requests *rq)
{
	json_object *o, *lat, *slow;

	if (!rq || (!rq->count && !rq->nopen && !rq->unmatched_end))
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "count", json_object_new_int64((int64_t)rq->count));
	json_object_object_add(o, "open", json_object_new_int64((int64_t)rq->nopen));
	json_object_object_add(o, "unmatched_end", json_object_new_int64((int64_t)rq->unmatched_end));
	json_object_object_add(o, "begun_again", json_object_new_int64((int64_t)rq->restarted));
	json_object_object_add(o, "open_table_full", json_object_new_int64((int64_t)rq->open_full));
	json_object_object_add(o, "resolved_late", json_object_new_int64((int64_t)rq->forced));
	json_object_object_add(o, "truncated_ns", json_object_new_int64((int64_t)rq->truncated_ns));
	if (rq->path[0])
		json_object_object_add(o, "library", json_object_new_string(rq->path));
	lat = json_object_new_object();
	if (rq->count) {
		json_object_object_add(lat, "p50", json_object_new_int64((int64_t)quantile(rq, 0.50)));
		json_object_object_add(lat, "p90", json_object_new_int64((int64_t)quantile(rq, 0.90)));
		json_object_object_add(lat, "p99", json_object_new_int64((int64_t)quantile(rq, 0.99)));
		json_object_object_add(lat, "max", json_object_new_int64((int64_t)rq->max_ns));
		json_object_object_add(lat, "mean", json_object_new_int64((int64_t)(rq->sum_ns / rq->count)));
	}
	json_object_object_add(o, "latency_ns", lat);
	json_object_object_add(o, "bands", rq->count ? bands_json(rq) : json_object_new_array());
	slow = json_object_new_array();
	for (int i = 0; i < rq->nslow; i++)
		json_object_array_add(slow, slow_json(&rq->slow[i]));
	json_object_object_add(o, "slowest", slow);
	return o;
}
