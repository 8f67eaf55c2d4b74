// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * contactmap diff, part one: reports read into rows. Every report of a side
 * adds its values to rows keyed by section, process label and item, so that
 * runs line up; the environment (host facts, target context, features) is
 * flattened into facts; then each row gets its mean, spread and noise
 * judgement, and rows of one item are grouped, largest change first.
 *
 * Like render.c it reads nothing but the reports and treats every key as
 * optional: an absent number is 0, an absent section adds no rows.
 */
#include <inttypes.h>
#include <math.h>
#include "diff.h"

const char *const diff_sec_key[SEC_N] = {
	"contact_map", "totals", "ledger", "syscalls", "sched", "faults", "block_io", "window",
};
const char *const diff_sec_title[SEC_N] = {
	"OS contact map (all threads)", "totals (ledger of all threads)", "process ledgers",
	"syscalls", "scheduler", "page faults", "block I/O", "window",
};
const char *const diff_unit_key[] = { "ns", "bytes", "count" };


/* Numbers in reports are non-negative integers or shares; anything else
 * (a string, null, NaN) reads as 0. */
double diff_num(json_object *o, const char *key)
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
		put(d, s, run, sec, proc, ledger_fields[i], NULL, U_NS, diff_num(L, ledger_fields[i]));
	if (causes) {
		json_object_object_foreach(causes, cause, val) {
			char *item = xasprintf("offcpu:%s", cause);

			(void)val;
			put(d, s, run, sec, proc, item, NULL, U_NS, diff_num(causes, cause));
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
				snprintf(nrname, sizeof(nrname), "syscall_%.0f", diff_num(x, "nr"));
				name = nrname;
			}
			put(d, s, run, SEC_SYSCALLS, label, name, "count", U_COUNT, diff_num(x, "count"));
			put(d, s, run, SEC_SYSCALLS, label, name, "errors", U_COUNT, diff_num(x, "errors"));
			put(d, s, run, SEC_SYSCALLS, label, name, "total_ns", U_NS, diff_num(x, "total_ns"));
			put_max(d, s, run, SEC_SYSCALLS, label, name, "p99_ns", diff_num(x, "p99_ns"));
		}
	}
	if ((sc = obj(p, "sched"))) {
		put_max(d, s, run, SEC_SCHED, label, "runq_p99_ns", NULL, diff_num(sc, "runq_p99_ns"));
		put_max(d, s, run, SEC_SCHED, label, "runq_p50_ns", NULL, diff_num(sc, "runq_p50_ns"));
		for (size_t i = 0; i < sizeof(sched_counts) / sizeof(*sched_counts); i++)
			if (has_num(sc, sched_counts[i]))
				put(d, s, run, SEC_SCHED, label, sched_counts[i], NULL, U_COUNT,
				    diff_num(sc, sched_counts[i]));
	}
	if ((f = obj(p, "faults"))) {
		put(d, s, run, SEC_FAULTS, label, "minor", NULL, U_COUNT, diff_num(f, "minor"));
		put(d, s, run, SEC_FAULTS, label, "major", NULL, U_COUNT, diff_num(f, "major"));
	}
	if ((a = arr(p, "block_io"))) {
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			const char *dev = cm_json_str(x, "device"), *op = cm_json_str(x, "op");
			char *item = xasprintf("%s %s", dev ? dev : "?", op ? op : "?");

			put(d, s, run, SEC_BLOCK, label, item, "count", U_COUNT, diff_num(x, "count"));
			put(d, s, run, SEC_BLOCK, label, item, "bytes", U_BYTES, diff_num(x, "bytes"));
			put(d, s, run, SEC_BLOCK, label, item, "total_ns", U_NS, diff_num(x, "total_ns"));
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

				found = has_num(p, "pid") && (int64_t)diff_num(p, "pid") == pid &&
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
	    diff_num(obj(r, "window"), "duration_ns"));
	if ((cm = arr(r, "contact_map"))) {
		for (size_t i = 0; i < json_object_array_length(cm); i++) {
			json_object *x = json_object_array_get_idx(cm, i);
			const char *ss = cm_json_str(x, "subsystem"), *label = cm_json_str(x, "label");
			struct row *row;

			if (!ss)
				continue;
			row = put(d, s, run, SEC_CONTACT, NULL, ss, NULL, U_NS, diff_num(x, "time_ns"));
			if (!row->share[0]) {
				row->share[0] = xcalloc(d->s[0].n, sizeof(double));
				row->share[1] = xcalloc(d->s[1].n, sizeof(double));
			}
			row->share[s][run] += diff_num(x, "share");
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
		if (has_num(p, "pid") && pid_everywhere(d, (int64_t)diff_num(p, "pid"), comm)) {
			label = xasprintf("%s[%" PRId64 "]", comm, (int64_t)diff_num(p, "pid"));
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

bool diff_env_changed(const struct env_fact *f)
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

			if (strcmp(f->key, keys[i]) || !diff_env_changed(f))
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

const char *diff_side_name(int s)
{
	return s ? "after" : "before";
}

char *diff_command_of(json_object *r)
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

/* ---- building ------------------------------------------------------------- */

void diff_build(struct diff *d, struct group **gp, size_t *ngp)
{
	struct group *g;
	size_t ng = 0;

	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d->s[s].n; i++) {
			add_env(d, s, d->s[s].r[i]);
			add_report(d, s, i);
		}
	}
	env_finish(d);
	check_hosts(d);
	for (size_t i = 0; i < d->nrows; i++)
		compute(d, &d->rows[i]);

	/* windows of different length: absolute ns grow with the window, shares do not */
	for (size_t i = 0; i < d->nrows; i++) {
		struct row *r = &d->rows[i];
		char b[32], a[32];

		if (r->sec != SEC_WINDOW || r->mean[0] <= 0 ||
		    fabs(r->delta) <= WINDOW_NOTE_FRAC * r->mean[0])
			continue;
		add_msg(&d->notes, &d->nnotes,
			xasprintf("the windows differ by %+.0f%% (%s vs %s): absolute times scale with "
				  "the window; compare shares in the contact map",
				  100 * r->rel, cm_fmt_ns((uint64_t)llround(r->mean[0]), b, sizeof(b)),
				  cm_fmt_ns((uint64_t)llround(r->mean[1]), a, sizeof(a))));
	}

	/* groups (rows of one item, e.g. a syscall's count/errors/total/p99),
	 * largest change first within each section */
	qsort(d->rows, d->nrows, sizeof(*d->rows), cmp_group_key);
	g = xcalloc(d->nrows, sizeof(*g));
	for (size_t i = 0; i < d->nrows; i++) {
		struct row *r = &d->rows[i];

		if (!ng || g[ng - 1].sec != r->sec || cmp_nullstr(d->rows[g[ng - 1].first].proc, r->proc) ||
		    strcmp(d->rows[g[ng - 1].first].item, r->item))
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
	*gp = g;
	*ngp = ng;
}

void diff_free(struct diff *d)
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
