/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The text contact map. It reads nothing but the contactmap/1 report, so a
 * live run and `contactmap report` of its saved JSON print the same text.
 * Every key is optional here: a truncated, older or hand-edited report prints
 * what it has, and an absent number reads as 0.
 *
 * Tables use fixed columns sized for 80; the width option only sets how far
 * the bars, wrapped lists and truncated names may reach.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "render_cp.h"
#include "render_threads.h"
#include "python.h"

#define DEF_WIDTH 80
#define MAX_PROCS 20		/* processes shown in full, the heaviest */
#define DEF_TOP_SYSCALLS 10
#define TOP_CAUSES 5

/* Each use gets its own compound-literal buffer, alive to the end of the
 * enclosing block, so several formatted values can feed one fprintf. */
#define T(ns) cm_fmt_ns((ns), (char[32]){0}, 32)
#define B(n) cm_fmt_bytes((n), (char[32]){0}, 32)
#define N(n, w) fmt_count((n), (w), (char[32]){0}, 32)

/* ---- reading the report ---------------------------------------------------- */

#define obj(o, k) cm_json_get_type((o), (k), json_type_object)
#define arr(o, k) cm_json_get_type((o), (k), json_type_array)

/* Every number in the report is a non-negative integer; anything else
 * (negative, NaN, a string, null) reads as 0 rather than wrapping. */
static uint64_t val_num(json_object *v)
{
	double d;

	switch (v ? json_object_get_type(v) : json_type_null) {
	case json_type_int:
		return json_object_get_uint64(v);	/* 0 for negatives */
	case json_type_double:
		d = json_object_get_double(v);
		if (!(d > 0))
			return 0;
		return d >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)d;
	default:
		return 0;
	}
}

static uint64_t num(json_object *o, const char *key)
{
	return val_num(cm_json_get(o, key));
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static size_t arr_len(json_object *a)
{
	return a ? json_object_array_length(a) : 0;
}

/* ---- text ---------------------------------------------------------------- */

/* s left-aligned in exactly w columns, cut if longer. */
static void field(FILE *out, const char *s, int w)
{
	for (int n = cm_put_text(out, s ? s : "", w); n < w; n++)
		fputc(' ', out);
}

/* A count in at most w characters: exact while it fits, else 12.3M-style. */
static const char *fmt_count(uint64_t n, int w, char *buf, size_t sz)
{
	static const char unit[] = "kMGTPE";
	double d = (double)n;
	int i;

	if (snprintf(buf, sz, "%" PRIu64, n) <= w)
		return buf;
	for (i = -1; d >= 999.95 && i < 5; i++)
		d /= 1000;
	snprintf(buf, sz, d < 9.995 ? "%.2f%c" : d < 99.95 ? "%.1f%c" : "%.0f%c", d, unit[i]);
	return buf;
}

/* Thread-seconds with about three significant digits. */
static const char *fmt_secs(uint64_t ns, char *buf, size_t sz)
{
	double s = (double)ns / 1e9;

	snprintf(buf, sz, s >= 100 ? "%.0f" : s >= 10 ? "%.1f" : s >= 1 ? "%.2f" : "%.3g", s);
	return buf;
}

/* A list that wraps at the width, continuation lines indented. */
struct wrap {
	FILE *out;
	int width, indent, col;
	bool fresh;		/* nothing yet on this line but the lead or indent */
};

static void wrap_start(struct wrap *w, FILE *out, int width, const char *lead, int indent)
{
	*w = (struct wrap){ .out = out, .width = width, .indent = indent, .fresh = true };
	w->col = cm_put_text(out, lead, width);
}

static void __attribute__((format(printf, 3, 4)))
wrap_item(struct wrap *w, const char *sep, const char *fmt, ...)
{
	char buf[512];
	int n, seplen = cm_text_cols(sep);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = cm_text_cols(buf);
	if (!w->fresh && w->col + seplen + n > w->width) {
		/* the separator's punctuation stays at the end of the broken line */
		size_t k = strlen(sep);

		while (k && sep[k - 1] == ' ')
			k--;
		fprintf(w->out, "%.*s\n%*s", (int)k, sep, w->indent, "");
		w->col = w->indent;
		w->fresh = true;
	}
	if (!w->fresh) {
		fputs(sep, w->out);
		w->col += seplen;
	}
	/* an item longer than a whole line is cut rather than overflow it,
	 * leaving a column for the separator's comma should the line break */
	if (w->col + n > w->width && w->width - w->col > 4) {
		w->col += cm_put_text(w->out, buf, w->width - w->col - 4);
		w->col += fprintf(w->out, "...");
	} else {
		w->col += cm_put_text(w->out, buf, n);
	}
	w->fresh = false;
}

static void wrap_end(struct wrap *w)
{
	fputc('\n', w->out);
}

/* ---- header ---------------------------------------------------------------- */

/* argv as a shell would need it typed, so a copied line runs as traced. */
static void put_arg(struct wrap *w, const char *a)
{
	char q[512];
	size_t n = 0;

	if (*a && !strpbrk(a, " \t\n'\"\\$`*?[]{}()<>|&;#~")) {
		wrap_item(w, " ", "%s", a);
		return;
	}
	q[n++] = '\'';
	for (; *a && n < sizeof(q) - 6; a++) {
		if (*a == '\'') {
			memcpy(q + n, "'\\''", 4);
			n += 4;
		} else {
			q[n++] = *a;
		}
	}
	q[n++] = '\'';
	q[n] = 0;
	wrap_item(w, " ", "%s", q);
}

/* "exit 0", "killed by signal 9": exit_code is the kernel's status << 8 | signal */
static const char *fmt_exit_code(uint64_t code, char *buf, size_t sz)
{
	if (code & 0x7f)
		snprintf(buf, sz, "killed by signal %d%s", (int)(code & 0x7f),
			 code & 0x80 ? " (core dumped)" : "");
	else
		snprintf(buf, sz, "exit %d", (int)((code >> 8) & 0xff));
	return buf;
}

/* How the figures were obtained (features.tier), and what the tier left out. */
static void render_tier(json_object *r, int width, FILE *out)
{
	json_object *f = obj(r, "features"), *pf = obj(r, "procfs"), *sm = obj(pf, "sampler");
	json_object *oc = obj(obj(f, "sources"), "ledger.offcpu_by_cause"), *th = obj(pf, "threads");
	json_object *cl = obj(pf, "closure");
	const char *tier = cm_json_str(f, "tier");
	struct wrap w;

	if (!tier)
		return;
	wrap_start(&w, out, width, "tier: ", 6);
	if (strcmp(tier, "procfs")) {
		wrap_item(&w, "", "%s", tier);
		wrap_end(&w);
		return;
	}
	wrap_item(&w, "", "procfs");
	wrap_item(&w, ", ", "exact: on-CPU%s, faults, switches (/proc)",
		  num(obj(f, "procfs"), "schedstat") || json_object_get_boolean(cm_json_get(obj(f, "procfs"), "schedstat"))
		  ? ", run queue" : "");
	if (oc)
		wrap_item(&w, "; ", "off-CPU causes sampled (%" PRIu64 " samples at %.0f Hz)",
			  num(oc, "samples"), json_object_get_double(cm_json_get(oc, "hz")));
	if (json_object_get_boolean(cm_json_get(sm, "rate_lowered")))
		wrap_item(&w, ", ", "rate lowered to %" PRIu64 " Hz at %" PRIu64 " threads", num(sm, "min_hz"),
			  num(sm, "threads_at_min_hz"));
	if (th && json_object_is_type(cm_json_get(th, "never_seen_alive"), json_type_int))
		wrap_item(&w, "; ", "%" PRIu64 " threads seen alive, %" PRIu64 " never", num(th, "seen_alive"),
			  num(th, "never_seen_alive"));
	else if (th)
		wrap_item(&w, "; ", "%" PRIu64 " threads seen alive (never-seen ones not counted)",
			  num(th, "seen_alive"));
	if (obj(f, "missing")) {
		wrap_item(&w, "; ", "%s", "not in this tier: off-CPU stacks");
		wrap_item(&w, ", ", "%s", "block I/O");
		wrap_item(&w, ", ", "%s", "GPU");
		wrap_item(&w, ", ", "%s", "syscall counts (features.missing)");
	}
	wrap_end(&w);
	if (cl) {
		static const char *const k[] = { "oncpu_ns", "minor_faults", "voluntary_switches" };
		static const char *const name[] = { "on-CPU", "faults", "switches" };

		wrap_start(&w, out, width, "books: ", 7);
		wrap_item(&w, "", "closed by the command's wait4 rusage");
		for (int i = 0; i < 3; i++)
			wrap_item(&w, i ? ", " : "; threads read: ", "%.1f%% of its %s", json_object_get_double(
					  cm_json_get(obj(cl, k[i]), "matched")) * 100, name[i]);
		wrap_item(&w, "; ", "the rest in %s", cm_json_str(cl, "booked_to") ? cm_json_str(cl, "booked_to") : "?");
		wrap_end(&w);
	}
}

static void render_header(json_object *r, int width, FILE *out)
{
	json_object *tool = obj(r, "tool"), *host = obj(r, "host");
	json_object *target = obj(r, "target"), *win = obj(r, "window");
	json_object *ex = obj(r, "exit"), *cmd = arr(target, "command");
	json_object *pids = arr(target, "pids");
	const char *ver = cm_json_str(tool, "version"), *s;
	char lead[64];
	struct wrap w;

	snprintf(lead, sizeof(lead), "contactmap %s — ", ver ? ver : CM_VERSION);
	wrap_start(&w, out, width, lead, 4);
	if (cm_json_str(target, "cgroup")) {
		put_arg(&w, "cgroup");
		put_arg(&w, cm_json_str(target, "cgroup"));
	} else if (arr_len(cmd)) {
		for (size_t i = 0; i < arr_len(cmd); i++) {
			s = json_object_get_string(json_object_array_get_idx(cmd, i));
			put_arg(&w, s ? s : "");
		}
	} else if (arr_len(pids)) {
		for (size_t i = 0; i < arr_len(pids); i++)
			wrap_item(&w, ",", "%s%" PRIu64, i ? "" : "pids ",
				  val_num(json_object_array_get_idx(pids, i)));
	} else {
		wrap_item(&w, "", "(target not recorded)");
	}
	wrap_end(&w);

	if (host) {
		wrap_start(&w, out, width, "host: ", 6);
		if ((s = cm_json_str(host, "hostname")))
			wrap_item(&w, ", ", "%s", s);
		if ((s = cm_json_str(host, "kernel")))
			wrap_item(&w, ", ", "Linux %s", s);
		if (num(host, "cpus"))
			wrap_item(&w, ", ", "%" PRIu64 " CPUs", num(host, "cpus"));
		if ((s = cm_json_str(host, "cpu_model")))
			wrap_item(&w, ", ", "%s", s);
		if (num(host, "memory_bytes"))
			wrap_item(&w, ", ", "%s memory", B(num(host, "memory_bytes")));
		wrap_end(&w);
	}

	wrap_start(&w, out, width, "window: ", 8);
	if (cm_json_get(win, "duration_ns"))
		wrap_item(&w, ", ", "%s", T(num(win, "duration_ns")));
	else
		wrap_item(&w, ", ", "not recorded");
	if ((s = cm_json_str(target, "mode")))
		wrap_item(&w, ", ", "%s mode", s);
	if (cm_json_get(ex, "signal"))
		wrap_item(&w, ", ", "command killed by signal %" PRIu64 " (status %" PRIu64 ")",
			  num(ex, "signal"), num(ex, "status"));
	else if (cm_json_get(ex, "status"))
		wrap_item(&w, ", ", "command exit status %" PRIu64, num(ex, "status"));
	wrap_end(&w);
	render_tier(r, width, out);
}

/* ---- the contact map -------------------------------------------------------- */

/* 2 + label 14 + time 9 + share 8 + on-CPU 9 + count 10 + 2 before the bar */
#define MAP_FIXED 54

static void render_map(json_object *r, int width, FILE *out)
{
	json_object *rows = arr(r, "contact_map"), *totals = obj(r, "totals");
	json_object *procs = arr(r, "processes");
	uint64_t total = num(totals, "wall_ns"), oncpu = num(totals, "oncpu_ns");
	uint64_t nthreads = 0;
	size_t shown = 0;
	int barw = width - MAP_FIXED;

	fprintf(out, "\nOS contact map\n");
	if (!rows) {
		fprintf(out, "  (not in report)\n");
		return;
	}
	/* without totals, the rows themselves cover all the wall time */
	if (!totals) {
		for (size_t i = 0; i < arr_len(rows); i++) {
			total += num(json_object_array_get_idx(rows, i), "time_ns");
			oncpu += num(json_object_array_get_idx(rows, i), "oncpu_ns");
		}
	}
	fprintf(out, "  %-14s %8s %7s %8s %9s\n", "subsystem", "time", "share", "on-CPU", "count");
	for (size_t i = 0; i < arr_len(rows); i++) {
		json_object *row = json_object_array_get_idx(rows, i);
		json_object *sh = cm_json_get(row, "share");
		uint64_t t = num(row, "time_ns"), c = num(row, "count");
		const char *label = cm_json_str(row, "label");
		double share;
		int bar;

		if (!t || !json_object_is_type(row, json_type_object))
			continue;
		share = sh && (json_object_is_type(sh, json_type_double) ||
			       json_object_is_type(sh, json_type_int))
			? json_object_get_double(sh) : pct(t, total) / 100;
		if (!(share >= 0))
			share = 0;
		fputs("  ", out);
		field(out, label ? label : cm_json_str(row, "subsystem") ? cm_json_str(row, "subsystem") : "?", 14);
		/* "-" where a subsystem has no on-CPU part or no count by definition
		 * (run queue, block I/O, CPU (user)), rather than a misleading 0 */
		fprintf(out, " %8s %6.1f%% %8s %9s", T(t), share * 100,
			num(row, "oncpu_ns") ? T(num(row, "oncpu_ns")) : "-", c ? N(c, 9) : "-");
		bar = barw > 0 ? (int)(share * barw + 0.5) : 0;
		if (bar > barw)
			bar = barw;
		if (bar > 0)
			fputs("  ", out);
		while (bar-- > 0)
			fputc('#', out);
		fputc('\n', out);
		shown++;
	}
	if (!shown) {
		fprintf(out, "  (no time recorded)\n");
		return;
	}
	fprintf(out, "  %-14s %8s %6.1f%% %8s\n", "total", T(total), total ? 100.0 : 0.0, T(oncpu));

	for (int pass = 0; pass < 2; pass++) {
		json_object *ps = pass ? arr(r, "folded_processes") : procs;

		for (size_t i = 0; i < arr_len(ps); i++)
			nthreads += cm_thread_count(json_object_array_get_idx(ps, i));
	}
	/* thread-seconds exceed the window when threads run side by side */
	fprintf(out, "  shares of %s thread-seconds", fmt_secs(total, (char[32]){0}, 32));
	if (nthreads)
		fprintf(out, " (the wall time of %" PRIu64 " thread%s added up)",
			nthreads, nthreads == 1 ? "" : "s");
	fputc('\n', out);
}

/* ---- one process ------------------------------------------------------------- */

struct cause {
	const char *name;
	uint64_t ns;
};

static int cause_cmp(const void *a, const void *b)
{
	const struct cause *x = a, *y = b;

	if (x->ns != y->ns)
		return x->ns < y->ns ? 1 : -1;
	return strcmp(x->name, y->name);	/* stable output for ties */
}

/* The causes of offcpu_by_cause, largest first, in a malloc'ed array. The
 * object is unordered, hence the sort. NULL with *n = 0 when there are none. */
static struct cause *sorted_causes(json_object *by, size_t *n)
{
	struct cause *c;
	size_t k = 0;

	*n = 0;
	if (!by || !json_object_object_length(by))
		return NULL;
	c = calloc(json_object_object_length(by), sizeof(*c));
	if (!c)
		return NULL;
	json_object_object_foreach(by, key, v) {
		uint64_t ns = val_num(v);

		if (ns)
			c[k++] = (struct cause){ key, ns };
	}
	qsort(c, k, sizeof(*c), cause_cmp);
	*n = k;
	return c;
}

static void ledger_row(FILE *out, const char *label, uint64_t ns, uint64_t wall)
{
	fprintf(out, "  %-14s %8s %6.1f%%", label, T(ns), pct(ns, wall));
}

/* summed: a process's ledger over several threads, its wall their thread time */
static void render_ledger(json_object *l, bool summed, FILE *out)
{
	uint64_t wall = num(l, "wall_ns");
	struct cause *c;
	size_t n;

	ledger_row(out, summed ? "thread time" : "wall", wall, wall);
	if (summed)
		fputs("  (its threads' wall times added up)", out);
	fputc('\n', out);
	ledger_row(out, "on-CPU", num(l, "oncpu_ns"), wall);
	fprintf(out, "  user %s, in syscalls %s", T(num(l, "oncpu_user_ns")),
		T(num(l, "oncpu_syscall_ns")));
	if (num(l, "oncpu_kernel_ns"))
		fprintf(out, ", kernel %s", T(num(l, "oncpu_kernel_ns")));
	/* worth a word from 1% of on-CPU time */
	if (num(l, "oncpu_steal_ns") * 100 >= num(l, "oncpu_ns") && num(l, "oncpu_steal_ns") >= 1000000)
		fprintf(out, "; of it stolen (vCPU not running) %s", T(num(l, "oncpu_steal_ns")));
	fputc('\n', out);
	ledger_row(out, "run queue", num(l, "runq_ns"), wall);
	fprintf(out, "  after wakeup %s, preempted %s\n",
		T(num(l, "runq_wakeup_ns")), T(num(l, "runq_preempt_ns")));
	ledger_row(out, "off-CPU", num(l, "offcpu_ns"), wall);
	if (num(l, "iowait_ns"))
		fprintf(out, "  in I/O wait %s", T(num(l, "iowait_ns")));
	fputc('\n', out);
	ledger_row(out, "unattributed", num(l, "unattributed_ns"), wall);
	fputc('\n', out);

	c = sorted_causes(obj(l, "offcpu_by_cause"), &n);
	if (!n)
		return;
	fprintf(out, "  top off-CPU causes (%% of wall)\n");
	for (size_t i = 0; i < n && i < TOP_CAUSES; i++) {
		fputs("    ", out);
		field(out, c[i].name, 22);
		fprintf(out, " %8s %6.1f%%\n", T(c[i].ns), pct(c[i].ns, wall));
	}
	if (n > TOP_CAUSES) {
		uint64_t rest = 0;

		for (size_t i = TOP_CAUSES; i < n; i++)
			rest += c[i].ns;
		fprintf(out, "    (%zu more: %s)\n", n - TOP_CAUSES, T(rest));
	}
	free(c);
}

static void render_syscalls(json_object *sc, int top, FILE *out)
{
	size_t n = arr_len(sc), i;
	uint64_t rest = 0;

	if (!n)
		return;
	fprintf(out, "  %-17s %8s %6s %8s %8s %8s %8s %7s\n",
		"syscall", "count", "errors", "total", "p50", "p99", "max", "off-CPU");
	for (i = 0; i < n && i < (size_t)top; i++) {
		json_object *s = json_object_array_get_idx(sc, i);
		const char *name = cm_json_str(s, "name");
		uint64_t total = num(s, "total_ns");
		char nrname[32];

		if (!json_object_is_type(s, json_type_object))
			continue;
		if (!name) {
			snprintf(nrname, sizeof(nrname), "syscall_%" PRIu64, num(s, "nr"));
			name = nrname;
		}
		fputs("  ", out);
		field(out, name, 17);
		/* the procfs tier samples blocked time: no calls, no latencies */
		if (json_object_get_boolean(cm_json_get(s, "sampled"))) {
			fprintf(out, " %8s %6s %8s %8s %8s %8s %6.1f%%\n", "-", "-", T(total), "-", "-", "-",
				100.0);
			continue;
		}
		fprintf(out, " %8s %6s %8s %8s %8s %8s %6.1f%%\n",
			N(num(s, "count"), 8), N(num(s, "errors"), 6), T(total),
			T(num(s, "p50_ns")), T(num(s, "p99_ns")), T(num(s, "max_ns")),
			/* calls in flight at the window's edges add time, not total */
			pct(num(s, "offcpu_ns"), total > num(s, "offcpu_ns") + num(s, "oncpu_ns")
					 ? total : num(s, "offcpu_ns") + num(s, "oncpu_ns")));
	}
	if (i < n) {
		for (size_t j = i; j < n; j++)
			rest += num(json_object_array_get_idx(sc, j), "total_ns");
		fprintf(out, "  (%zu more syscall%s: %s)\n", n - i, n - i == 1 ? "" : "s", T(rest));
	}
}

static void render_sched_faults(json_object *p, int width, FILE *out)
{
	json_object *s = obj(p, "sched"), *f = obj(p, "faults");
	struct wrap w;

	if (s) {
		wrap_start(&w, out, width, "  sched   ", 10);
		wrap_item(&w, ", ", "%" PRIu64 " voluntary", num(s, "voluntary_switches"));
		wrap_item(&w, ", ", "%" PRIu64 " involuntary switches", num(s, "involuntary_switches"));
		wrap_item(&w, ", ", "%" PRIu64 " migration%s", num(s, "migrations"),
			  num(s, "migrations") == 1 ? "" : "s");
		if (num(s, "runq_waits"))
			wrap_item(&w, ", ", "run-queue wait p50 %s, p99 %s",
				  T(num(s, "runq_p50_ns")), T(num(s, "runq_p99_ns")));
		wrap_end(&w);
	}
	if (f) {
		wrap_start(&w, out, width, "  faults  ", 10);
		wrap_item(&w, ", ", "%" PRIu64 " minor", num(f, "minor"));
		wrap_item(&w, ", ", "%" PRIu64 " major", num(f, "major"));
		wrap_end(&w);
	}
	if ((f = obj(p, "io"))) {
		wrap_start(&w, out, width, "  io      ", 10);
		wrap_item(&w, ", ", "read %s in %" PRIu64 " calls (%s from storage)", B(num(f, "rchar")),
			  num(f, "syscr"), B(num(f, "read_bytes")));
		wrap_item(&w, ", ", "wrote %s in %" PRIu64 " calls (%s to storage)", B(num(f, "wchar")),
			  num(f, "syscw"), B(num(f, "write_bytes")));
		wrap_end(&w);
	}
}

static void render_block(json_object *bio, FILE *out)
{
	if (!arr_len(bio))
		return;
	fprintf(out, "  %-12s %-7s %8s %10s %8s %8s\n",
		"block dev", "op", "requests", "bytes", "avg", "max");
	for (size_t i = 0; i < arr_len(bio); i++) {
		json_object *b = json_object_array_get_idx(bio, i);
		uint64_t c = num(b, "count");

		if (!json_object_is_type(b, json_type_object))
			continue;
		fputs("  ", out);
		field(out, cm_json_str(b, "device") ? cm_json_str(b, "device") : "?", 12);
		fputc(' ', out);
		field(out, cm_json_str(b, "op") ? cm_json_str(b, "op") : "?", 7);
		fprintf(out, " %8s %10s %8s %8s", N(c, 8), B(num(b, "bytes")),
			T(c ? num(b, "total_ns") / c : 0), T(num(b, "max_ns")));
		/* submitted with no completion seen (anomalies.block_unfinished) */
		if (num(b, "submitted") > c)
			fprintf(out, "  +%" PRIu64 " unfinished", num(b, "submitted") - c);
		fputc('\n', out);
	}
}

/* ---- GPU ------------------------------------------------------------------------ */

/* "12.5 GB/s": decimal units, as bandwidth is quoted */
static const char *fmt_bw(uint64_t bps, char *buf, size_t sz)
{
	static const char *const u[] = { "B/s", "kB/s", "MB/s", "GB/s", "TB/s" };
	double x = (double)bps;
	int i = 0;

	while (x >= 999.5 && i < 4) {
		x /= 1000;
		i++;
	}
	snprintf(buf, sz, i ? "%.3g %s" : "%.0f %s", x, u[i]);
	return buf;
}

#define GPU_TOP_API 8

/* The process's GPU work; every row says which tier measured it. */
static void render_gpu(json_object *g, int width, FILE *out)
{
	json_object *api = arr(g, "api"), *kern = arr(g, "kernels"), *cp = arr(g, "copies");
	json_object *ms = arr(g, "memsets"), *sync = obj(g, "sync"), *agent = obj(g, "agent");
	const char *tier = cm_json_str(g, "tier");
	size_t i;

	if (!g)
		return;
	if (tier && !strcmp(tier, "cupti"))
		fprintf(out, "  GPU  tier cupti: device times from CUPTI, clock %s\n",
			cm_json_str(agent, "clock") ? cm_json_str(agent, "clock") : "?");
	else if (tier && !strcmp(tier, "uprobes"))
		fprintf(out, "  GPU  tier uprobes: API spans, no device times%s%s%s\n",
			cm_json_str(agent, "status") ? " (CUPTI: " : "",
			cm_json_str(agent, "status") ? cm_json_str(agent, "status") : "", cm_json_str(agent, "status") ? ")" : "");
	else
		fprintf(out, "  GPU\n");
	if (cm_json_str(agent, "status") && !strcmp(cm_json_str(agent, "status"), "taken_over"))
		fprintf(out, "  CUPTI taken over by another client (torch.profiler?) during the run: "
			"no device times after that\n");
	if (cm_json_str(agent, "clock_check") && !strcmp(cm_json_str(agent, "clock_check"), "disagrees"))
		fprintf(out, "  device clock disagrees with the calls' own times by %.3f s: the timeline's "
			"GPU tracks are shifted\n",
			(double)json_object_get_int64(cm_json_get(agent, "clock_skew_ns")) / 1e9);
	if (arr_len(api)) {
		uint64_t rest = 0;

		fprintf(out, "  %-22s %7s %6s %8s %8s %8s %9s\n",
			"CUDA call", "count", "errors", "total", "p50", "max", "bytes");
		for (i = 0; i < arr_len(api) && i < GPU_TOP_API; i++) {
			json_object *a = json_object_array_get_idx(api, i);

			fputs("  ", out);
			field(out, cm_json_str(a, "name") ? cm_json_str(a, "name") : "?", 22);
			fprintf(out, " %7s %6s %8s %8s %8s %9s\n", N(num(a, "count"), 7),
				N(num(a, "errors"), 6), T(num(a, "total_ns")), T(num(a, "p50_ns")),
				T(num(a, "max_ns")), num(a, "bytes") ? B(num(a, "bytes")) : "-");
		}
		for (size_t j = i; j < arr_len(api); j++)
			rest += num(json_object_array_get_idx(api, j), "total_ns");
		if (i < arr_len(api))
			fprintf(out, "  (%zu more CUDA calls: %s)\n", arr_len(api) - i, T(rest));
	}
	if (arr_len(kern)) {
		fprintf(out, "  %-22s %7s %8s %8s %8s %9s\n",
			"kernels dev/stream", "count", "total", "avg", "max", "untimed");
		for (i = 0; i < arr_len(kern); i++) {
			json_object *k = json_object_array_get_idx(kern, i);
			uint64_t timed = num(k, "count") - num(k, "untimed");
			char name[48];

			snprintf(name, sizeof(name), "  %" PRIu64 "/%" PRIu64 "%s", num(k, "device"),
				 num(k, "stream"), json_object_get_boolean(cm_json_get(k, "graph")) ? " (graph)" : "");
			fputs("  ", out);
			field(out, name, 22);
			fprintf(out, " %7s %8s %8s %8s %9s\n", N(num(k, "count"), 7),
				T(num(k, "total_ns")), T(timed ? num(k, "total_ns") / timed : 0),
				T(num(k, "max_ns")), num(k, "untimed") ? N(num(k, "untimed"), 9) : "-");
		}
	}
	if (arr_len(cp) || arr_len(ms)) {
		fprintf(out, "  %-22s %7s %10s %8s %11s %5s\n",
			"copies kind/memory", "count", "bytes", "time", "bandwidth", "time");
		for (int pass = 0; pass < 2; pass++) {
			json_object *rows = pass ? ms : cp;

			for (i = 0; i < arr_len(rows); i++) {
				json_object *c = json_object_array_get_idx(rows, i);
				char name[48];

				snprintf(name, sizeof(name), "  %s %s", pass ? "memset" : cm_json_str(c, "kind") ? cm_json_str(c, "kind") : "?",
					 cm_json_str(c, "memory") ? cm_json_str(c, "memory") : "?");
				fputs("  ", out);
				field(out, name, 22);
				fprintf(out, " %7s %10s %8s %11s %5s\n", N(num(c, "count"), 7),
					B(num(c, "bytes")), T(num(c, "total_ns")),
					num(c, "bandwidth_bytes_per_s")
						? fmt_bw(num(c, "bandwidth_bytes_per_s"), (char[32]){0}, 32) : "-",
					cm_json_str(c, "time") ? cm_json_str(c, "time") : "");
			}
		}
	}
	if (sync && (num(sync, "count") || num(sync, "spin_ns") || num(sync, "blocked_ns"))) {
		uint64_t w = num(sync, "wait_ns"), s = num(sync, "spin_ns"), b = num(sync, "blocked_ns");
		struct wrap wr;

		wrap_start(&wr, out, width, "  sync    ", 10);
		wrap_item(&wr, ", ", "%" PRIu64 " synchronize call%s, %s", num(sync, "count"),
			  num(sync, "count") == 1 ? "" : "s", T(w));
		wrap_item(&wr, ", ", "GPU wait %s (spin %s, blocked %s)", T(s + b), T(s), T(b));
		if (w > s + b)
			wrap_item(&wr, ", ", "run queue %s", T(w - s - b));
		wrap_end(&wr);
	}
	if (num(g, "driver_ioctls"))
		fprintf(out, "  driver  %" PRIu64 " ioctls on GPU device files, %s\n",
			num(g, "driver_ioctls"), T(num(g, "driver_ioctl_ns")));
	if (num(g, "dropped_records") || num(g, "untimed_records") || num(obj(g, "cupti_overhead"), "count"))
		fprintf(out, "  cupti   %" PRIu64 " records dropped by CUPTI, %" PRIu64
			" without timestamps, overhead %s\n",
			num(g, "dropped_records"), num(g, "untimed_records"),
			T(num(obj(g, "cupti_overhead"), "total_ns")));
}

static void render_process(json_object *p, const struct cm_render_opts *o, FILE *out)
{
	json_object *th = arr(p, "threads");
	int top = o->top_syscalls > 0 ? o->top_syscalls : DEF_TOP_SYSCALLS;
	struct wrap w;
	char lead[64];

	snprintf(lead, sizeof(lead), "pid %" PRIu64 " ", num(p, "pid"));
	fputc('\n', out);
	wrap_start(&w, out, o->width, lead, 4);
	wrap_item(&w, "", "%s", cm_json_str(p, "comm") ? cm_json_str(p, "comm") : "?");
	if (cm_json_get(p, "ppid"))
		wrap_item(&w, " ", "(ppid %" PRIu64 ")", num(p, "ppid"));
	if (cm_json_get(p, "exit_code"))
		wrap_item(&w, ", ", "%s", fmt_exit_code(num(p, "exit_code"), (char[48]){0}, 48));
	else if (cm_json_get(p, "end_ns") && !num(p, "end_ns"))
		wrap_item(&w, ", ", "alive at the end");
	if (th || arr(p, "threads_folded")) {
		uint64_t n = cm_thread_count(p);

		wrap_item(&w, ", ", "%" PRIu64 " thread%s", n, n == 1 ? "" : "s");
	}
	wrap_end(&w);

	if (obj(p, "ledger"))
		render_ledger(obj(p, "ledger"), cm_thread_count(p) > 1, out);
	render_syscalls(arr(p, "syscalls"), top, out);
	render_sched_faults(p, o->width, out);
	render_block(arr(p, "block_io"), out);
	render_gpu(obj(p, "gpu"), o->width, out);
	cm_python_render(obj(p, "python"), out);
	if (o->threads)
		cm_render_threads(p, o->width, o->thread_rows, out);
}

/* ---- lost and anomalies ------------------------------------------------------ */

/* What to do about a drop, by its counter. */
static const char *lost_hint(const char *key)
{
	static const struct { const char *key, *hint; } hints[] = {
		{ "threads_map_full", "raise --max-threads" },
		{ "syscall_map_full", "raise --max-syscall-rows" },
		{ "stack_ringbuf_full", "lower -F, or raise --min-block" },
		{ "kernel_stack_missing", "lower -F, or raise --min-block" },
		{ "user_stack_missing", "lower -F, or raise --min-block" },
		{ "timeline_ringbuf_full", "lower --trace-rate, or raise --trace-syscall-min" },
		{ "timeline_rate_limited", "raise --trace-rate" },
		{ "critical_path_ringbuf_full", "the critical path misses switches: --no-critical-path if it need not" },
	};

	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (!strcmp(key, hints[i].key))
			return hints[i].hint;
	return NULL;
}

/* Nonzero counters of o (nested objects as "outer.inner"), one row each when
 * out is set; returns how many there are. */
static size_t nonzero(json_object *o, const char *prefix, FILE *out)
{
	size_t n = 0;

	if (!o || !json_object_is_type(o, json_type_object))
		return 0;
	json_object_object_foreach(o, key, v) {
		char name[128];

		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", key);
		if (json_object_is_type(v, json_type_object)) {
			n += nonzero(v, name, out);
		} else if (val_num(v)) {
			n++;
			if (out) {
				const char *hint = lost_hint(name);

				fputs("  ", out);
				field(out, name, 28);
				fprintf(out, " %12" PRIu64, val_num(v));
				if (hint)
					fprintf(out, "  (%s)", hint);
				fputc('\n', out);
			}
		}
	}
	return n;
}

static void render_lost(json_object *r, FILE *out)
{
	json_object *lost = obj(r, "lost"), *anom = obj(r, "anomalies");

	fputc('\n', out);
	if (!lost) {
		fprintf(out, "lost: not recorded in this report\n");
	} else if (!nonzero(lost, "", NULL)) {
		fprintf(out, "lost: none\n");
	} else {
		fprintf(out, "lost: the tracer dropped data; the numbers above may be incomplete\n");
		nonzero(lost, "", out);
	}
	if (nonzero(anom, "", NULL)) {
		fprintf(out, "anomalies (counted, nothing lost):\n");
		nonzero(anom, "", out);
	}
}

/* The uprobe trampolines' syscalls (uretprobe, uprobe) the traced threads made. */
static void render_probe_syscalls(json_object *ob, FILE *out)
{
	json_object *p = obj(ob, "probe_syscalls");

	if (num(p, "count"))
		fprintf(out, "  and %" PRIu64 " uprobe trampoline syscalls in traced threads: %s "
			"(not in their syscalls)\n", num(p, "count"), T(num(p, "oncpu_ns")));
}

/* What the tracer itself cost, from the kernel's BPF run-time statistics. */
static void render_observer(json_object *r, FILE *out)
{
	json_object *ob = obj(r, "observer"), *w = obj(r, "window");
	uint64_t dur = num(w, "duration_ns");
	const char *mode;
	bool sampled;

	if (!ob)
		return;
	mode = cm_json_str(ob, "mode");
	if (mode && !strcmp(mode, "procfs")) {
		json_object *sm = obj(ob, "sampler");

		fprintf(out, "observer cost: sampler %s of CPU (%.2f%% of one CPU), %" PRIu64 " thread samples, "
			"%" PRIu64 " ns each; exact counters read every %s, %s of CPU\n",
			T(num(sm, "cpu_ns")), pct(num(sm, "cpu_ns"), dur), num(sm, "thread_samples"),
			num(sm, "ns_per_thread_sample"), T(num(sm, "detail_interval_ns")), T(num(sm, "detail_cpu_ns")));
		return;
	}
	if (!json_object_get_boolean(cm_json_get(ob, "bpf_stats"))) {
		fprintf(out, "observer cost: not measured (BPF run-time statistics off or unavailable)\n");
		render_probe_syscalls(ob, out);
		return;
	}
	/* reports from before --observer-cost had the statistics on throughout */
	sampled = mode && !strcmp(mode, "sampled");
	if (sampled) {
		uint64_t est = num(ob, "est_run_time_ns");
		double on = pct(num(ob, "sampled_ns"), dur);

		fprintf(out, "observer cost: ~%s of CPU in BPF programs (%.2f%% of one CPU; "
			"estimated from %.*f%% of the window with run-time statistics on), "
			"%" PRIu64 " events sampled, %" PRIu64 " ns each\n",
			T(est), pct(est, dur), on < 1 ? 1 : 0, on, num(ob, "events"), num(ob, "avg_ns"));
	} else {
		uint64_t ns = num(ob, "run_time_ns");

		fprintf(out, "observer cost: %s of CPU in BPF programs (%.2f%% of one CPU), "
			"%" PRIu64 " events, %" PRIu64 " ns each\n",
			T(ns), pct(ns, dur), num(ob, "events"), num(ob, "avg_ns"));
	}
	if (num(obj(ob, "agent_threads"), "count"))
		fprintf(out, "  and %" PRIu64 " CUPTI agent thread%s in the traced programs: %s on CPU "
			"(left out of the ledgers)\n", num(obj(ob, "agent_threads"), "count"),
			num(obj(ob, "agent_threads"), "count") == 1 ? "" : "s",
			T(num(obj(ob, "agent_threads"), "oncpu_ns")));
	render_probe_syscalls(ob, out);
	if (json_object_get_boolean(cm_json_get(ob, "others_had_stats")))
		fprintf(out, "  another process had BPF run-time statistics on too: %s\n",
			sampled ? "the kernel also counted while ours were off, so the estimate is high"
				: "runs from before the window may be counted");
}

static int cmp_wall_desc(const void *a, const void *b)
{
	uint64_t x = num(obj(*(json_object *const *)a, "ledger"), "wall_ns");
	uint64_t y = num(obj(*(json_object *const *)b, "ledger"), "wall_ns");

	return x > y ? -1 : x < y;
}

/* The processes, the heaviest MAX_PROCS of them in the report's order when
 * there are more, then a line for the rest and for those folded by comm. */
static void render_processes(json_object *report, json_object *procs,
			     const struct cm_render_opts *o, FILE *out)
{
	json_object *folded = arr(report, "folded_processes");
	size_t n = arr_len(procs), shown = 0, nfolded = 0;
	json_object **by_wall = calloc(n + 1, sizeof(*by_wall));
	uint64_t cut = 0;

	for (size_t i = 0; by_wall && i < n; i++)
		by_wall[i] = json_object_array_get_idx(procs, i);
	if (by_wall && n > MAX_PROCS) {
		qsort(by_wall, n, sizeof(*by_wall), cmp_wall_desc);
		cut = num(obj(by_wall[MAX_PROCS - 1], "ledger"), "wall_ns");
	}
	for (size_t i = 0; i < n; i++) {
		json_object *p = json_object_array_get_idx(procs, i);

		if (!json_object_is_type(p, json_type_object))
			continue;
		if (n > MAX_PROCS && (num(obj(p, "ledger"), "wall_ns") < cut || shown == MAX_PROCS))
			continue;
		render_process(p, o, out);
		shown++;
	}
	free(by_wall);
	for (size_t i = 0; i < arr_len(folded); i++)
		nfolded += num(json_object_array_get_idx(folded, i), "count");
	if (shown < n || nfolded) {
		fprintf(out, "\n(%zu more process%s", n - shown + nfolded, n - shown + nfolded == 1 ? "" : "es");
		if (nfolded) {
			fprintf(out, ", %zu of them ended and folded by name:", nfolded);
			for (size_t i = 0; i < arr_len(folded) && i < 8; i++) {
				json_object *g = json_object_array_get_idx(folded, i);

				fputc(' ', out);
				cm_put_text(out, cm_json_str(g, "comm") ? cm_json_str(g, "comm") : "?", 16);
				fprintf(out, " x%" PRIu64, num(g, "count"));
			}
			if (arr_len(folded) > 8)
				fprintf(out, " ...");
		}
		fprintf(out, "; every one is in the totals and the JSON report)\n");
	}
}

int cm_render_text(json_object *report, const struct cm_render_opts *opts, FILE *out)
{
	struct cm_render_opts o = opts ? *opts : (struct cm_render_opts){ 0 };
	json_object *procs;

	if (!report || !json_object_is_type(report, json_type_object)) {
		cm_err("the report is not a JSON object; is it a contactmap -o file?");
		return -1;
	}
	if (o.width <= 0)
		o.width = DEF_WIDTH;
	else if (o.width < 40)
		o.width = 40;	/* narrower only breaks the fixed tables worse */

	render_header(report, o.width, out);
	render_map(report, o.width, out);
	cm_render_critpath(report, out);
	cm_render_requests(report, out);
	procs = arr(report, "processes");
	if (!procs)
		fprintf(out, "\nno processes in this report\n");
	else
		render_processes(report, procs, &o, out);
	render_lost(report, out);
	render_observer(report, out);
	return 0;
}
