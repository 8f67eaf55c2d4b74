// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The interval stream (-i): one JSON line per interval with what happened in
 * it. Each line is the difference of two cumulative reports, and the last is
 * taken against the final report, so the lines add up exactly to it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "interval.h"


struct cm_interval {
	FILE *fp;		/* opened at the first line: a run that fails leaves no file */
	char *path;
	json_object *prev;	/* the last cumulative report */
	uint64_t n;
};

struct cm_interval *cm_interval_open(const char *path)
{
	struct cm_interval *iv = calloc(1, sizeof(*iv));

	if (!iv)
		return NULL;
	if (cm_check_writable(path)) {
		free(iv);
		return NULL;
	}
	iv->path = strdup(path);
	return iv;
}

static int64_t geti(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/* cur - prev for every integer of a flat object (one level of nesting, for
 * offcpu_by_cause); keys absent from prev count from 0; zeros left out of
 * nested objects. */
static json_object *delta_obj(json_object *cur, json_object *prev)
{
	json_object *d = json_object_new_object();

	json_object_object_foreach(cur, k, v) {
		json_object *pv = NULL;

		if (prev)
			json_object_object_get_ex(prev, k, &pv);
		if (json_object_is_type(v, json_type_int)) {
			json_object_object_add(d, k, json_object_new_int64(json_object_get_int64(v) -
									   (pv ? json_object_get_int64(pv) : 0)));
		} else if (json_object_is_type(v, json_type_object)) {
			json_object *sub = delta_obj(v, pv);
			json_object *out = json_object_new_object();

			json_object_object_foreach(sub, sk, sv)
				if (json_object_get_int64(sv))
					json_object_object_add(out, sk, json_object_get(sv));
			json_object_put(sub);
			json_object_object_add(d, k, out);
		}
	}
	return d;
}

static json_object *find_by(json_object *arr, const char *key, json_object *val)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i), *v;

		if (json_object_object_get_ex(e, key, &v) && json_object_equal(v, val))
			return e;
	}
	return NULL;
}

/* Rows of arr whose integer fields changed, as deltas, matched by key. */
static json_object *delta_rows(json_object *cur, json_object *prev, const char *key,
			       const char *const *fields)
{
	json_object *out = json_object_new_array();

	for (size_t i = 0; cur && i < json_object_array_length(cur); i++) {
		json_object *c = json_object_array_get_idx(cur, i);
		json_object *p = find_by(prev, key, cm_json_get(c, key));
		json_object *row = json_object_new_object();
		bool changed = false;

		json_object_object_add(row, key, json_object_get(cm_json_get(c, key)));
		for (const char *const *f = fields; *f; f++) {
			int64_t d = geti(c, *f) - geti(p, *f);

			changed |= d != 0;
			json_object_object_add(row, *f, json_object_new_int64(d));
		}
		if (changed)
			json_object_array_add(out, row);
		else
			json_object_put(row);
	}
	return out;
}

int cm_interval_emit(struct cm_interval *iv, json_object *report)
{
	static const char *const sys_fields[] = { "count", "errors", "total_ns", "oncpu_ns", "offcpu_ns", NULL };
	static const char *const map_fields[] = { "time_ns", "oncpu_ns", "count", NULL };
	json_object *line = json_object_new_object(), *procs = json_object_new_array();
	json_object *cur_procs = cm_json_get(report, "processes"), *prev_procs = cm_json_get(iv->prev, "processes");
	json_object *w = cm_json_get(report, "window"), *pw = cm_json_get(iv->prev, "window");

	if (!iv->fp) {
		iv->fp = strcmp(iv->path, "-") ? fopen(iv->path, "we") : stdout;
		if (!iv->fp) {
			cm_err("cannot write the interval stream %s: %s", iv->path, strerror(errno));
			json_object_put(line);
			json_object_put(procs);
			return -1;
		}
	}
	json_object_object_add(line, "schema", json_object_new_string("contactmap-interval/1"));
	json_object_object_add(line, "interval", json_object_new_int64((int64_t)iv->n++));
	json_object_object_add(line, "start_ns",
			       json_object_new_int64(pw ? geti(pw, "end_ns") : geti(w, "start_ns")));
	json_object_object_add(line, "end_ns", json_object_new_int64(geti(w, "end_ns")));
	for (size_t i = 0; cur_procs && i < json_object_array_length(cur_procs); i++) {
		json_object *c = json_object_array_get_idx(cur_procs, i);
		json_object *p = find_by(prev_procs, "pid", cm_json_get(c, "pid"));
		json_object *pj = json_object_new_object();

		json_object_object_add(pj, "pid", json_object_get(cm_json_get(c, "pid")));
		json_object_object_add(pj, "comm", json_object_get(cm_json_get(c, "comm")));
		json_object_object_add(pj, "ledger", delta_obj(cm_json_get(c, "ledger"), cm_json_get(p, "ledger")));
		json_object_object_add(pj, "syscalls",
				       delta_rows(cm_json_get(c, "syscalls"), cm_json_get(p, "syscalls"), "name", sys_fields));
		json_object_object_add(pj, "faults", delta_obj(cm_json_get(c, "faults"), cm_json_get(p, "faults")));
		json_object *sc = cm_json_get(c, "sched"), *sp = cm_json_get(p, "sched"), *sd = json_object_new_object();
		static const char *const sched_fields[] = { "voluntary_switches", "involuntary_switches",
							    "migrations", "wakeups", "runq_waits", NULL };
		for (const char *const *f = sched_fields; *f; f++)
			json_object_object_add(sd, *f, json_object_new_int64(geti(sc, *f) - geti(sp, *f)));
		json_object_object_add(pj, "sched", sd);
		json_object_array_add(procs, pj);
	}
	json_object_object_add(line, "processes", procs);
	json_object_object_add(line, "totals", delta_obj(cm_json_get(report, "totals"), cm_json_get(iv->prev, "totals")));
	json_object_object_add(line, "contact_map",
			       delta_rows(cm_json_get(report, "contact_map"), cm_json_get(iv->prev, "contact_map"),
					  "subsystem", map_fields));
	json_object_object_add(line, "lost", json_object_get(cm_json_get(report, "lost")));
	/* cumulative too: the observer cost so far, without the per-program rows */
	json_object *ob = cm_json_get_type(report, "observer", json_type_object);
	if (ob) {
		json_object *o = json_object_new_object();

		json_object_object_foreach(ob, k, v)
			if (strcmp(k, "programs"))
				json_object_object_add(o, k, json_object_get(v));
		json_object_object_add(line, "observer", o);
	}

	fprintf(iv->fp, "%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(iv->fp);
	json_object_put(line);
	json_object_put(iv->prev);
	iv->prev = json_object_get(report);
	return ferror(iv->fp) ? -1 : 0;
}

void cm_interval_close(struct cm_interval *iv)
{
	if (!iv)
		return;
	if (iv->fp && iv->fp != stdout)
		fclose(iv->fp);
	json_object_put(iv->prev);
	free(iv->path);
	free(iv);
}
