// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The report's "python" objects (per process and run-wide) and their text:
 * what python.c found, what the walks in BPF counted (py_procs), what naming
 * counted, the threads that held the GIL, and the top Python functions from
 * the aggregated stacks.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include "cm.h"
#include "python_int.h"
#include "stacks.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define J_STR(o, k, v) json_object_object_add(o, k, json_object_new_string(v))
#define TOP_FUNCTIONS 10

/* ---- the report ------------------------------------------------------------------------ */

struct fn_acc {
	uint64_t id;
	uint64_t oncpu, offcpu;
	json_object *causes;
};

struct fn_table {
	const struct cm_python *py;
	struct fn_acc *a;
	size_t n, cap;
};

static struct fn_acc *fn_get(struct fn_table *t, uint64_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->a[i].id == id)
			return &t->a[i];
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		struct fn_acc *na = realloc(t->a, nc * sizeof(*na));

		if (!na)
			return NULL;
		t->a = na;
		t->cap = nc;
	}
	t->a[t->n] = (struct fn_acc){ .id = id, .causes = json_object_new_object() };
	return &t->a[t->n++];
}

/* Each stack counts for its innermost Python function. */
static void fn_visit(void *arg, int type, const char *cause, uint64_t weight, const uint64_t *ips, int nuser)
{
	struct fn_table *t = arg;
	struct fn_acc *a;
	json_object *v;
	int k;

	for (k = 0; k < nuser && !cm_python_is_frame(ips[k]); k++)
		;
	if (k == nuser || !(a = fn_get(t, ips[k])))
		return;
	if (type == CM_EV_ONCPU) {
		a->oncpu += weight;
		return;
	}
	a->offcpu += weight;
	if (json_object_object_get_ex(a->causes, cause, &v))
		weight += (uint64_t)json_object_get_int64(v);
	json_object_object_add(a->causes, cause, json_object_new_int64((int64_t)weight));
}

static int cmp_off(const void *x, const void *y)
{
	const struct fn_acc *a = x, *b = y;

	return a->offcpu > b->offcpu ? -1 : a->offcpu < b->offcpu;
}

static int cmp_on(const void *x, const void *y)
{
	const struct fn_acc *a = x, *b = y;

	return a->oncpu > b->oncpu ? -1 : a->oncpu < b->oncpu;
}

static void top_functions(const struct cm_python *py, struct cm_stacks *stacks, uint32_t pid, json_object *o)
{
	struct fn_table t = { .py = py };
	json_object *off = json_object_new_array(), *on = json_object_new_array();

	cm_stacks_visit_pid(stacks, pid, fn_visit, &t);
	qsort(t.a, t.n, sizeof(*t.a), cmp_off);
	for (size_t i = 0; i < t.n && i < TOP_FUNCTIONS && t.a[i].offcpu; i++) {
		json_object *f = json_object_new_object();

		J_STR(f, "function", cm_python_frame_name(py, t.a[i].id));
		J_INT(f, "offcpu_ns", t.a[i].offcpu);
		json_object_object_add(f, "offcpu_by_cause", json_object_get(t.a[i].causes));
		json_object_array_add(off, f);
	}
	qsort(t.a, t.n, sizeof(*t.a), cmp_on);
	for (size_t i = 0; i < t.n && i < TOP_FUNCTIONS && t.a[i].oncpu; i++) {
		json_object *f = json_object_new_object();

		J_STR(f, "function", cm_python_frame_name(py, t.a[i].id));
		J_INT(f, "oncpu_samples", t.a[i].oncpu);
		json_object_array_add(on, f);
	}
	for (size_t i = 0; i < t.n; i++)
		json_object_put(t.a[i].causes);
	free(t.a);
	json_object_object_add(o, "top_offcpu", off);
	json_object_object_add(o, "top_oncpu", on);
}

static int cmp_holder(const void *x, const void *y)
{
	const struct py_gil_holder *a = x, *b = y;

	return a->ns > b->ns ? -1 : a->ns < b->ns;
}

json_object *cm_python_process_json(struct cm_python *py, uint32_t pid, struct cm_stacks *stacks)
{
	struct py_proc *pp = py ? py_proc_get(py, (int)pid, false) : NULL;
	struct cm_py_proc c;
	uint32_t key = pid;
	json_object *o, *w;
	char buf[160];

	if (pp && !pp->mod && pp->unsupported) {
		o = json_object_new_object();
		J_STR(o, "version", pp->unsupported->version);
		J_STR(o, "interpreter", pp->unsupported->path);
		J_STR(o, "layout_check", pp->unsupported->why);
		return o;
	}
	if (!pp || !pp->mod)
		return NULL;
	o = json_object_new_object();
	J_STR(o, "version", pp->mod->version);
	J_STR(o, "interpreter", pp->mod->path);
	snprintf(buf, sizeof(buf), "_PyRuntime in %s", pp->mod->symtab);
	J_STR(o, "runtime", buf);
	J_STR(o, "layout", pp->mod->layout_from);
	J_STR(o, "layout_check", pp->check == 1 ? "ok" : pp->check == -1 ? pp->check_msg
				 : "not done (the runtime never came up while traced)");
	if (pp->check == 1 && pp->check_msg[0])
		J_STR(o, "layout_note", pp->check_msg);
	snprintf(buf, sizeof(buf), "thread state from the thread's autoTSSkey (glibc thread-specific data at +%#x)",
		 py->tcb_specific);
	J_STR(o, "thread_state", buf);
	if (pp->ppid > 0 && py_proc_get(py, pp->ppid, false) && py_proc_get(py, pp->ppid, false)->mod) {
		json_object *par = json_object_new_object();

		J_INT(par, "pid", pp->ppid);
		J_STR(par, "comm", pp->pcomm);
		json_object_object_add(o, "parent", par);
	}
	w = json_object_new_object();
	if (!bpf_map_lookup_elem(py->map_fd, &key, &c)) {
		J_INT(w, "stacks", c.walks);
		J_INT(w, "frames", c.frames);
		J_INT(w, "no_thread_state", c.no_tstate);
		J_INT(w, "foreign_thread_state", c.bad_tstate);
		J_INT(w, "read_failed", c.read_failed);
		J_INT(w, "truncated", c.truncated);
		J_INT(w, "runtime_not_ready", c.not_ready);
		J_INT(w, "walk_ns", c.walk_ns);
		/* every lookup that found the process timed itself, success or not */
		uint64_t tries = c.walks + c.no_tstate + c.bad_tstate + c.not_ready;

		J_INT(w, "avg_walk_ns", tries ? c.walk_ns / tries : 0);
		J_INT(o, "gil_waits", c.gil_waits);
	}
	json_object_object_add(o, "walker", w);
	w = json_object_new_object();
	J_INT(w, "stacks", pp->py_stacks);
	J_INT(w, "frames_named", pp->frames_named);
	J_INT(w, "frames_unknown", pp->frames_unknown);
	J_INT(w, "segments_unmatched", pp->unmatched);
	json_object_object_add(o, "naming", w);
	if (pp->ngil) {
		json_object *a = json_object_new_array();

		qsort(pp->gil, pp->ngil, sizeof(*pp->gil), cmp_holder);
		for (size_t i = 0; i < pp->ngil && i < TOP_FUNCTIONS; i++) {
			json_object *h = json_object_new_object();

			J_INT(h, "waiter_tid", pp->gil[i].waiter);
			J_INT(h, "holder_tid", pp->gil[i].holder);
			J_INT(h, "wait_ns", pp->gil[i].ns);
			J_INT(h, "stacks", pp->gil[i].waits);
			json_object_array_add(a, h);
		}
		json_object_object_add(o, "gil_held_by", a);
	}
	if (stacks)
		top_functions(py, stacks, pid, o);
	return o;
}

uint64_t cm_python_lost(const struct cm_python *py)
{
	return py ? py->map_full : 0;
}

json_object *cm_python_summary_json(struct cm_python *py)
{
	json_object *o;

	if (!py)
		return NULL;
	o = json_object_new_object();
	J_INT(o, "processes_probed", py->probes);
	J_INT(o, "code_objects_read", py->code_reads);
	J_INT(o, "code_objects_unreadable", py->code_read_failed);
	J_INT(o, "code_objects_not_code", py->code_not_code);
	J_INT(o, "code_objects_rechecked", py->code_revalidated);
	J_INT(o, "code_objects_replaced", py->code_replaced);
	J_INT(o, "code_objects_gone", py->code_gone);
	J_INT(o, "frame_names", py->nnames);
	return o;
}

/* ---- text ------------------------------------------------------------------------------ */

static uint64_t jnum(json_object *o, const char *k)
{
	json_object *v = cm_json_get(o, k);

	return v && json_object_is_type(v, json_type_int) ? json_object_get_uint64(v) : 0;
}

void cm_python_render(json_object *p, FILE *out)
{
	json_object *w = cm_json_get_type(p, "walker", json_type_object), *a;
	char t1[32];

	if (!p || !json_object_is_type(p, json_type_object))
		return;
	fprintf(out, "  python  CPython %s", cm_json_str(p, "version") ? cm_json_str(p, "version") : "?");
	if (cm_json_str(p, "interpreter")) {
		fputs(" (", out);
		cm_put_text(out, cm_json_str(p, "interpreter"), 60);
		fputc(')', out);
	}
	if ((a = cm_json_get_type(p, "parent", json_type_object))) {
		fprintf(out, ", child of pid %" PRIu64 " ", jnum(a, "pid"));
		cm_put_text(out, cm_json_str(a, "comm") ? cm_json_str(a, "comm") : "?", 16);
	}
	fputc('\n', out);
	if (w)
		fprintf(out, "          %" PRIu64 " stacks walked, %" PRIu64 " frames, %" PRIu64
			" without a thread state, %" PRIu64 " unreadable; %s per walk\n",
			jnum(w, "stacks"), jnum(w, "frames"), jnum(w, "no_thread_state"),
			jnum(w, "read_failed"), cm_fmt_ns(jnum(w, "avg_walk_ns"), t1, sizeof(t1)));
	if (cm_json_str(p, "layout_check") && strcmp(cm_json_str(p, "layout_check"), "ok")) {
		fputs("          layout: ", out);
		cm_put_text(out, cm_json_str(p, "layout_check"), 64);
		fputc('\n', out);
	}
	if ((a = cm_json_get_type(p, "gil_held_by", json_type_array)) && json_object_array_length(a)) {
		fputs("          GIL held by", out);
		for (size_t i = 0; i < json_object_array_length(a) && i < 4; i++) {
			json_object *h = json_object_array_get_idx(a, i);

			fprintf(out, "%s tid %" PRIu64 " (%s, waiting tid %" PRIu64 ")", i ? "," : "",
				jnum(h, "holder_tid"), cm_fmt_ns(jnum(h, "wait_ns"), t1, sizeof(t1)),
				jnum(h, "waiter_tid"));
		}
		fputc('\n', out);
	}
	if ((a = cm_json_get_type(p, "top_offcpu", json_type_array)) && json_object_array_length(a)) {
		fputs("          off-CPU by Python function (innermost)\n", out);
		for (size_t i = 0; i < json_object_array_length(a) && i < 5; i++) {
			json_object *f = json_object_array_get_idx(a, i);
			json_object *c = cm_json_get_type(f, "offcpu_by_cause", json_type_object);
			struct { const char *k; uint64_t ns; } top[3] = { { 0 } };
			int n;

			fputs("            ", out);
			n = cm_put_text(out, cm_json_str(f, "function") ? cm_json_str(f, "function") : "?", 44);
			for (; n < 45; n++)
				fputc(' ', out);
			if (c) {
				json_object_object_foreach(c, k, v) {
					uint64_t ns = (uint64_t)json_object_get_int64(v);

					for (int j = 0; j < 3; j++)
						if (!top[j].k || ns > top[j].ns) {
							memmove(&top[j + 1], &top[j], (2 - j) * sizeof(top[0]));
							top[j].k = k;
							top[j].ns = ns;
							break;
						}
				}
			}
			for (int j = 0; j < 3 && top[j].k; j++) {
				fprintf(out, "%s%s ", j ? ", " : "", cm_fmt_ns(top[j].ns, t1, sizeof(t1)));
				cm_put_text(out, top[j].k, 24);
			}
			fputc('\n', out);
		}
	}
}
