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
 * The text it prints is diff_text.c's. Like render.c it reads nothing but the reports and treats every key as
 * optional: an absent number is 0, an absent section adds no rows.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"

#include "diff.h"
#include "outfile.h"

const char *const diff_sec_key[SEC_N] = {
	"contact_map", "totals", "ledger", "syscalls", "sched", "faults", "block_io", "window",
};
const char *const diff_sec_title[SEC_N] = {
	"OS contact map (all threads)", "totals (ledger of all threads)", "process ledgers",
	"syscalls", "scheduler", "page faults", "block I/O", "window",
};
const char *const diff_unit_key[] = { "ns", "bytes", "count" };

/* ---- small helpers ---------------------------------------------------------- */

void *diff_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		cm_err("out of memory");
		exit(1);
	}
	return q;
}

void *diff_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p) {
		cm_err("out of memory");
		exit(1);
	}
	return p;
}

char *diff_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d) {
		cm_err("out of memory");
		exit(1);
	}
	return d;
}

char *diff_xasprintf(const char *fmt, ...)
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

/* argv joined by spaces, or "pid 1,2" in attach mode. */
char *diff_command_of(json_object *r)
{
	json_object *t = obj(r, "target"), *a;
	char *s = diff_xstrdup("");

	if ((a = arr(t, "command")) || (a = arr(t, "pids"))) {
		bool pids = !arr(t, "command");

		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);
			const char *sep = i ? (pids ? "," : " ") : (pids ? "pid " : "");
			char *n = diff_xasprintf("%s%s%s", s, sep, x ? json_object_get_string(x) : "");

			free(s);
			s = n;
		}
	}
	return s;
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
	d->hash = diff_xcalloc(ncap, sizeof(*d->hash));
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
	char *key = diff_xasprintf("%s%s%s%s%s", proc ? proc : "", proc ? "/" : "", item,
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
		d->rows = diff_xrealloc(d->rows, d->cap * sizeof(*d->rows));
	}
	struct row *r = &d->rows[d->nrows];

	*r = (struct row){ .sec = sec, .unit = unit, .key = key, .order = d->nrows,
			   .proc = proc ? diff_xstrdup(proc) : NULL, .item = diff_xstrdup(item),
			   .metric = metric ? diff_xstrdup(metric) : NULL };
	for (int s = 0; s < 2; s++)
		r->v[s] = diff_xcalloc(d->s[s].n, sizeof(double));
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
			char *item = diff_xasprintf("offcpu:%s", cause);

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
			char *item = diff_xasprintf("%s %s", dev ? dev : "?", op ? op : "?");

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
				row->share[0] = diff_xcalloc(d->s[0].n, sizeof(double));
				row->share[1] = diff_xcalloc(d->s[1].n, sizeof(double));
			}
			row->share[s][run] += diff_num(x, "share");
			if (!row->label) {
				int k = cm_subsys_from_key(ss);

				row->label = diff_xstrdup(label ? label : k >= 0 ? cm_subsys_label(k) : ss);
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
			label = diff_xasprintf("%s[%" PRId64 "]", comm, (int64_t)diff_num(p, "pid"));
		} else {
			for (k = 0; k < nseen && strcmp(seen[k].comm, comm); k++)
				;
			if (k == nseen) {
				seen = diff_xrealloc(seen, (nseen + 1) * sizeof(*seen));
				seen[nseen].comm = diff_xstrdup(comm);
				seen[nseen++].n = 0;
			}
			label = ++seen[k].n == 1 ? diff_xstrdup(comm) : diff_xasprintf("%s#%d", comm, seen[k].n);
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
		d->env = diff_xrealloc(d->env, d->envcap * sizeof(*d->env));
	}
	d->env[d->nenv] = (struct env_fact){ .key = diff_xstrdup(key) };
	return &d->env[d->nenv++];
}

static void env_add_value(char **set, const char *v)
{
	/* a set of distinct values, " | "-joined, in order of appearance */
	if (!*set) {
		*set = diff_xstrdup(v);
		return;
	}
	for (const char *p = *set; p;) {
		const char *e = strstr(p, " | ");
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == strlen(v) && !strncmp(p, v, n))
			return;
		p = e ? e + 3 : NULL;
	}
	char *n = diff_xasprintf("%s | %s", *set, v);

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
			char *key = diff_xasprintf("%s.%s", prefix, k);

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
			char *joined = diff_xstrdup("");

			for (size_t i = 0; i < n; i++) {
				json_object *x = json_object_array_get_idx(o, i);
				char *j = diff_xasprintf("%s%s%s", joined, i ? " " : "",
						    x ? json_object_get_string(x) : "null");

				free(joined);
				joined = j;
			}
			env_put(d, s, prefix, joined);
			free(joined);
		} else {
			for (size_t i = 0; i < n; i++) {
				char *key = diff_xasprintf("%s.%zu", prefix, i);

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
			key = diff_xasprintf("target.%s", k);
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
	*list = diff_xrealloc(*list, (*n + 1) * sizeof(**list));
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
			m = diff_xasprintf("%s%s%s %s vs %s", msg ? msg : "", msg ? ", " : "", keys[i],
				      f->val[0] ? f->val[0] : "(unknown)",
				      f->val[1] ? f->val[1] : "(unknown)");
			free(msg);
			msg = m;
		}
	}
	if (msg) {
		char *w = diff_xasprintf("reports come from different machines or kernels (%s): "
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
		char *cmd = diff_command_of(d->s[s].r[i]);

		json_object_array_add(files, json_object_new_string(d->s[s].paths[i]));
		json_object_array_add(cmds, json_object_new_string(cmd));
		json_object_array_add(durs, jnum(diff_num(obj(d->s[s].r[i], "window"), "duration_ns")));
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

		if (!diff_env_changed(f))
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

			json_object_object_add(j, "section", json_object_new_string(diff_sec_key[r->sec]));
			json_object_object_add(j, "key", json_object_new_string(r->key));
			if (r->proc)
				json_object_object_add(j, "process", json_object_new_string(r->proc));
			json_object_object_add(j, "item", json_object_new_string(r->item));
			if (r->metric)
				json_object_object_add(j, "metric", json_object_new_string(r->metric));
			json_object_object_add(j, "unit", json_object_new_string(diff_unit_key[r->unit]));
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
	struct cm_out *jout = NULL;
	char **files = diff_xcalloc(argc, sizeof(char *));
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
	d.s[0] = (struct side){ .n = split, .paths = diff_xcalloc(split, sizeof(char *)),
				.r = diff_xcalloc(split, sizeof(json_object *)) };
	d.s[1] = (struct side){ .n = nfiles - split, .paths = diff_xcalloc(nfiles - split, sizeof(char *)),
				.r = diff_xcalloc(nfiles - split, sizeof(json_object *)) };
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
	/* opened now (and refused now, if it must be), written at the end */
	if (json_path && !(jout = cm_out_open(json_path, "comparison", "-o")))
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
			diff_xasprintf("the windows differ by %+.0f%% (%s vs %s): absolute times scale with "
				  "the window; compare shares in the contact map",
				  100 * r->rel, cm_fmt_ns((uint64_t)llround(r->mean[0]), b, sizeof(b)),
				  cm_fmt_ns((uint64_t)llround(r->mean[1]), a, sizeof(a))));
	}

	/* groups (rows of one item, e.g. a syscall's count/errors/total/p99),
	 * largest change first within each section */
	qsort(d.rows, d.nrows, sizeof(*d.rows), cmp_group_key);
	g = diff_xcalloc(d.nrows, sizeof(*g));
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
	diff_print_text(json_path && !strcmp(json_path, "-") ? stderr : stdout, &d, g, ng);
	if (json_path) {
		json_object *j = build_json(&d, g, ng);

		if (cm_write_json_out(j, jout))
			rc = 1;
		jout = NULL;
		json_object_put(j);
	}
	/* the text lost to a full disk or a closed pipe is a failure too */
	if (cm_out_check_stream(json_path && !strcmp(json_path, "-") ? stderr : stdout,
				"comparison", json_path && !strcmp(json_path, "-") ? "stderr" : "stdout"))
		rc = 1;
out:
	cm_out_abort(jout);
	free(g);
	free(files);
	free_diff(&d);
	return rc;
}

