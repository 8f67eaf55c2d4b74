// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stack events: each is unwound when it arrives (its stack snapshot is too big
 * to keep), aggregated by instruction pointers, and symbolized once per
 * distinct stack at the end, when every process's mappings are known.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "cm.h"
#include "contactmap.h"
#include "python.h"
#include "stacks.h"
#include "sym.h"

#define T_FPROOT 3	/* not a stack: outermost frame-pointer frame, for statistics */

struct agg {
	uint64_t hash;
	uint32_t pid, type, cause, nr;
	uint32_t tid;		/* pprof's tid label; the folded lines merge threads */
	char comm[CM_COMM_LEN];
	uint16_t nuser, nkern;
	uint64_t *ips;		/* user frames leaf first, then kernel frames leaf first */
	uint64_t weight;	/* samples, or blocked ns */
	uint64_t events;
};

struct cm_stacks {
	struct cm_sym *sym;
	int stackmap_fd;
	struct agg *tab;	/* open addressing, cap a power of two */
	size_t cap, n;
	uint32_t *known_pids;
	size_t nknown, capknown;
	/* run-wide figures */
	uint64_t events[3], dwarf, fp, mixed, truncated, no_user, unwind_failed;
	uint64_t kstack_lookup_failed;
	struct cm_python *py;	/* Python frames in place of the interpreter's (python.c) */
};

void cm_stacks_set_python(struct cm_stacks *s, struct cm_python *py)
{
	s->py = py;
}

struct cm_stacks *cm_stacks_new(struct cm_sym *sym, int stackmap_fd)
{
	struct cm_stacks *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->sym = sym;
	s->stackmap_fd = stackmap_fd;
	s->cap = 1024;
	s->tab = calloc(s->cap, sizeof(*s->tab));
	if (!s->tab) {
		free(s);
		return NULL;
	}
	return s;
}

void cm_stacks_free(struct cm_stacks *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		free(s->tab[i].ips);
	free(s->tab);
	free(s->known_pids);
	free(s);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h;
}

/* The same stack of the same process, whichever thread took it. */
static bool same_stack(const struct agg *a, const struct agg *b)
{
	return a->pid == b->pid && a->type == b->type &&
	       a->cause == b->cause && a->nr == b->nr && a->nuser == b->nuser &&
	       a->nkern == b->nkern && !memcmp(a->comm, b->comm, CM_COMM_LEN) &&
	       !memcmp(a->ips, b->ips, (a->nuser + a->nkern) * sizeof(uint64_t));
}

static bool same(const struct agg *a, const struct agg *b)
{
	return a->hash == b->hash && a->tid == b->tid && same_stack(a, b);
}

static int grow_table(struct cm_stacks *s)
{
	size_t ncap = s->cap * 2;
	struct agg *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -1;
	for (size_t i = 0; i < s->cap; i++) {
		size_t j;

		if (!s->tab[i].ips)
			continue;
		for (j = s->tab[i].hash & (ncap - 1); nt[j].ips; j = (j + 1) & (ncap - 1))
			;
		nt[j] = s->tab[i];
	}
	free(s->tab);
	s->tab = nt;
	s->cap = ncap;
	return 0;
}

static void add(struct cm_stacks *s, struct agg *key, uint64_t weight)
{
	size_t j;

	key->hash = mix(mix(mix(mix(key->pid, key->tid), key->type), key->cause), key->nr);
	for (int i = 0; i < key->nuser + key->nkern; i++)
		key->hash = mix(key->hash, key->ips[i]);
	if ((s->n + 1) * 2 > s->cap && grow_table(s))
		return;
	for (j = key->hash & (s->cap - 1); s->tab[j].ips; j = (j + 1) & (s->cap - 1)) {
		if (same(&s->tab[j], key)) {
			s->tab[j].weight += weight;
			s->tab[j].events++;
			return;
		}
	}
	s->tab[j] = *key;
	s->tab[j].ips = malloc((key->nuser + key->nkern + 1) * sizeof(uint64_t));
	if (!s->tab[j].ips)
		return;
	memcpy(s->tab[j].ips, key->ips, (key->nuser + key->nkern) * sizeof(uint64_t));
	s->tab[j].weight = weight;
	s->tab[j].events = 1;
	s->n++;
}

static void know_pid(struct cm_stacks *s, uint32_t pid, bool refresh)
{
	for (size_t i = 0; i < s->nknown; i++) {
		if (s->known_pids[i] == pid) {
			if (refresh)
				cm_sym_add_process(s->sym, (int)pid);
			return;
		}
	}
	if (s->nknown == s->capknown) {
		size_t nc = s->capknown ? s->capknown * 2 : 64;
		uint32_t *np = realloc(s->known_pids, nc * sizeof(*np));

		if (!np)
			return;
		s->known_pids = np;
		s->capknown = nc;
	}
	s->known_pids[s->nknown++] = pid;
	cm_sym_add_process(s->sym, (int)pid);
}

static bool is_root_frame(const char *name);

/* Whether the native user stack reaches the program's or thread's entry
 * (one of its three outermost frames): the walk was not cut short. */
static bool reached_entry(struct cm_stacks *s, uint32_t pid, const uint64_t *ips, int n)
{
	char buf[128];

	for (int k = n - 1; k >= 0 && k >= n - 3; k--)
		if (is_root_frame(cm_sym_user_frame(s->sym, (int)pid, ips[k], k > 0, buf, sizeof(buf))))
			return true;
	return false;
}

static int stack_from_map(struct cm_stacks *s, int id, uint64_t *out, int max)
{
	uint64_t ips[CM_STACK_DEPTH];
	int n = 0;

	if (id < 0 || bpf_map_lookup_elem(s->stackmap_fd, &id, ips))
		return -1;
	while (n < CM_STACK_DEPTH && n < max && ips[n])
		out[n] = ips[n], n++;
	return n;
}

int cm_stacks_event(struct cm_stacks *s, const void *data, size_t len)
{
	const struct cm_stack_event *e = data;
	uint64_t ips[2 * CM_STACK_DEPTH + CM_PY_MAX_FRAMES + 2];
	struct agg key = { 0 };
	int nu = 0, nk;

	if (len < 16)
		return 0;
	if (e->type == CM_EV_MAPS) {
		know_pid(s, e->pid, true);
		return 0;
	}
	/* records of non-Python processes end before their Python frames */
	if (len < offsetof(struct cm_stack_event, py) || (e->type != CM_EV_ONCPU && e->type != CM_EV_OFFCPU))
		return 0;
	s->events[e->type]++;
	know_pid(s, e->pid, false);

	/* user part: DWARF from the snapshot, else the frame-pointer walk */
	if (e->snap_len) {
		const char *method = NULL;
		bool trunc = false;

		nu = cm_sym_unwind(s->sym, (int)e->pid, (const struct cm_user_regs *)&e->regs,
				   e->stack, e->snap_len, ips, CM_STACK_DEPTH, &method, &trunc);
		if (nu > 0) {
			if (method && !strcmp(method, "dwarf"))
				s->dwarf++;
			else if (method && !strcmp(method, "mixed"))
				s->mixed++;
			else
				s->fp++;
			s->truncated += trunc;
		} else {
			s->unwind_failed++;
		}
	}
	if (nu <= 0) {
		nu = stack_from_map(s, e->ustack_id, ips, CM_STACK_DEPTH);
		if (nu > 0)
			s->fp++;
		else
			nu = 0, s->no_user++;
	}
	if (s->py && len >= sizeof(*e) && e->py.nframes)
		nu = cm_python_splice(s->py, (int)e->pid, &e->py, ips, nu, CM_STACK_DEPTH + CM_PY_MAX_FRAMES,
				      !reached_entry(s, e->pid, ips, nu));
	/* the frame-pointer stack's outermost frame, for "reached main" figures */
	if (e->type == CM_EV_ONCPU) {
		uint64_t fp[CM_STACK_DEPTH];
		int nf = stack_from_map(s, e->ustack_id, fp, CM_STACK_DEPTH);
		struct agg root = { .pid = e->pid, .type = T_FPROOT, .nuser = 1, .ips = &fp[nf > 0 ? nf - 1 : 0] };

		if (nf > 0)
			add(s, &root, 1);
	}
	nk = 0;
	if (e->kstack_id >= 0) {
		nk = stack_from_map(s, e->kstack_id, ips + nu, CM_STACK_DEPTH);
		if (nk < 0) {
			s->kstack_lookup_failed++;
			nk = 0;
		}
	}
	key.pid = e->pid;
	key.tid = e->tid;
	key.type = e->type;
	key.cause = e->type == CM_EV_OFFCPU ? e->cause : 0;
	key.nr = e->type == CM_EV_OFFCPU ? e->sc_nr : 0;
	memcpy(key.comm, e->comm, CM_COMM_LEN);
	key.nuser = (uint16_t)nu;
	key.nkern = (uint16_t)nk;
	key.ips = ips;
	add(s, &key, e->weight);
	return 0;
}

/* ---- symbolized output ---------------------------------------------------- */

static void cause_name(const struct agg *a, char *buf, size_t sz)
{
	if (a->cause == CM_CAUSE_SYSCALL)
		snprintf(buf, sz, "syscall:%s", cm_syscall_name(a->nr));
	else if (a->cause == CM_CAUSE_FAULT)
		snprintf(buf, sz, "page_fault");
	else if (a->cause == CM_CAUSE_GPU_SYNC)
		snprintf(buf, sz, "gpu_sync");
	else if (a->cause == CM_CAUSE_GIL)
		snprintf(buf, sz, "gil");
	else
		snprintf(buf, sz, "other");
}

/* Frames root first: user (outermost first), then kernel (outermost first). */
static json_object *frames_of(struct cm_stacks *s, const struct agg *a)
{
	json_object *arr = json_object_new_array();
	char buf[512];

	/* all frames but the leaf are return addresses: name the call before them */
	for (int i = a->nuser - 1; i >= 0; i--)
		json_object_array_add(arr, json_object_new_string(
			cm_python_is_frame(a->ips[i]) ? cm_python_frame_name(s->py, a->ips[i]) :
			cm_sym_user_frame(s->sym, (int)a->pid, a->ips[i], i > 0, buf, sizeof(buf))));
	for (int i = a->nkern - 1; i >= 0; i--) {
		const char *name = cm_sym_kernel(s->sym, a->ips[a->nuser + i] - (i > 0 ? 1 : 0),
						 buf, sizeof(buf));

		/* the tracepoint and our own program are not where it blocked */
		if (!strncmp(name, "__traceiter_", 12) || !strncmp(name, "__bpf_trace_", 12) ||
		    !strncmp(name, "bpf_trace_run", 13))
			break;
		json_object_array_add(arr, json_object_new_string(name));
	}
	return arr;
}

struct line {
	char *text;
	uint64_t weight;	/* samples, or blocked ns (the text says which) */
	bool offcpu;
};

static int cmp_line_text(const void *x, const void *y)
{
	return strcmp(((const struct line *)x)->text, ((const struct line *)y)->text);
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);

	if (*len + n + 2 > *cap) {
		size_t nc = (*len + n + 2) * 2;
		char *nb = realloc(*buf, nc);

		if (!nb)
			return;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

int cm_stacks_foreach(struct cm_stacks *s, int which, cm_stacks_fn fn, void *ctx)
{
	char comm[4 * CM_COMM_LEN + 1], cause[96];
	int rc = 0;

	for (size_t i = 0; i < s->cap && !rc; i++) {
		const struct agg *a = &s->tab[i];
		struct cm_stack_row row;
		json_object *fr;

		if (!a->ips || a->type == T_FPROOT)
			continue;
		if ((a->type == CM_EV_ONCPU && !(which & CM_FOLD_ONCPU)) ||
		    (a->type == CM_EV_OFFCPU && !(which & CM_FOLD_OFFCPU)))
			continue;
		cm_sanitize_comm(a->comm, CM_COMM_LEN, comm, sizeof(comm));
		if (a->type == CM_EV_OFFCPU)
			cause_name(a, cause, sizeof(cause));
		fr = frames_of(s, a);
		row = (struct cm_stack_row){
			.pid = a->pid, .tid = a->tid, .comm = comm,
			.oncpu = a->type == CM_EV_ONCPU,
			.cause = a->type == CM_EV_OFFCPU ? cause : NULL, .weight = a->weight,
			.nframes = json_object_array_length(fr),
		};
		row.frames = calloc(row.nframes + 1, sizeof(*row.frames));
		if (!row.frames) {
			json_object_put(fr);
			return -1;
		}
		for (size_t k = 0; k < row.nframes; k++)
			row.frames[k] = json_object_get_string(json_object_array_get_idx(fr, k));
		rc = fn(&row, ctx);
		free(row.frames);
		json_object_put(fr);
	}
	return rc;
}

struct fold_ctx {
	struct line *lines;
	size_t nl;
	int which;
};

static int fold_row(const struct cm_stack_row *r, void *ctx)
{
	struct fold_ctx *f = ctx;
	char *buf = NULL, comm[4 * CM_COMM_LEN + 1], tmp[128];
	size_t len = 0, cap = 0;

	snprintf(comm, sizeof(comm), "%s", r->comm);
	for (char *c = comm; *c; c++)
		if (*c == ';' || *c == ' ')
			*c = '_';
	append(&buf, &len, &cap, *comm ? comm : "[unknown]");
	if (f->which & CM_FOLD_PID) {
		snprintf(tmp, sizeof(tmp), "-%u", r->pid);
		append(&buf, &len, &cap, tmp);
	}
	for (size_t k = 0; k < r->nframes; k++) {
		append(&buf, &len, &cap, ";");
		append(&buf, &len, &cap, r->frames[k]);
	}
	if (r->cause) {
		snprintf(tmp, sizeof(tmp), ";[off-cpu:%s]", r->cause);
		append(&buf, &len, &cap, tmp);
	}
	if (!buf)
		return 0;
	f->lines[f->nl].text = buf;
	f->lines[f->nl].offcpu = !r->oncpu;
	f->lines[f->nl++].weight = r->weight;
	return 0;
}

int cm_stacks_write_folded(struct cm_stacks *s, FILE *fp, int which)
{
	struct fold_ctx f = { .lines = calloc(s->n + 1, sizeof(*f.lines)), .which = which };
	struct line *lines;
	size_t nl;

	if (!f.lines || cm_stacks_foreach(s, which, fold_row, &f)) {
		cm_err("out of memory writing folded stacks");
		for (size_t i = 0; f.lines && i < f.nl; i++)
			free(f.lines[i].text);
		free(f.lines);
		return -1;
	}
	lines = f.lines;
	nl = f.nl;
	/* one line per distinct stack: different addresses may share names */
	qsort(lines, nl, sizeof(*lines), cmp_line_text);

	for (size_t i = 0; i < nl; i++) {
		uint64_t w = lines[i].weight;

		while (i + 1 < nl && !strcmp(lines[i].text, lines[i + 1].text)) {
			free(lines[i].text);
			w += lines[++i].weight;
		}
		/* off-CPU time in microseconds, so it can share a graph with samples;
		 * rounded once per line, so a line is its stacks' time, to the us */
		if (lines[i].offcpu)
			w = (w + 500) / 1000;
		if (w)
			fprintf(fp, "%s %llu\n", lines[i].text, (unsigned long long)w);
		free(lines[i].text);
	}
	free(lines);
	return 0;	/* write errors: the stream's owner finds them at commit */
}

struct ranked {
	const struct agg *a;
	uint64_t weight;	/* over every thread that took the stack */
	char cause[96];
};

/* Any order that puts one stack's entries (one per thread) side by side. */
static int cmp_stack(const void *x, const void *y)
{
	const struct agg *a = ((const struct ranked *)x)->a, *b = ((const struct ranked *)y)->a;

	if (a->type != b->type || a->cause != b->cause || a->nr != b->nr)
		return a->type != b->type ? (a->type < b->type ? -1 : 1)
		       : a->cause != b->cause ? (a->cause < b->cause ? -1 : 1) : (a->nr < b->nr ? -1 : 1);
	if (a->nuser != b->nuser || a->nkern != b->nkern)
		return a->nuser != b->nuser ? a->nuser - b->nuser : a->nkern - b->nkern;
	int c = memcmp(a->comm, b->comm, CM_COMM_LEN);
	return c ? c : memcmp(a->ips, b->ips, (a->nuser + a->nkern) * sizeof(uint64_t));
}

static int cmp_ranked(const void *x, const void *y)
{
	const struct ranked *a = x, *b = y;
	int c = strcmp(a->cause, b->cause);

	if (c)
		return c;
	return a->weight > b->weight ? -1 : a->weight < b->weight;
}

json_object *cm_stacks_process_json(struct cm_stacks *s, uint32_t pid, int top)
{
	json_object *o = json_object_new_object(), *on = json_object_new_array();
	json_object *off = json_object_new_object();
	struct ranked *r = calloc(s->n + 1, sizeof(*r));
	size_t nr = 0;

	if (!r)
		return o;
	for (size_t i = 0; i < s->cap; i++) {
		const struct agg *a = &s->tab[i];

		if (!a->ips || a->pid != pid || a->type == T_FPROOT)
			continue;
		r[nr].a = a;
		r[nr].weight = a->weight;
		if (a->type == CM_EV_OFFCPU)
			cause_name(a, r[nr].cause, sizeof(r[nr].cause));
		else
			snprintf(r[nr].cause, sizeof(r[nr].cause), "%s", "");
		nr++;
	}
	/* entries are per thread: a stack that several threads took ranks once */
	qsort(r, nr, sizeof(*r), cmp_stack);
	size_t m = 0;
	for (size_t i = 0; i < nr; i++) {
		if (m && same_stack(r[m - 1].a, r[i].a))
			r[m - 1].weight += r[i].weight;
		else
			r[m++] = r[i];
	}
	nr = m;
	qsort(r, nr, sizeof(*r), cmp_ranked);
	for (size_t i = 0; i < nr;) {
		size_t j = i;
		json_object *list = json_object_new_array();

		while (j < nr && !strcmp(r[j].cause, r[i].cause))
			j++;
		for (size_t k = i; k < j && (int)(k - i) < top; k++) {
			json_object *e = json_object_new_object();
			const struct agg *a = r[k].a;

			json_object_object_add(e, "frames", frames_of(s, a));
			json_object_object_add(e, a->type == CM_EV_ONCPU ? "samples" : "weight_ns",
					       json_object_new_int64((int64_t)r[k].weight));
			json_object_array_add(list, e);
		}
		if (!*r[i].cause) {
			json_object_put(on);
			on = list;
		} else {
			json_object_object_add(off, r[i].cause, list);
		}
		i = j;
	}
	free(r);
	json_object_object_add(o, "oncpu", on);
	json_object_object_add(o, "offcpu", off);
	return o;
}

void cm_stacks_visit_pid(struct cm_stacks *s, uint32_t pid, cm_stacks_visit_fn fn, void *arg)
{
	char cause[96];

	for (size_t i = 0; s && i < s->cap; i++) {
		const struct agg *a = &s->tab[i];

		if (!a->ips || a->pid != pid || (a->type != CM_EV_ONCPU && a->type != CM_EV_OFFCPU))
			continue;
		cause[0] = '\0';
		if (a->type == CM_EV_OFFCPU)
			cause_name(a, cause, sizeof(cause));
		fn(arg, (int)a->type, cause, a->weight, a->ips, a->nuser);
	}
}

static bool is_root_frame(const char *name)
{
	static const char *roots[] = { "main", "_start", "__libc_start_main", "__libc_start_call_main",
				       "start_thread", "clone", "clone3", "__clone", "__clone3" };

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (!strcmp(name, roots[i]))
			return true;
	return false;
}

json_object *cm_stacks_summary_json(struct cm_stacks *s)
{
	json_object *o = json_object_new_object(), *m = json_object_new_object();
	uint64_t dwarf_root = 0, dwarf_total = 0, fp_root = 0, fp_total = 0;
	char buf[512];

	/* did the outermost user frame reach the program's or thread's entry? */
	for (size_t i = 0; i < s->cap; i++) {
		const struct agg *a = &s->tab[i];

		if (!a->ips || !a->nuser)
			continue;
		if (a->type == T_FPROOT) {
			fp_total += a->weight;
			if (is_root_frame(cm_sym_user_frame(s->sym, (int)a->pid, a->ips[0], true, buf, sizeof(buf))))
				fp_root += a->weight;
		} else if (a->type == CM_EV_ONCPU) {
			dwarf_total += a->weight;
			for (int k = a->nuser - 1; k >= 0 && k >= a->nuser - 3; k--) {
				if (!cm_python_is_frame(a->ips[k]) &&
				    is_root_frame(cm_sym_user_frame(s->sym, (int)a->pid, a->ips[k], k > 0, buf, sizeof(buf)))) {
					dwarf_root += a->weight;
					break;
				}
			}
		}
	}
	json_object_object_add(o, "oncpu_events", json_object_new_int64((int64_t)s->events[CM_EV_ONCPU]));
	json_object_object_add(o, "offcpu_events", json_object_new_int64((int64_t)s->events[CM_EV_OFFCPU]));
	json_object_object_add(m, "dwarf", json_object_new_int64((int64_t)s->dwarf));
	json_object_object_add(m, "fp", json_object_new_int64((int64_t)s->fp));
	json_object_object_add(m, "mixed", json_object_new_int64((int64_t)s->mixed));
	json_object_object_add(o, "user_unwind_methods", m);
	json_object_object_add(o, "truncated", json_object_new_int64((int64_t)s->truncated));
	json_object_object_add(o, "no_user_stack", json_object_new_int64((int64_t)s->no_user));
	json_object_object_add(o, "unwind_failed", json_object_new_int64((int64_t)s->unwind_failed));
	json_object_object_add(o, "oncpu_reached_entry_fp",
			       json_object_new_double(fp_total ? (double)fp_root / fp_total : 0));
	json_object_object_add(o, "oncpu_reached_entry",
			       json_object_new_double(dwarf_total ? (double)dwarf_root / dwarf_total : 0));
	return o;
}
