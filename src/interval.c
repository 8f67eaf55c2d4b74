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
#include "outfile.h"


struct cm_interval {
	struct cm_out *out;	/* published at the first line: a run that fails leaves no file */
	json_object *prev;	/* the last cumulative report */
	uint64_t n;
	bool published, failed;
};

struct cm_interval *cm_interval_open(struct cm_out *out)
{
	struct cm_interval *iv = calloc(1, sizeof(*iv));

	if (!iv) {
		cm_err("out of memory");
		cm_out_abort(out);
		return NULL;
	}
	iv->out = out;
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

	if (iv->failed || !iv->out) {
		json_object_put(line);
		json_object_put(procs);
		return -1;
	}
	/* readers tail the file as it grows: it is visible from the first line */
	if (!iv->published) {
		if (cm_out_publish(iv->out)) {
			iv->failed = true;
			json_object_put(line);
			json_object_put(procs);
			return -1;
		}
		iv->published = true;
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

	FILE *fp = cm_out_fp(iv->out);

	fprintf(fp, "%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(line);
	json_object_put(iv->prev);
	iv->prev = json_object_get(report);
	/* each line whole as it is written; the first failure is said once */
	errno = 0;
	if (fflush(fp) == EOF || ferror(fp)) {
		cm_err("cannot write the interval stream to %s (--jsonl): %s",
		       cm_out_is_stdout(iv->out) ? "stdout" : cm_out_path(iv->out),
		       strerror(errno ? errno : EIO));
		iv->failed = true;
		return -1;
	}
	return 0;
}

int cm_interval_finish(struct cm_interval *iv)
{
	int rc;

	if (!iv->out)
		return iv->failed ? -1 : 0;
	if (iv->failed) {
		cm_out_abort(iv->out);	/* said already; a torn stream is removed */
		rc = -1;
	} else {
		rc = cm_out_commit(iv->out);
	}
	iv->out = NULL;
	return rc;
}

void cm_interval_close(struct cm_interval *iv)
{
	if (!iv)
		return;
	cm_out_abort(iv->out);
	json_object_put(iv->prev);
	free(iv);
}
