// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The text of contactmap diff: the reports compared, the environment, then a
 * table per section. Nothing is cut: a command, a path or a row label
 * longer than its room wraps onto further lines.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "diff.h"


/* s in w columns (never cut: widths are sized to the cells, and a name
 * longer than its column gets a line of its own); right-aligned when right. */
static void cell(FILE *out, const char *s, int w, bool right)
{
	int n = cm_text_cols(s);

	if (right && n < w)
		fprintf(out, "%*s", w - n, "");
	cm_put_text(out, s, n);
	if (!right && n < w)
		fprintf(out, "%*s", w - n, "");
}

/* Bytes of the UTF-8 character at s (1 for a stray byte). */
static size_t char_len(const char *s)
{
	unsigned char c = (unsigned char)*s;
	size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

	for (size_t i = 1; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			return 1;
	return n;
}

/* Columns of the first n bytes of s, one per character. */
static int cols(const char *s, size_t n)
{
	int c = 0;

	for (size_t i = 0; i < n; i += char_len(s + i))
		c++;
	return c;
}

/* Up to max columns of the n bytes at s, whole characters; the bytes taken. */
static size_t put_cols(FILE *out, const char *s, size_t n, int max, int *col)
{
	size_t i = 0;

	for (int c = 0; i < n && c < max; c++) {
		char ch[8];
		size_t k = char_len(s + i);

		memcpy(ch, s + i, k);
		ch[k] = 0;
		cm_put_text(out, ch, 1);	/* control characters print as '?' */
		i += k;
		(*col)++;
	}
	return i;
}

/* s from column col on, broken at spaces into lines of WIDTH (continuation
 * lines at indent); a word longer than a line is broken, never cut. After
 * text already on the line (more), the first word is spaced from it and may
 * move to the next line. Returns the column it ends at, without a newline. */
static int wrap_words(FILE *out, const char *s, int col, int indent, bool more)
{
	bool fresh = !more;

	if (indent > WIDTH / 2)
		indent = WIDTH / 2;
	s += strspn(s, " ");
	while (*s) {
		size_t n = strcspn(s, " ");

		if (!fresh && col + 1 + cols(s, n) > WIDTH) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		} else if (!fresh) {
			fputc(' ', out);
			col++;
		}
		while (n) {
			size_t took;

			if (col >= WIDTH) {
				fprintf(out, "\n%*s", indent, "");
				col = indent;
			}
			took = put_cols(out, s, n, WIDTH - col, &col);
			s += took;
			n -= took;
		}
		fresh = false;
		s += strspn(s, " ");
	}
	return col;
}

static void wrap_from(FILE *out, const char *s, int col, int indent)
{
	wrap_words(out, s, col, indent, false);
	fputc('\n', out);
}

/* s broken at spaces into lines of WIDTH; the first line starts at column
 * first, continuation lines at indent. */
static void wrapped(FILE *out, const char *s, int first, int indent)
{
	fprintf(out, "%*s", first, "");
	wrap_from(out, s, first, indent);
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
		t->l = diff_xrealloc(t->l, t->cap * sizeof(*t->l));
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
	tadd(t, (struct tline){ .c = { diff_xstrdup(name), diff_xstrdup(b), diff_xstrdup(a), diff_xstrdup(dl),
				       diff_xstrdup(rel), diff_xstrdup(sh) }, .noise = r->noise });
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
			wrapped(out, l->c[0], 2, 6);
			continue;
		}
		/* a label longer than its column: a line of its own, the
		 * numbers under it */
		if (cm_text_cols(l->c[0]) > w[0]) {
			wrapped(out, l->c[0], 2, 6);
			fprintf(out, "  %*s", w[0], "");
		} else {
			fputs("  ", out);
			cell(out, l->c[0], w[0], false);
		}
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
		return diff_xasprintf("%s%s%soff-CPU %s", indent, r->proc ? r->proc : "", r->proc ? " " : "",
				 item + 7);
	return diff_xasprintf("%s%s%s%s", indent, r->proc ? r->proc : "", r->proc ? " " : "", disp(item));
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
			 .c = { diff_xasprintf("%s%s%s", r->proc ? r->proc : "", r->proc ? ": " : "", r->item) } });
		for (size_t k = 0; k < g[i].n; k++) {
			if (k && !d->all && d->rows[g[i].first + k].delta == 0)
				continue;	/* e.g. errors 0 -> 0; the first (count) stays */
			char *name = diff_xasprintf("    %s", disp(d->rows[g[i].first + k].metric));

			row_line(d, &t, &d->rows[g[i].first + k], name);
			free(name);
		}
	}
	if (!total)
		return;
	if (sec == SEC_LEDGER && !d->all && one_process(d)) {
		fprintf(out, "\n%s: one process, the same as the totals\n", diff_sec_title[sec]);
		for (int i = 0; i < t.n; i++)
			for (int c = 0; c < NCOL; c++)
				free(t.l[i].c[c]);
		free(t.l);
		return;
	}
	fprintf(out, "\n%s", diff_sec_title[sec]);
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
		wrapped(out, msg + 2, 2, 3);
	}
}

/* One token list against another: what was removed and what was added
 * (kernel command lines are long and differ in a word or two). */
static void print_token_diff(FILE *out, const char *a, const char *b)
{
	char *msg = diff_xstrdup("");

	for (int pass = 0; pass < 2; pass++) {
		const char *from = pass ? b : a, *other = pass ? a : b;
		char *copy = diff_xstrdup(from), *save = NULL;
		bool any = false;

		for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			bool found = false;
			size_t n = strlen(tok);

			for (const char *p = other; !found && (p = strstr(p, tok)); p += n)
				found = (p == other || p[-1] == ' ') && (p[n] == ' ' || !p[n]);
			if (found)
				continue;
			char *m = diff_xasprintf("%s%s%s", msg, any ? " " : (pass ? (*msg ? "; added " : "added ") : "removed "), tok);

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
		n += diff_env_changed(&d->env[i]);
	if (!n) {
		fprintf(out, "\nenvironment: same host facts, target context and features\n");
		return;
	}
	fprintf(out, "\nenvironment (%d difference%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < d->nenv; i++) {
		struct env_fact *f = &d->env[i];
		const char *a = f->val[0] ? f->val[0] : "(absent)", *b = f->val[1] ? f->val[1] : "(absent)";
		int k = cm_text_cols(f->key);

		if (!diff_env_changed(f))
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
		wrapped(out, f->key, 2, 4);
		if (f->val[0] && f->val[1] && strchr(a, ' ') && strchr(b, ' ') && !strstr(a, " | ") &&
		    !strstr(b, " | ")) {
			print_token_diff(out, a, b);
			continue;
		}
		fprintf(out, "    %s: ", side_name(0));
		wrap_from(out, a, 12, 12);
		fprintf(out, "    %s:  ", side_name(1));
		wrap_from(out, b, 12, 12);
	}
}

void diff_print_text(FILE *out, struct diff *d, struct group *g, size_t ng)
{
	bool multi = d->s[0].n > 1 || d->s[1].n > 1;

	fprintf(out, "contactmap diff: %d report%s before, %d after\n", d->s[0].n,
		d->s[0].n == 1 ? "" : "s", d->s[1].n);
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < d->s[s].n; i++) {
			char *cmd = diff_command_of(d->s[s].r[i]), dur[32];
			int col;

			/* the path and the whole command, wrapped under the path */
			fprintf(out, "  %-6s  %7s  ", side_name(s),
				cm_fmt_ns((uint64_t)diff_num(obj(d->s[s].r[i], "window"), "duration_ns"),
					  dur, sizeof(dur)));
			col = wrap_words(out, d->s[s].paths[i], 19, 19, false);
			if (*cmd) {
				fputc(' ', out);
				wrap_words(out, cmd, col + 1, 19, true);
			}
			fputc('\n', out);
			free(cmd);
		}
	}
	print_env(out, d);
	for (int i = 0; i < d->nnotes; i++) {
		char *l = diff_xasprintf("note: %s", d->notes[i]);

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

