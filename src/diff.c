// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * contactmap diff BEFORE.json... [--] AFTER.json...
 *
 * Compares reports row by row: the contact map, the totals ledger, every
 * process's ledger, syscalls, scheduler figures, faults and block I/O. Each
 * side may hold several runs of the same experiment; a side is then its mean,
 * and a change smaller than the run-to-run spread (max - min) of either side
 * is marked as noise. Differences in the environment (host facts, target
 * context, features) come first, because they explain changes in the tables.
 *
 * Like render.c it reads nothing but the reports and treats every key as
 * optional: an absent number is 0, an absent section adds no rows.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"

#define DIFF_SCHEMA "contactmap-diff/1"
#define WIDTH 80
#define TOP_GROUPS 10		/* changed groups shown per section in text */
#define WINDOW_NOTE_FRAC 0.10	/* windows this much apart: absolute ns mislead */

enum section { SEC_CONTACT, SEC_TOTALS, SEC_LEDGER, SEC_SYSCALLS, SEC_SCHED, SEC_FAULTS,
	       SEC_BLOCK, SEC_WINDOW, SEC_N };
static const char *const sec_key[SEC_N] = {
	"contact_map", "totals", "ledger", "syscalls", "sched", "faults", "block_io", "window",
};
static const char *const sec_title[SEC_N] = {
	"OS contact map (all threads)", "totals (ledger of all threads)", "process ledgers",
	"syscalls", "scheduler", "page faults", "block I/O", "window",
};

enum unit { U_NS, U_BYTES, U_COUNT };	/* also the sort class: time first */
static const char *const unit_key[] = { "ns", "bytes", "count" };

struct row {
	enum section sec;
	enum unit unit;
	bool take_max;		/* quantiles of duplicate rows: the max, not the sum */
	char *proc;		/* process label; NULL for report-wide rows */
	char *item;		/* subsystem, ledger field, syscall, device op ... */
	char *metric;		/* NULL, or "count", "total_ns" ... within the item */
	char *label;		/* display name of item, when it differs */
	char *key;		/* [proc/]item[.metric] */
	size_t order;
	double *v[2];		/* per run */
	double *share[2];	/* contact map rows: share per run */
	double mean[2], min[2], max[2], sd[2], share_mean[2];
	double delta, rel;
	bool has_rel, noise;
	size_t group;
};

struct env_fact {
	char *key;
	char *val[2];		/* distinct values on a side, " | "-joined */
	int present[2];		/* runs of the side that have the key */
};

struct side {
	int n;
	char **paths;
	json_object **r;
};

struct diff {
	struct side s[2];
	struct row *rows;
	size_t nrows, cap;
	size_t *hash;		/* open addressing: row index + 1, 0 = free */
	size_t hcap;
	struct env_fact *env;
	size_t nenv, envcap;
	char **warnings, **notes;
	int nwarn, nnotes;
	bool all;
};

/* ---- small helpers ---------------------------------------------------------- */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		cm_err("out of memory");
		exit(1);
	}
	return q;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p) {
		cm_err("out of memory");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d) {
		cm_err("out of memory");
		exit(1);
	}
	return d;
}

static char * __attribute__((format(printf, 1, 2))) xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		cm_err("out of memory");
		exit(1);
	}
	return s;
}

#define obj(o, k) cm_json_get_type((o), (k), json_type_object)
#define arr(o, k) cm_json_get_type((o), (k), json_type_array)

/* Numbers in reports are non-negative integers or shares; anything else
 * (a string, null, NaN) reads as 0. */
static double num(json_object *o, const char *key)
{
	json_object *v = cm_json_get(o, key);
	double d;

	if (!v)
		return 0;
	switch (json_object_get_type(v)) {
	case json_type_int:
		return (double)json_object_get_int64(v);
	case json_type_double:
		d = json_object_get_double(v);
		return isfinite(d) ? d : 0;
	default:
		return 0;
	}
}

static bool has_num(json_object *o, const char *key)
{
	json_object *v = cm_json_get(o, key);

	return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

/* ---- rows --------------------------------------------------------------------- */

static uint64_t hash_str(const char *s, uint64_t h)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static uint64_t row_hash(enum section sec, const char *key)
{
	return hash_str(key, (14695981039346656037ULL ^ (uint64_t)sec) * 1099511628211ULL);
}

static void rehash(struct diff *d)
{
	size_t ncap = d->hcap ? d->hcap * 2 : 1024;

	free(d->hash);
	d->hash = xcalloc(ncap, sizeof(*d->hash));
	d->hcap = ncap;
	for (size_t i = 0; i < d->nrows; i++) {
		size_t h = row_hash(d->rows[i].sec, d->rows[i].key) & (ncap - 1);

		while (d->hash[h])
			h = (h + 1) & (ncap - 1);
		d->hash[h] = i + 1;
	}
}

static struct row *get_row(struct diff *d, enum section sec, const char *proc, const char *item,
			   const char *metric, enum unit unit)
{
	char *key = xasprintf("%s%s%s%s%s", proc ? proc : "", proc ? "/" : "", item,
			      metric ? "." : "", metric ? metric : "");
	size_t h;

	if (2 * (d->nrows + 1) > d->hcap)
		rehash(d);
	h = row_hash(sec, key) & (d->hcap - 1);
	for (; d->hash[h]; h = (h + 1) & (d->hcap - 1)) {
		struct row *r = &d->rows[d->hash[h] - 1];

		if (r->sec == sec && !strcmp(r->key, key)) {
			free(key);
			return r;
		}
	}
	if (d->nrows == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 256;
		d->rows = xrealloc(d->rows, d->cap * sizeof(*d->rows));
	}
	struct row *r = &d->rows[d->nrows];

	*r = (struct row){ .sec = sec, .unit = unit, .key = key, .order = d->nrows,
			   .proc = proc ? xstrdup(proc) : NULL, .item = xstrdup(item),
			   .metric = metric ? xstrdup(metric) : NULL };
	for (int s = 0; s < 2; s++)
		r->v[s] = xcalloc(d->s[s].n, sizeof(double));
	d->hash[h] = ++d->nrows;
	return r;
}

/* Adds v to the row's value for run `run` of side `s`. */
static struct row *put(struct diff *d, int s, int run, enum section sec, const char *proc,
		       const char *item, const char *metric, enum unit unit, double v)
{
	struct row *r = get_row(d, sec, proc, item, metric, unit);

	if (r->take_max)
		r->v[s][run] = fmax(r->v[s][run], v);
	else
		r->v[s][run] += v;
	return r;
}

static void put_max(struct diff *d, int s, int run, enum section sec, const char *proc,
		    const char *item, const char *metric, double v)
{
	struct row *r = get_row(d, sec, proc, item, metric, U_NS);

	r->take_max = true;
	r->v[s][run] = fmax(r->v[s][run], v);
}

static const char *const ledger_fields[] = {
	"wall_ns", "oncpu_ns", "oncpu_user_ns", "oncpu_syscall_ns", "runq_ns", "runq_wakeup_ns",
	"runq_preempt_ns", "offcpu_ns", "iowait_ns", "unattributed_ns",
};

static void add_ledger(struct diff *d, int s, int run, enum section sec, const char *proc,
		       json_object *L)
{
	json_object *causes = obj(L, "offcpu_by_cause");

	if (!L)
		return;
	for (size_t i = 0; i < sizeof(ledger_fields) / sizeof(*ledger_fields); i++)
		put(d, s, run, sec, proc, ledger_fields[i], NULL, U_NS, num(L, ledger_fields[i]));
	if (causes) {
		json_object_object_foreach(causes, cause, val) {
			char *item = xasprintf("offcpu:%s", cause);

			(void)val;
			put(d, s, run, sec, proc, item, NULL, U_NS, num(causes, cause));
			free(item);
		}
	}
}

static void add_process(struct diff *d, int s, int run, const char *label, json_object *p)
{
	static const char *const sched_counts[] = {
		"voluntary_switches", "involuntary_switches", "migrations", "wakeups", "runq_waits",
	};
	json_object *a, *sc, *f;

	add_ledger(d, s, run, SEC_LEDGER, label, obj(p, "ledger"));
	if ((a = arr(p, "syscalls"))) {
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			const char *name = cm_json_str(x, "name");
			char nrname[32];

			if (!name) {
				snprintf(nrname, sizeof(nrname), "syscall_%.0f", num(x, "nr"));
				name = nrname;
			}
			put(d, s, run, SEC_SYSCALLS, label, name, "count", U_COUNT, num(x, "count"));
			put(d, s, run, SEC_SYSCALLS, label, name, "errors", U_COUNT, num(x, "errors"));
			put(d, s, run, SEC_SYSCALLS, label, name, "total_ns", U_NS, num(x, "total_ns"));
			put_max(d, s, run, SEC_SYSCALLS, label, name, "p99_ns", num(x, "p99_ns"));
		}
	}
	if ((sc = obj(p, "sched"))) {
		put_max(d, s, run, SEC_SCHED, label, "runq_p99_ns", NULL, num(sc, "runq_p99_ns"));
		put_max(d, s, run, SEC_SCHED, label, "runq_p50_ns", NULL, num(sc, "runq_p50_ns"));
		for (size_t i = 0; i < sizeof(sched_counts) / sizeof(*sched_counts); i++)
			if (has_num(sc, sched_counts[i]))
				put(d, s, run, SEC_SCHED, label, sched_counts[i], NULL, U_COUNT,
				    num(sc, sched_counts[i]));
	}
	if ((f = obj(p, "faults"))) {
		put(d, s, run, SEC_FAULTS, label, "minor", NULL, U_COUNT, num(f, "minor"));
		put(d, s, run, SEC_FAULTS, label, "major", NULL, U_COUNT, num(f, "major"));
	}
	if ((a = arr(p, "block_io"))) {
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			const char *dev = cm_json_str(x, "device"), *op = cm_json_str(x, "op");
			char *item = xasprintf("%s %s", dev ? dev : "?", op ? op : "?");

			put(d, s, run, SEC_BLOCK, label, item, "count", U_COUNT, num(x, "count"));
			put(d, s, run, SEC_BLOCK, label, item, "bytes", U_BYTES, num(x, "bytes"));
			put(d, s, run, SEC_BLOCK, label, item, "total_ns", U_NS, num(x, "total_ns"));
			free(item);
		}
	}
}

/* Process labels. A pid that every report has, with the same comm, is the
 * same process (attach mode to a long-lived server): "comm[pid]". Any other
 * process is matched by comm and order of appearance among equal comms
 * (processes are ordered by pid, i.e. by start for the usual pid allocation):
 * "comm", then "comm#2", "comm#3"... */
static bool pid_everywhere(struct diff *d, int64_t pid, const char *comm)
{
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d->s[s].n; i++) {
			json_object *a = arr(d->s[s].r[i], "processes");
			bool found = false;

			for (size_t k = 0; a && !found && k < json_object_array_length(a); k++) {
				json_object *p = json_object_array_get_idx(a, k);
				const char *c = cm_json_str(p, "comm");

				found = has_num(p, "pid") && (int64_t)num(p, "pid") == pid &&
					!strcmp(c ? c : "?", comm);
			}
			if (!found)
				return false;
		}
	}
	return true;
}

static void add_report(struct diff *d, int s, int run)
{
	json_object *r = d->s[s].r[run], *a, *cm;
	struct { char *comm; int n; } *seen = NULL;
	size_t nseen = 0;

	put(d, s, run, SEC_WINDOW, NULL, "duration_ns", NULL, U_NS,
	    num(obj(r, "window"), "duration_ns"));
	if ((cm = arr(r, "contact_map"))) {
		for (size_t i = 0; i < json_object_array_length(cm); i++) {
			json_object *x = json_object_array_get_idx(cm, i);
			const char *ss = cm_json_str(x, "subsystem"), *label = cm_json_str(x, "label");
			struct row *row;

			if (!ss)
				continue;
			row = put(d, s, run, SEC_CONTACT, NULL, ss, NULL, U_NS, num(x, "time_ns"));
			if (!row->share[0]) {
				row->share[0] = xcalloc(d->s[0].n, sizeof(double));
				row->share[1] = xcalloc(d->s[1].n, sizeof(double));
			}
			row->share[s][run] += num(x, "share");
			if (!row->label) {
				int k = cm_subsys_from_key(ss);

				row->label = xstrdup(label ? label : k >= 0 ? cm_subsys_label(k) : ss);
			}
		}
	}
	add_ledger(d, s, run, SEC_TOTALS, NULL, obj(r, "totals"));
	if (!(a = arr(r, "processes")))
		return;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *p = json_object_array_get_idx(a, i);
		const char *comm = cm_json_str(p, "comm");
		char *label;
		size_t k;

		if (!comm || !*comm)
			comm = "?";
		if (has_num(p, "pid") && pid_everywhere(d, (int64_t)num(p, "pid"), comm)) {
			label = xasprintf("%s[%" PRId64 "]", comm, (int64_t)num(p, "pid"));
		} else {
			for (k = 0; k < nseen && strcmp(seen[k].comm, comm); k++)
				;
			if (k == nseen) {
				seen = xrealloc(seen, (nseen + 1) * sizeof(*seen));
				seen[nseen].comm = xstrdup(comm);
				seen[nseen++].n = 0;
			}
			label = ++seen[k].n == 1 ? xstrdup(comm) : xasprintf("%s#%d", comm, seen[k].n);
		}
		add_process(d, s, run, label, p);
		free(label);
	}
	for (size_t k = 0; k < nseen; k++)
		free(seen[k].comm);
	free(seen);
}

/* ---- statistics ------------------------------------------------------------ */

static void stats(const double *v, int n, double *mean, double *min, double *max, double *sd)
{
	double sum = 0, ss = 0;

	*min = *max = n ? v[0] : 0;
	for (int i = 0; i < n; i++) {
		sum += v[i];
		*min = fmin(*min, v[i]);
		*max = fmax(*max, v[i]);
	}
	*mean = n ? sum / n : 0;
	for (int i = 0; i < n; i++)
		ss += (v[i] - *mean) * (v[i] - *mean);
	*sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

static void compute(struct diff *d, struct row *r)
{
	double dummy;

	for (int s = 0; s < 2; s++) {
		stats(r->v[s], d->s[s].n, &r->mean[s], &r->min[s], &r->max[s], &r->sd[s]);
		if (r->share[s])
			stats(r->share[s], d->s[s].n, &r->share_mean[s], &dummy, &dummy, &dummy);
	}
	r->delta = r->mean[1] - r->mean[0];
	r->has_rel = r->mean[0] != 0 || r->delta == 0;
	r->rel = r->mean[0] != 0 ? r->delta / r->mean[0] : 0;
	/* A change is noise when the runs of one side alone vary more than the
	 * sides differ. With one run per side there is no spread to judge by. */
	r->noise = (d->s[0].n > 1 || d->s[1].n > 1) &&
		   fabs(r->delta) < fmax(r->max[0] - r->min[0], r->max[1] - r->min[1]);
}

/* ---- environment ------------------------------------------------------------ */

static struct env_fact *env_get(struct diff *d, const char *key)
{
	for (size_t i = 0; i < d->nenv; i++)
		if (!strcmp(d->env[i].key, key))
			return &d->env[i];
	if (d->nenv == d->envcap) {
		d->envcap = d->envcap ? d->envcap * 2 : 64;
		d->env = xrealloc(d->env, d->envcap * sizeof(*d->env));
	}
	d->env[d->nenv] = (struct env_fact){ .key = xstrdup(key) };
	return &d->env[d->nenv++];
}

static void env_add_value(char **set, const char *v)
{
	/* a set of distinct values, " | "-joined, in order of appearance */
	if (!*set) {
		*set = xstrdup(v);
		return;
	}
	for (const char *p = *set; p;) {
		const char *e = strstr(p, " | ");
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == strlen(v) && !strncmp(p, v, n))
			return;
		p = e ? e + 3 : NULL;
	}
	char *n = xasprintf("%s | %s", *set, v);

	free(*set);
	*set = n;
}

static void env_put(struct diff *d, int s, const char *key, const char *val)
{
	struct env_fact *f = env_get(d, key);

	env_add_value(&f->val[s], val);
	f->present[s]++;
}

/* Flattens o into dotted keys with string values: nested objects recurse,
 * arrays of scalars join with spaces, arrays of objects recurse by index. */
static void flatten(struct diff *d, int s, const char *prefix, json_object *o)
{
	if (!o)
		return;
	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v) {
			char *key = xasprintf("%s.%s", prefix, k);

			flatten(d, s, key, v);
			free(key);
		}
		return;
	}
	if (json_object_is_type(o, json_type_array)) {
		size_t n = json_object_array_length(o);
		bool scalars = true;

		for (size_t i = 0; i < n && scalars; i++) {
			json_object *x = json_object_array_get_idx(o, i);

			scalars = !x || !(json_object_is_type(x, json_type_object) ||
					  json_object_is_type(x, json_type_array));
		}
		if (scalars) {
			char *joined = xstrdup("");

			for (size_t i = 0; i < n; i++) {
				json_object *x = json_object_array_get_idx(o, i);
				char *j = xasprintf("%s%s%s", joined, i ? " " : "",
						    x ? json_object_get_string(x) : "null");

				free(joined);
				joined = j;
			}
			env_put(d, s, prefix, joined);
			free(joined);
		} else {
			for (size_t i = 0; i < n; i++) {
				char *key = xasprintf("%s.%zu", prefix, i);

				flatten(d, s, key, json_object_array_get_idx(o, i));
				free(key);
			}
		}
		return;
	}
	env_put(d, s, prefix, json_object_get_string(o));
}

static void add_env(struct diff *d, int s, json_object *r)
{
	json_object *t = obj(r, "target");

	flatten(d, s, "host", obj(r, "host"));
	if (t) {
		/* pids differ between any two runs; they say nothing about the setup */
		json_object_object_foreach(t, k, v) {
			char *key;

			if (!strcmp(k, "pid") || !strcmp(k, "pids"))
				continue;
			key = xasprintf("target.%s", k);
			flatten(d, s, key, v);
			free(key);
		}
	}
	flatten(d, s, "features", obj(r, "features"));
	flatten(d, s, "tool", obj(r, "tool"));
}

static void env_finish(struct diff *d)
{
	for (size_t i = 0; i < d->nenv; i++)
		for (int s = 0; s < 2; s++)
			if (d->env[i].present[s] && d->env[i].present[s] < d->s[s].n)
				env_add_value(&d->env[i].val[s], "(unset)");
}

static bool env_changed(const struct env_fact *f)
{
	if (!f->val[0] || !f->val[1])
		return f->val[0] || f->val[1];
	return strcmp(f->val[0], f->val[1]) || strstr(f->val[0], " | ");
}

static void add_msg(char ***list, int *n, char *msg)
{
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = msg;
}

/* The facts that make numbers from two machines incomparable. */
static void check_hosts(struct diff *d)
{
	static const char *const keys[] = { "host.kernel", "host.cpu_model", "host.cpus" };
	char *msg = NULL;

	for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
		for (size_t k = 0; k < d->nenv; k++) {
			struct env_fact *f = &d->env[k];
			char *m;

			if (strcmp(f->key, keys[i]) || !env_changed(f))
				continue;
			m = xasprintf("%s%s%s %s vs %s", msg ? msg : "", msg ? ", " : "", keys[i],
				      f->val[0] ? f->val[0] : "(unknown)",
				      f->val[1] ? f->val[1] : "(unknown)");
			free(msg);
			msg = m;
		}
	}
	if (msg) {
		char *w = xasprintf("reports come from different machines or kernels (%s): "
				    "differences may be the machine's, not the change's", msg);

		free(msg);
		cm_warn("%s", w);
		add_msg(&d->warnings, &d->nwarn, w);
	}
}

/* ---- ordering ----------------------------------------------------------------- */

static int cmp_nullstr(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

static int cmp_group_key(const void *pa, const void *pb)
{
	const struct row *a = pa, *b = pb;
	int c;

	if (a->sec != b->sec)
		return (int)a->sec - (int)b->sec;
	if ((c = cmp_nullstr(a->proc, b->proc)))
		return c;
	if ((c = strcmp(a->item, b->item)))
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

struct group {
	size_t first, n;	/* rows[first .. first+n) */
	enum section sec;
	int cls;		/* unit class of the weight: time, bytes, counts */
	double weight;		/* largest |delta| of that class */
	bool changed;
};

static int cmp_group(const void *pa, const void *pb)
{
	const struct group *a = pa, *b = pb;

	if (a->sec != b->sec)
		return (int)a->sec - (int)b->sec;
	if (a->cls != b->cls)
		return a->cls - b->cls;
	if (a->weight != b->weight)
		return a->weight > b->weight ? -1 : 1;
	return a->first < b->first ? -1 : a->first > b->first;
}

/* ---- text ------------------------------------------------------------------------ */

/* s in w columns, cut with ".." if longer; right-aligned when right. */
static void cell(FILE *out, const char *s, int w, bool right)
{
	int n = cm_text_cols(s);

	if (n > w) {
		cm_put_text(out, s, w > 2 ? w - 2 : w);
		if (w > 2)
			fputs("..", out);
		return;
	}
	if (right)
		fprintf(out, "%*s", w - n, "");
	cm_put_text(out, s, n);
	if (!right)
		fprintf(out, "%*s", w - n, "");
}

static void line(FILE *out, const char *s)
{
	cm_put_text(out, s, WIDTH);
	fputc('\n', out);
}

/* s broken at spaces into lines of WIDTH; the first line starts at column
 * first, continuation lines at indent. */
static void wrapped(FILE *out, const char *s, int first, int indent)
{
	int col = first;

	fprintf(out, "%*s", first, "");
	while (*s) {
		size_t n = strcspn(s, " ");
		char word[WIDTH + 1];
		int w;

		snprintf(word, sizeof(word), "%.*s", (int)(n < WIDTH ? n : WIDTH), s);
		w = cm_text_cols(word);
		if (col > first && col + 1 + w > WIDTH) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (col > first) {
			fputc(' ', out);
			col++;
		}
		col += cm_put_text(out, word, WIDTH - col);
		s += n;
		s += strspn(s, " ");
	}
	fputc('\n', out);
}

/* A value in its unit; compact drops the space ("1.5ms") for multi-run cells. */
static void fmt_val(double v, enum unit u, bool sign, bool compact, char *buf, size_t sz)
{
	const char *pre = sign ? (v > 0 ? "+" : v < 0 ? "-" : "") : (v < 0 ? "-" : "");
	double a = fabs(v);
	char tmp[32];

	if (u == U_COUNT) {
		if (a >= 1e7)
			snprintf(tmp, sizeof(tmp), a >= 1e10 ? "%.0fG" : "%.1fM", a >= 1e10 ? a / 1e9 : a / 1e6);
		else if (a == floor(a))
			snprintf(tmp, sizeof(tmp), "%.0f", a);
		else
			snprintf(tmp, sizeof(tmp), "%.1f", a);
	} else {
		uint64_t x = a >= 1.8e19 ? UINT64_MAX : (uint64_t)llround(a);

		if (u == U_NS)
			cm_fmt_ns(x, tmp, sizeof(tmp));
		else
			cm_fmt_bytes(x, tmp, sizeof(tmp));
		if (compact) {
			char *sp = strchr(tmp, ' ');

			if (sp)
				memmove(sp, sp + 1, strlen(sp));
		}
	}
	snprintf(buf, sz, "%s%s", pre, tmp);
}

static void fmt_side(const struct diff *d, const struct row *r, int s, char *buf, size_t sz)
{
	char m[24], sd[24];

	if (d->s[0].n == 1 && d->s[1].n == 1) {
		fmt_val(r->mean[s], r->unit, false, false, buf, sz);
		return;
	}
	fmt_val(r->mean[s], r->unit, false, true, m, sizeof(m));
	fmt_val(r->sd[s], r->unit, false, true, sd, sizeof(sd));
	snprintf(buf, sz, "%s \u00b1%s", m, sd);
}

static void fmt_rel(const struct row *r, char *buf, size_t sz)
{
	double p = r->rel * 100;

	if (!r->has_rel)
		snprintf(buf, sz, "new");
	else if (r->delta == 0)
		snprintf(buf, sz, "0%%");
	else if (fabs(p) < 9.95)
		snprintf(buf, sz, "%+.1f%%", p);
	else if (fabs(p) < 9999.5)
		snprintf(buf, sz, "%+.0f%%", p);
	else
		snprintf(buf, sz, "x%.0f", r->mean[1] / r->mean[0]);
}

/* Display name of an item or metric: units dropped, report keys shortened. */
static const char *disp(const char *k)
{
	static const struct { const char *key, *name; } names[] = {
		{ "voluntary_switches", "voluntary switches" },
		{ "involuntary_switches", "involuntary switches" },
		{ "runq_waits", "run-queue waits" }, { "runq_p50_ns", "run-queue p50" },
		{ "runq_p99_ns", "run-queue p99" }, { "minor", "minor faults" },
		{ "major", "major faults" }, { "total_ns", "total" }, { "p99_ns", "p99" },
		{ "duration_ns", "duration" }, { "wall_ns", "wall" }, { "oncpu_ns", "on-CPU" },
		{ "oncpu_user_ns", "on-CPU user" }, { "oncpu_syscall_ns", "on-CPU in syscalls" },
		{ "runq_ns", "run queue" }, { "runq_wakeup_ns", "run queue after wakeup" },
		{ "runq_preempt_ns", "run queue preempted" }, { "offcpu_ns", "off-CPU" },
		{ "iowait_ns", "off-CPU in io wait" }, { "unattributed_ns", "unattributed" },
	};
	static char buf[256];
	size_t n;

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (!strcmp(k, names[i].key))
			return names[i].name;
	n = strlen(k);
	if (n > 3 && !strcmp(k + n - 3, "_ns") && n - 3 < sizeof(buf)) {
		snprintf(buf, sizeof(buf), "%.*s", (int)(n - 3), k);
		return buf;
	}
	return k;
}

#define NCOL 6
struct tline {
	char *c[NCOL];		/* name, before, after, delta, rel, share */
	bool header;		/* a group heading: only the name column */
	bool noise;
};

struct table {
	struct tline *l;
	int n, cap;
};

static void tadd(struct table *t, struct tline l)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->l = xrealloc(t->l, t->cap * sizeof(*t->l));
	}
	t->l[t->n++] = l;
}

static void row_line(const struct diff *d, struct table *t, const struct row *r, const char *name)
{
	char b[64], a[64], dl[64], rel[32], sh[64] = "";

	fmt_side(d, r, 0, b, sizeof(b));
	fmt_side(d, r, 1, a, sizeof(a));
	fmt_val(r->delta, r->unit, true, false, dl, sizeof(dl));
	fmt_rel(r, rel, sizeof(rel));
	if (r->share[0])
		snprintf(sh, sizeof(sh), "%.1f%% > %.1f%%", 100 * r->share_mean[0],
			 100 * r->share_mean[1]);
	tadd(t, (struct tline){ .c = { xstrdup(name), xstrdup(b), xstrdup(a), xstrdup(dl),
				       xstrdup(rel), xstrdup(sh) }, .noise = r->noise });
}

static void print_table(FILE *out, struct table *t, bool shares)
{
	int w[NCOL] = { 0 }, used = 2, ncol = shares ? NCOL : NCOL - 1;
	static const char *const head[NCOL] = { "", "before", "after", "delta", "rel", "share" };

	for (int c = 1; c < ncol; c++) {
		w[c] = cm_text_cols(head[c]);
		for (int i = 0; i < t->n; i++)
			if (!t->l[i].header && cm_text_cols(t->l[i].c[c]) > w[c])
				w[c] = cm_text_cols(t->l[i].c[c]);
		used += w[c] + 2;
	}
	used += 2;	/* noise mark */
	for (int i = 0; i < t->n; i++)
		if (!t->l[i].header && cm_text_cols(t->l[i].c[0]) > w[0])
			w[0] = cm_text_cols(t->l[i].c[0]);
	if (w[0] > WIDTH - used)
		w[0] = WIDTH - used > 12 ? WIDTH - used : 12;
	fprintf(out, "  %*s", w[0], "");
	for (int c = 1; c < ncol; c++) {
		fputs("  ", out);
		cell(out, head[c], w[c], true);
	}
	fputc('\n', out);
	for (int i = 0; i < t->n; i++) {
		struct tline *l = &t->l[i];

		if (l->header) {
			fputs("  ", out);
			cm_put_text(out, l->c[0], WIDTH - 2);
			fputc('\n', out);
			continue;
		}
		fputs("  ", out);
		cell(out, l->c[0], w[0], false);
		for (int c = 1; c < ncol; c++) {
			fputs("  ", out);
			cell(out, l->c[c], w[c], true);
		}
		fputs(l->noise ? " ~" : "", out);
		fputc('\n', out);
	}
	for (int i = 0; i < t->n; i++)
		for (int c = 0; c < NCOL; c++)
			free(t->l[i].c[c]);
	free(t->l);
	*t = (struct table){ 0 };
}

static char *row_name(const struct row *r, const char *indent)
{
	const char *item = r->label ? r->label : r->item;

	if (!strncmp(item, "offcpu:", 7))
		return xasprintf("%s%s%soff-CPU %s", indent, r->proc ? r->proc : "", r->proc ? " " : "",
				 item + 7);
	return xasprintf("%s%s%s%s", indent, r->proc ? r->proc : "", r->proc ? " " : "", disp(item));
}

/* True when every process row belongs to one process label: its ledger then
 * repeats the totals line for line. */
static bool one_process(const struct diff *d)
{
	const char *p = NULL;

	for (size_t i = 0; i < d->nrows; i++) {
		if (!d->rows[i].proc)
			continue;
		if (p && strcmp(p, d->rows[i].proc))
			return false;
		p = d->rows[i].proc;
	}
	return p != NULL;
}

static void print_section(FILE *out, struct diff *d, struct group *g, size_t ng, enum section sec)
{
	size_t total = 0, changed = 0, shown = 0;
	struct table t = { 0 };
	size_t limit = sec == SEC_CONTACT || sec == SEC_TOTALS || d->all ? SIZE_MAX : TOP_GROUPS;

	for (size_t i = 0; i < ng; i++) {
		if (g[i].sec != sec)
			continue;
		total++;
		changed += g[i].changed;
		if ((!g[i].changed && !d->all) || shown >= limit)
			continue;
		shown++;
		struct row *r = &d->rows[g[i].first];

		if (g[i].n == 1 && !r->metric) {
			char *name = row_name(r, "");

			row_line(d, &t, r, name);
			free(name);
			continue;
		}
		tadd(&t, (struct tline){ .header = true,
			 .c = { xasprintf("%s%s%s", r->proc ? r->proc : "", r->proc ? ": " : "", r->item) } });
		for (size_t k = 0; k < g[i].n; k++) {
			if (k && !d->all && d->rows[g[i].first + k].delta == 0)
				continue;	/* e.g. errors 0 -> 0; the first (count) stays */
			char *name = xasprintf("    %s", disp(d->rows[g[i].first + k].metric));

			row_line(d, &t, &d->rows[g[i].first + k], name);
			free(name);
		}
	}
	if (!total)
		return;
	if (sec == SEC_LEDGER && !d->all && one_process(d)) {
		fprintf(out, "\n%s: one process, the same as the totals\n", sec_title[sec]);
		for (int i = 0; i < t.n; i++)
			for (int c = 0; c < NCOL; c++)
				free(t.l[i].c[c]);
		free(t.l);
		return;
	}
	fprintf(out, "\n%s", sec_title[sec]);
	if (!changed && !d->all) {
		fprintf(out, ": no change\n");
		return;
	}
	fputc('\n', out);
	print_table(out, &t, sec == SEC_CONTACT);
	if (shown < total) {
		char msg[160];

		if (changed > shown)
			snprintf(msg, sizeof(msg), "  (%zu more changed, %zu unchanged: --all or -o FILE for every row)",
				 changed - shown, total - changed);
		else
			snprintf(msg, sizeof(msg), "  (%zu unchanged)", total - changed);
		line(out, msg);
	}
}

static const char *side_name(int s)
{
	return s ? "after" : "before";
}

static char *command_of(json_object *r)
{
	json_object *t = obj(r, "target"), *a;
	char *s = xstrdup("");

	if ((a = arr(t, "command")) || (a = arr(t, "pids"))) {
		bool pids = !arr(t, "command");

		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			const char *sep = i ? (pids ? "," : " ") : (pids ? "pid " : "");
			char *n = xasprintf("%s%s%s", s, sep, x ? json_object_get_string(x) : "");

			free(s);
			s = n;
		}
	}
	return s;
}

/* One token list against another: what was removed and what was added
 * (kernel command lines are long and differ in a word or two). */
static void print_token_diff(FILE *out, const char *a, const char *b)
{
	char *msg = xstrdup("");

	for (int pass = 0; pass < 2; pass++) {
		const char *from = pass ? b : a, *other = pass ? a : b;
		char *copy = xstrdup(from), *save = NULL;
		bool any = false;

		for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			bool found = false;
			size_t n = strlen(tok);

			for (const char *p = other; !found && (p = strstr(p, tok)); p += n)
				found = (p == other || p[-1] == ' ') && (p[n] == ' ' || !p[n]);
			if (found)
				continue;
			char *m = xasprintf("%s%s%s", msg, any ? " " : (pass ? (*msg ? "; added " : "added ") : "removed "), tok);

			free(msg);
			msg = m;
			any = true;
		}
		free(copy);
	}
	wrapped(out, *msg ? msg : "(same words, other order)", 6, 8);
	free(msg);
}

static void print_env(FILE *out, struct diff *d)
{
	int n = 0;

	for (size_t i = 0; i < d->nenv; i++)
		n += env_changed(&d->env[i]);
	if (!n) {
		fprintf(out, "\nenvironment: same host facts, target context and features\n");
		return;
	}
	fprintf(out, "\nenvironment (%d difference%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < d->nenv; i++) {
		struct env_fact *f = &d->env[i];
		const char *a = f->val[0] ? f->val[0] : "(absent)", *b = f->val[1] ? f->val[1] : "(absent)";
		int k = cm_text_cols(f->key);

		if (!env_changed(f))
			continue;
		if (2 + k + 2 + cm_text_cols(a) + 4 + cm_text_cols(b) <= WIDTH) {
			fputs("  ", out);
			cm_put_text(out, f->key, k);
			fputs("  ", out);
			cm_put_text(out, a, cm_text_cols(a));
			fputs(" -> ", out);
			cm_put_text(out, b, cm_text_cols(b));
			fputc('\n', out);
			continue;
		}
		fputs("  ", out);
		cm_put_text(out, f->key, WIDTH - 2);
		fputc('\n', out);
		if (f->val[0] && f->val[1] && strchr(a, ' ') && strchr(b, ' ') && !strstr(a, " | ") &&
		    !strstr(b, " | ")) {
			print_token_diff(out, a, b);
			continue;
		}
		fprintf(out, "    %s: ", side_name(0));
		cm_put_text(out, a, WIDTH - 12);
		fprintf(out, "\n    %s:  ", side_name(1));
		cm_put_text(out, b, WIDTH - 12);
		fputc('\n', out);
	}
}

static void print_text(FILE *out, struct diff *d, struct group *g, size_t ng)
{
	bool multi = d->s[0].n > 1 || d->s[1].n > 1;

	fprintf(out, "contactmap diff: %d report%s before, %d after\n", d->s[0].n,
		d->s[0].n == 1 ? "" : "s", d->s[1].n);
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d->s[s].n; i++) {
			char *cmd = command_of(d->s[s].r[i]), dur[32];
			char *l = xasprintf("  %-6s  %7s  %s  %s", side_name(s),
					    cm_fmt_ns((uint64_t)num(obj(d->s[s].r[i], "window"), "duration_ns"),
						      dur, sizeof(dur)), d->s[s].paths[i], cmd);

			line(out, l);
			free(l);
			free(cmd);
		}
	}
	print_env(out, d);
	for (int i = 0; i < d->nnotes; i++) {
		char *l = xasprintf("note: %s", d->notes[i]);

		fputc('\n', out);
		wrapped(out, l, 0, 6);
		free(l);
	}
	for (int sec = 0; sec < SEC_N; sec++)
		if (sec != SEC_WINDOW)
			print_section(out, d, g, ng, sec);
	fputc('\n', out);
	if (multi)
		fprintf(out, "values: mean \u00b1stddev of %d before and %d after runs. ~ marks noise:\n"
			     "|delta| is below the larger run-to-run spread (max-min) of the two sides.\n",
			d->s[0].n, d->s[1].n);
	else
		fprintf(out, "one run per side: give several (a1 a2 -- b1 b2) to tell change from noise.\n");
}

/* ---- JSON ------------------------------------------------------------------------- */

static json_object *jnum(double v)
{
	/* counts and means of equal integers stay integers */
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		return json_object_new_int64((int64_t)v);
	return json_object_new_double(v);
}

static json_object *side_json(struct diff *d, int s)
{
	json_object *o = json_object_new_object(), *files = json_object_new_array(),
		    *cmds = json_object_new_array(), *durs = json_object_new_array();

	for (int i = 0; i < d->s[s].n; i++) {
		char *cmd = command_of(d->s[s].r[i]);

		json_object_array_add(files, json_object_new_string(d->s[s].paths[i]));
		json_object_array_add(cmds, json_object_new_string(cmd));
		json_object_array_add(durs, jnum(num(obj(d->s[s].r[i], "window"), "duration_ns")));
		free(cmd);
	}
	json_object_object_add(o, "runs", json_object_new_int(d->s[s].n));
	json_object_object_add(o, "files", files);
	json_object_object_add(o, "commands", cmds);
	json_object_object_add(o, "window_ns", durs);
	return o;
}

static json_object *strings_json(char **list, int n)
{
	json_object *a = json_object_new_array();

	for (int i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(list[i]));
	return a;
}

static json_object *build_json(struct diff *d, struct group *g, size_t ng)
{
	json_object *o = json_object_new_object(), *tool = json_object_new_object(),
		    *env = json_object_new_array(), *rows = json_object_new_array();

	json_object_object_add(o, "schema", json_object_new_string(DIFF_SCHEMA));
	json_object_object_add(tool, "name", json_object_new_string("contactmap"));
	json_object_object_add(tool, "version", json_object_new_string(CM_VERSION));
	json_object_object_add(o, "tool", tool);
	json_object_object_add(o, "before", side_json(d, 0));
	json_object_object_add(o, "after", side_json(d, 1));
	json_object_object_add(o, "warnings", strings_json(d->warnings, d->nwarn));
	json_object_object_add(o, "notes", strings_json(d->notes, d->nnotes));
	for (size_t i = 0; i < d->nenv; i++) {
		struct env_fact *f = &d->env[i];
		json_object *e;

		if (!env_changed(f))
			continue;
		e = json_object_new_object();
		json_object_object_add(e, "key", json_object_new_string(f->key));
		json_object_object_add(e, "before", f->val[0] ? json_object_new_string(f->val[0]) : NULL);
		json_object_object_add(e, "after", f->val[1] ? json_object_new_string(f->val[1]) : NULL);
		json_object_array_add(env, e);
	}
	json_object_object_add(o, "env_changes", env);
	for (size_t i = 0; i < ng; i++) {
		for (size_t k = 0; k < g[i].n; k++) {
			struct row *r = &d->rows[g[i].first + k];
			json_object *j = json_object_new_object();

			json_object_object_add(j, "section", json_object_new_string(sec_key[r->sec]));
			json_object_object_add(j, "key", json_object_new_string(r->key));
			if (r->proc)
				json_object_object_add(j, "process", json_object_new_string(r->proc));
			json_object_object_add(j, "item", json_object_new_string(r->item));
			if (r->metric)
				json_object_object_add(j, "metric", json_object_new_string(r->metric));
			json_object_object_add(j, "unit", json_object_new_string(unit_key[r->unit]));
			json_object_object_add(j, "before", jnum(r->mean[0]));
			json_object_object_add(j, "after", jnum(r->mean[1]));
			json_object_object_add(j, "delta", jnum(r->delta));
			json_object_object_add(j, "rel", r->has_rel ? json_object_new_double(r->rel) : NULL);
			json_object_object_add(j, "noise", json_object_new_boolean(r->noise));
			if (r->share[0]) {
				json_object_object_add(j, "before_share", json_object_new_double(r->share_mean[0]));
				json_object_object_add(j, "after_share", json_object_new_double(r->share_mean[1]));
			}
			for (int s = 0; s < 2; s++) {
				const char *sn = side_name(s);
				char key[32];
				json_object *runs;

				if (d->s[s].n < 2)
					continue;
				runs = json_object_new_array();
				for (int run = 0; run < d->s[s].n; run++)
					json_object_array_add(runs, jnum(r->v[s][run]));
				snprintf(key, sizeof(key), "%s_runs", sn);
				json_object_object_add(j, key, runs);
				snprintf(key, sizeof(key), "%s_min", sn);
				json_object_object_add(j, key, jnum(r->min[s]));
				snprintf(key, sizeof(key), "%s_max", sn);
				json_object_object_add(j, key, jnum(r->max[s]));
				snprintf(key, sizeof(key), "%s_stddev", sn);
				json_object_object_add(j, key, json_object_new_double(r->sd[s]));
			}
			json_object_array_add(rows, j);
		}
	}
	json_object_object_add(o, "rows", rows);
	return o;
}

/* ---- main ---------------------------------------------------------------------------- */

static const char diff_usage[] =
"Usage: contactmap diff [-o FILE] [-a] BEFORE.json AFTER.json\n"
"       contactmap diff [-o FILE] [-a] BEFORE.json... -- AFTER.json...\n"
"\n"
"Compares contactmap reports row by row: environment first (host facts, the\n"
"target's cgroup and variables, features), then the contact map, the totals\n"
"and per-process ledgers, syscalls, scheduler, faults and block I/O, largest\n"
"changes first. With several reports per side (repeated runs) each side is\n"
"their mean, and a change smaller than a side's run-to-run spread (max-min) is\n"
"marked as noise (~).\n"
"\n"
"Options:\n"
"  -o, --json FILE   also write the comparison as JSON (contactmap-diff/1; '-' = stdout)\n"
"  -a, --all         show every row in text, unchanged ones too\n"
"  -h, --help        this help\n"
"\n"
"Processes are matched by pid when every report has that pid (attach mode),\n"
"otherwise by comm and order of appearance.\n";

static void free_diff(struct diff *d)
{
	for (size_t i = 0; i < d->nrows; i++) {
		struct row *r = &d->rows[i];

		free(r->proc);
		free(r->item);
		free(r->metric);
		free(r->label);
		free(r->key);
		for (int s = 0; s < 2; s++) {
			free(r->v[s]);
			free(r->share[s]);
		}
	}
	free(d->rows);
	free(d->hash);
	for (size_t i = 0; i < d->nenv; i++) {
		free(d->env[i].key);
		free(d->env[i].val[0]);
		free(d->env[i].val[1]);
	}
	free(d->env);
	for (int i = 0; i < d->nwarn; i++)
		free(d->warnings[i]);
	for (int i = 0; i < d->nnotes; i++)
		free(d->notes[i]);
	free(d->warnings);
	free(d->notes);
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d->s[s].n; i++)
			json_object_put(d->s[s].r[i]);
		free(d->s[s].r);
		free(d->s[s].paths);
	}
}

int cm_diff_main(int argc, char **argv)
{
	struct diff d = { 0 };
	const char *json_path = NULL;
	char **files = xcalloc(argc, sizeof(char *));
	int nfiles = 0, split = -1, rc = 1;
	struct group *g = NULL;
	size_t ng = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			if (split >= 0) {
				cm_err("diff takes one '--' between BEFORE and AFTER reports");
				goto out;
			}
			split = nfiles;
		} else if (!strcmp(a, "-o") || !strcmp(a, "--json")) {
			if (++i >= argc) {
				cm_err("option '%s' needs a file (see contactmap diff --help)", a);
				goto out;
			}
			json_path = argv[i];
		} else if (!strncmp(a, "--json=", 7)) {
			json_path = a + 7;
		} else if (!strcmp(a, "-a") || !strcmp(a, "--all")) {
			d.all = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(diff_usage, stdout);
			rc = 0;
			goto out;
		} else if (a[0] == '-' && a[1]) {
			cm_err("unknown option '%s' for diff (see contactmap diff --help)", a);
			goto out;
		} else {
			files[nfiles++] = argv[i];
		}
	}
	if (split < 0) {
		if (nfiles != 2) {
			if (nfiles < 2)
				cm_err("diff needs a BEFORE and an AFTER report: contactmap diff BEFORE.json AFTER.json");
			else
				cm_err("diff got %d reports: separate the sides with '--': "
				       "contactmap diff A1.json A2.json -- B1.json B2.json", nfiles);
			goto out;
		}
		split = 1;
	}
	if (split == 0 || split == nfiles) {
		cm_err("no %s report given: contactmap diff BEFORE.json... -- AFTER.json...",
		       split == 0 ? "BEFORE" : "AFTER");
		goto out;
	}
	d.s[0] = (struct side){ .n = split, .paths = xcalloc(split, sizeof(char *)),
				.r = xcalloc(split, sizeof(json_object *)) };
	d.s[1] = (struct side){ .n = nfiles - split, .paths = xcalloc(nfiles - split, sizeof(char *)),
				.r = xcalloc(nfiles - split, sizeof(json_object *)) };
	for (int i = 0; i < nfiles; i++) {
		int s = i >= split, k = s ? i - split : i;
		json_object *r = cm_read_json(files[i]);

		if (!r)
			goto out;
		if (!arr(r, "processes") && !arr(r, "contact_map") && !obj(r, "totals")) {
			cm_err("%s is not a contactmap report: it has no processes, totals or contact_map",
			       files[i]);
			json_object_put(r);
			goto out;
		}
		d.s[s].paths[k] = !strcmp(files[i], "-") ? "stdin" : files[i];
		d.s[s].r[k] = r;
	}
	if (json_path && cm_check_writable(json_path))
		goto out;

	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d.s[s].n; i++) {
			add_env(&d, s, d.s[s].r[i]);
			add_report(&d, s, i);
		}
	}
	env_finish(&d);
	check_hosts(&d);
	for (size_t i = 0; i < d.nrows; i++)
		compute(&d, &d.rows[i]);

	/* windows of different length: absolute ns grow with the window, shares do not */
	for (size_t i = 0; i < d.nrows; i++) {
		struct row *r = &d.rows[i];
		char b[32], a[32];

		if (r->sec != SEC_WINDOW || r->mean[0] <= 0 ||
		    fabs(r->delta) <= WINDOW_NOTE_FRAC * r->mean[0])
			continue;
		add_msg(&d.notes, &d.nnotes,
			xasprintf("the windows differ by %+.0f%% (%s vs %s): absolute times scale with "
				  "the window; compare shares in the contact map",
				  100 * r->rel, cm_fmt_ns((uint64_t)llround(r->mean[0]), b, sizeof(b)),
				  cm_fmt_ns((uint64_t)llround(r->mean[1]), a, sizeof(a))));
	}

	/* groups (rows of one item, e.g. a syscall's count/errors/total/p99),
	 * largest change first within each section */
	qsort(d.rows, d.nrows, sizeof(*d.rows), cmp_group_key);
	g = xcalloc(d.nrows, sizeof(*g));
	for (size_t i = 0; i < d.nrows; i++) {
		struct row *r = &d.rows[i];

		if (!ng || g[ng - 1].sec != r->sec || cmp_nullstr(d.rows[g[ng - 1].first].proc, r->proc) ||
		    strcmp(d.rows[g[ng - 1].first].item, r->item))
			g[ng++] = (struct group){ .first = i, .sec = r->sec, .cls = U_COUNT + 1 };
		struct group *gr = &g[ng - 1];

		gr->n++;
		gr->changed |= r->delta != 0;
		if ((int)r->unit < gr->cls) {
			gr->cls = r->unit;
			gr->weight = 0;
		}
		if ((int)r->unit == gr->cls)
			gr->weight = fmax(gr->weight, fabs(r->delta));
	}
	qsort(g, ng, sizeof(*g), cmp_group);

	rc = 0;
	print_text(json_path && !strcmp(json_path, "-") ? stderr : stdout, &d, g, ng);
	if (json_path) {
		json_object *j = build_json(&d, g, ng);

		if (cm_write_json(j, json_path))
			rc = 1;
		json_object_put(j);
	}
	if (fflush(stdout) == EOF)
		rc = 1;
out:
	free(g);
	free(files);
	free_diff(&d);
	return rc;
}
