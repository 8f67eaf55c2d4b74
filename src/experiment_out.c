// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What contactmap experiment makes of its runs: the table of runs, the
 * command's own metric per side, and for every knob set the diff of its runs
 * against the baseline's (diff.c, with its noise rule: a change smaller than
 * a side's run-to-run spread is noise) under a one-line verdict; as text and
 * as contactmap-experiment/1 JSON.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "experiment.h"

/* A contact-map row counts as moved when it is beyond the noise and its share
 * changed by this much of the total: a row of a few microseconds that happens
 * to clear a tiny spread says nothing about the hypothesis. */
#define MOVED_MIN_SHARE 0.005

struct mstat { int n; double mean, sd, min, max; };

static struct mstat metric_stats(const struct exp *e, int side)
{
	struct mstat m = { 0 };
	double sum = 0, ss = 0;

	for (int i = 0; i < e->nruns; i++) {
		const struct exp_run *r = &e->runs[i];

		if (r->side != side || r->round < 0 || !r->done || !isfinite(r->metric))
			continue;
		m.min = m.n ? fmin(m.min, r->metric) : r->metric;
		m.max = m.n ? fmax(m.max, r->metric) : r->metric;
		sum += r->metric;
		m.n++;
	}
	m.mean = m.n ? sum / m.n : NAN;
	for (int i = 0; i < e->nruns; i++) {
		const struct exp_run *r = &e->runs[i];

		if (r->side == side && r->round >= 0 && r->done && isfinite(r->metric))
			ss += (r->metric - m.mean) * (r->metric - m.mean);
	}
	m.sd = m.n > 1 ? sqrt(ss / (m.n - 1)) : 0;
	return m;
}

/* The diff's noise rule, for the metric. */
static bool metric_noise(const struct mstat *a, const struct mstat *b)
{
	return (a->n > 1 || b->n > 1) && fabs(b->mean - a->mean) < fmax(a->max - a->min, b->max - b->min);
}

static char *knob_list(const struct exp_side *s)
{
	size_t len = 1;
	char *out;

	for (int k = 0; k < s->nknobs; k++)
		len += strlen(s->knobs[k].spec) + 1;
	out = calloc(1, len);
	for (int k = 0; out && k < s->nknobs; k++) {
		if (k)
			strcat(out, " ");
		strcat(out, s->knobs[k].spec);
	}
	return out;
}

/* Runs of a side that completed, as report paths. */
static int side_reports(const struct exp *e, int side, char **paths)
{
	int n = 0;

	for (int i = 0; i < e->nruns; i++)
		if (e->runs[i].side == side && e->runs[i].round >= 0 && e->runs[i].done)
			paths[n++] = e->runs[i].report;
	return n;
}

static double jdouble(json_object *o, const char *k)
{
	json_object *v = cm_json_get(o, k);

	return v ? json_object_get_double(v) : 0;
}

static double share_change(json_object *m)
{
	return fabs(jdouble(m, "after_share") - jdouble(m, "before_share"));
}

static int by_share_change(const void *a, const void *b)
{
	double x = share_change(*(json_object *const *)a), y = share_change(*(json_object *const *)b);

	return x > y ? -1 : x < y;
}

/* Contact-map rows of a diff that moved beyond the noise, largest share change first. */
static json_object *moved_rows(json_object *diff)
{
	json_object *rows = cm_json_get_type(diff, "rows", json_type_array), *out = json_object_new_array();

	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i), *m;
		const char *sec = cm_json_str(r, "section");
		double ds = jdouble(r, "after_share") - jdouble(r, "before_share");

		if (!sec || strcmp(sec, "contact_map") || json_object_get_boolean(cm_json_get(r, "noise")) ||
		    jdouble(r, "delta") == 0 || fabs(ds) < MOVED_MIN_SHARE)
			continue;
		m = json_object_new_object();
		json_object_object_add(m, "subsystem", json_object_new_string(cm_json_str(r, "item")));
		json_object_object_add(m, "before_share", json_object_new_double(jdouble(r, "before_share")));
		json_object_object_add(m, "after_share", json_object_new_double(jdouble(r, "after_share")));
		json_object_object_add(m, "before_ns", json_object_new_double(jdouble(r, "before")));
		json_object_object_add(m, "after_ns", json_object_new_double(jdouble(r, "after")));
		json_object_object_add(m, "delta_ns", json_object_new_double(jdouble(r, "delta")));
		json_object_array_add(out, m);
	}
	json_object_array_sort(out, by_share_change);
	return out;
}

static const char *subsys_label(const char *key)
{
	int k = cm_subsys_from_key(key);

	return k >= 0 ? cm_subsys_label(k) : key;
}

static void print_verdict(FILE *out, const char *verdict, json_object *moved, int na, int nb)
{
	size_t n = json_object_array_length(moved);

	if (!strcmp(verdict, "one run per side")) {
		fprintf(out, "  verdict: one run per side, no noise judgement (give --runs 3 or more)\n");
		return;
	}
	if (!n) {
		fprintf(out, "  verdict: noise: no row of the contact map moved beyond the run-to-run\n"
			     "  spread of %d and %d runs\n", na, nb);
		return;
	}
	fprintf(out, "  verdict: changed, beyond the run-to-run spread of %d and %d runs:\n", na, nb);
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(moved, i);
		double b = jdouble(m, "before_share"), a = jdouble(m, "after_share");
		char bn[32], an[32];

		cm_fmt_ns((uint64_t)llround(jdouble(m, "before_ns")), bn, sizeof(bn));
		cm_fmt_ns((uint64_t)llround(jdouble(m, "after_ns")), an, sizeof(an));
		fprintf(out, "    %-15s %s %4.1f points  %5.1f%% > %5.1f%%  (%s > %s)\n",
			subsys_label(cm_json_str(m, "subsystem")), a > b ? "up  " : "down",
			100 * fabs(a - b), 100 * b, 100 * a, bn, an);
	}
}

static void print_runs(FILE *out, const struct exp *e)
{
	fprintf(out, "\nruns (reports, outputs and logs in %s)\n", e->dir);
	fprintf(out, "  run  side     window%s  exit\n", e->metric_src ? "      metric" : "");
	for (int i = 0; i < e->nruns; i++) {
		const struct exp_run *r = &e->runs[i];
		char w[32], m[32] = "";

		if (!r->done)
			continue;
		cm_fmt_ns(r->window_ns, w, sizeof(w));
		if (e->metric_src && isfinite(r->metric))
			snprintf(m, sizeof(m), "  %10.4g", r->metric);
		else if (e->metric_src)
			snprintf(m, sizeof(m), "  %10s", "-");
		if (r->round < 0)
			fprintf(out, "   w-  %-4s  %9s%s  %4d  (warm-up)\n", e->sides[r->side].name, w, m, r->status);
		else
			fprintf(out, "  %3d  %-4s  %9s%s  %4d\n", r->round + 1, e->sides[r->side].name, w, m,
				r->status);
	}
}

static void print_metric(FILE *out, const struct exp *e)
{
	struct mstat a = metric_stats(e, 0);

	fprintf(out, "\nmetric /%s/ (the mean of each run's matches)\n", e->metric_src);
	fprintf(out, "  side         mean      stddev    runs  vs A\n");
	for (int s = 0; s < e->nsides; s++) {
		struct mstat m = metric_stats(e, s);
		char vs[64] = "";

		if (s && m.n && a.n && m.mean == a.mean)
			snprintf(vs, sizeof(vs), "no change");
		else if (s && m.n && a.n)
			snprintf(vs, sizeof(vs), "%+.4g (%+.1f%%)%s", m.mean - a.mean,
				 a.mean ? 100 * (m.mean - a.mean) / fabs(a.mean) : 0,
				 metric_noise(&a, &m) ? " ~ noise" : (a.n > 1 || m.n > 1) ? " beyond noise" : "");
		if (!m.n)
			fprintf(out, "  %-4s  %11s  %10s  %6d  (no run printed a match)\n", e->sides[s].name, "-", "-", 0);
		else
			fprintf(out, "  %-4s  %11.6g  %10.4g  %6d  %s\n", e->sides[s].name, m.mean, m.sd, m.n, vs);
	}
}

static json_object *side_json(const struct exp_side *s)
{
	json_object *o = json_object_new_object(), *knobs = json_object_new_array();

	json_object_object_add(o, "name", json_object_new_string(s->name));
	json_object_object_add(o, "baseline", json_object_new_boolean(s->name[0] == 'A'));
	for (int k = 0; k < s->nknobs; k++) {
		const struct cm_knob *kn = &s->knobs[k];
		json_object *j = json_object_new_object(), *files = json_object_new_array();

		json_object_object_add(j, "spec", json_object_new_string(kn->spec));
		json_object_object_add(j, "system", json_object_new_boolean(kn->system));
		for (int f = 0; f < kn->nfiles; f++) {
			json_object *x = json_object_new_object();

			json_object_object_add(x, "path", json_object_new_string(kn->files[f].path));
			json_object_object_add(x, "value", json_object_new_string(kn->files[f].value));
			json_object_object_add(x, "original", json_object_new_string(kn->files[f].original));
			json_object_array_add(files, x);
		}
		if (kn->system)
			json_object_object_add(j, "files", files);
		else
			json_object_put(files);
		json_object_array_add(knobs, j);
	}
	json_object_object_add(o, "knobs", knobs);
	return o;
}

static json_object *run_json(const struct exp *e, const struct exp_run *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "round", json_object_new_int(r->round + 1));
	json_object_object_add(o, "side", json_object_new_string(e->sides[r->side].name));
	json_object_object_add(o, "warmup", json_object_new_boolean(r->round < 0));
	json_object_object_add(o, "done", json_object_new_boolean(r->done));
	json_object_object_add(o, "report", json_object_new_string(r->report));
	json_object_object_add(o, "stdout", json_object_new_string(r->out));
	json_object_object_add(o, "stderr", json_object_new_string(r->err));
	json_object_object_add(o, "log", json_object_new_string(r->log));
	if (!r->done)
		return o;
	json_object_object_add(o, "status", json_object_new_int(r->status));
	json_object_object_add(o, "window_ns", json_object_new_int64((int64_t)r->window_ns));
	if (e->metric_src) {
		json_object *m = json_object_new_object();

		json_object_object_add(m, "value", isfinite(r->metric) ? json_object_new_double(r->metric) : NULL);
		json_object_object_add(m, "matches", json_object_new_int(r->nmetric));
		json_object_object_add(o, "metric", m);
	}
	json_object_object_add(o, "contact_map", r->contact_map ? json_object_get(r->contact_map)
							       : json_object_new_array());
	return o;
}

static json_object *mstat_json(const struct mstat *m)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "runs", json_object_new_int(m->n));
	json_object_object_add(o, "mean", m->n ? json_object_new_double(m->mean) : NULL);
	json_object_object_add(o, "stddev", m->n ? json_object_new_double(m->sd) : NULL);
	json_object_object_add(o, "min", m->n ? json_object_new_double(m->min) : NULL);
	json_object_object_add(o, "max", m->n ? json_object_new_double(m->max) : NULL);
	return o;
}

int exp_output(struct exp *e)
{
	FILE *out = e->json_path && !strcmp(e->json_path, "-") ? stderr : stdout;
	json_object *j = json_object_new_object(), *a, *cmps = json_object_new_array();
	char **before = calloc(e->nruns + 1, sizeof(char *)), **after = calloc(e->nruns + 1, sizeof(char *));
	char el[32];
	int nb, rc = 0;

	if (!before || !after) {
		cm_err("out of memory");
		return -1;
	}
	fprintf(out, "contactmap experiment: %d run%s of each of %d sides, interleaved, %s in all\n",
		e->runs_per_side, e->runs_per_side == 1 ? "" : "s", e->nsides,
		cm_fmt_ns(e->end_ns - e->start_ns, el, sizeof(el)));
	fputs("command:", out);
	for (int i = 0; e->cmd[i]; i++) {
		fputc(' ', out);
		cm_put_text(out, e->cmd[i], 200);
	}
	fputc('\n', out);
	for (int s = 0; s < e->nsides; s++) {
		fprintf(out, "  %s  %s", e->sides[s].name, s ? "" : "baseline");
		for (int i = 0; i < e->sides[s].nknobs; i++) {
			const struct cm_knob *k = &e->sides[s].knobs[i];

			fputs(i ? "  " : "", out);
			cm_put_text(out, k->spec, 1000);
			if (k->nfiles)
				fprintf(out, " (was %s%s)", k->files[0].original, k->nfiles > 1 ? " ..." : "");
		}
		fputc('\n', out);
	}
	if (e->stop_sig)
		fprintf(out, "stopped by %s: the runs that completed\n", strsignal(e->stop_sig));
	print_runs(out, e);
	if (e->metric_src)
		print_metric(out, e);

	nb = side_reports(e, 0, before);
	for (int s = 1; s < e->nsides; s++) {
		struct cm_diff_opts o = { .all = e->all, .no_file_list = true };
		int na = side_reports(e, s, after);
		char *kl = knob_list(&e->sides[s]), *text = NULL;
		size_t tlen = 0;
		json_object *diff = NULL, *c, *moved;
		const char *verdict;
		FILE *mem;

		fprintf(out, "\n==== %s vs A: %s ====\n", e->sides[s].name, kl ? kl : "");
		if (!nb || !na) {
			fprintf(out, "  no completed runs of %s to compare\n", nb ? e->sides[s].name : "A");
			free(kl);
			continue;
		}
		mem = open_memstream(&text, &tlen);
		if (!mem || cm_diff_files(before, nb, after, na, &o, mem, &diff)) {
			if (mem)
				fclose(mem);
			free(text);
			free(kl);
			rc = -1;
			continue;
		}
		fclose(mem);
		moved = moved_rows(diff);
		verdict = nb < 2 && na < 2 ? "one run per side" : json_object_array_length(moved) ? "changed" : "noise";
		print_verdict(out, verdict, moved, nb, na);
		fputc('\n', out);
		fwrite(text, 1, tlen, out);
		free(text);

		c = json_object_new_object();
		json_object_object_add(c, "side", json_object_new_string(e->sides[s].name));
		json_object_object_add(c, "against", json_object_new_string("A"));
		json_object_object_add(c, "knobs", json_object_new_string(kl ? kl : ""));
		json_object_object_add(c, "verdict", json_object_new_string(verdict));
		json_object_object_add(c, "moved", moved);
		if (e->metric_src) {
			struct mstat ma = metric_stats(e, 0), mb = metric_stats(e, s);
			json_object *m = json_object_new_object();

			json_object_object_add(m, "delta", ma.n && mb.n ? json_object_new_double(mb.mean - ma.mean) : NULL);
			json_object_object_add(m, "rel", ma.n && mb.n && ma.mean
					       ? json_object_new_double((mb.mean - ma.mean) / fabs(ma.mean)) : NULL);
			json_object_object_add(m, "noise", json_object_new_boolean(ma.n && mb.n && metric_noise(&ma, &mb)));
			json_object_object_add(c, "metric", m);
		}
		json_object_object_add(c, "diff", diff);
		json_object_array_add(cmps, c);
		free(kl);
	}

	if (e->json_path) {
		json_object *tool = json_object_new_object(), *argv = json_object_new_array();

		json_object_object_add(j, "schema", json_object_new_string(EXP_SCHEMA));
		json_object_object_add(tool, "name", json_object_new_string("contactmap"));
		json_object_object_add(tool, "version", json_object_new_string(CM_VERSION));
		json_object_object_add(j, "tool", tool);
		for (int i = 0; e->cmd[i]; i++) {
			char clean[4096];

			cm_sanitize_comm(e->cmd[i], strnlen(e->cmd[i], 1000), clean, sizeof(clean));
			json_object_array_add(argv, json_object_new_string(clean));
		}
		json_object_object_add(j, "command", argv);
		json_object_object_add(j, "runs_per_side", json_object_new_int(e->runs_per_side));
		json_object_object_add(j, "warmup", json_object_new_int(e->warmup));
		json_object_object_add(j, "dir", json_object_new_string(e->dir));
		json_object_object_add(j, "elapsed_ns", json_object_new_int64((int64_t)(e->end_ns - e->start_ns)));
		json_object_object_add(j, "interrupted", json_object_new_boolean(e->stop_sig != 0));
		if (e->stop_sig)
			json_object_object_add(j, "signal", json_object_new_int(e->stop_sig));
		a = json_object_new_array();
		for (int s = 0; s < e->nsides; s++)
			json_object_array_add(a, side_json(&e->sides[s]));
		json_object_object_add(j, "sides", a);
		a = json_object_new_array();
		for (int i = 0; i < e->nruns; i++)
			json_object_array_add(a, run_json(e, &e->runs[i]));
		json_object_object_add(j, "runs", a);
		if (e->metric_src) {
			json_object *m = json_object_new_object(), *sides = json_object_new_array();

			json_object_object_add(m, "regex", json_object_new_string(e->metric_src));
			for (int s = 0; s < e->nsides; s++) {
				struct mstat ms = metric_stats(e, s);
				json_object *x = mstat_json(&ms);

				json_object_object_add(x, "side", json_object_new_string(e->sides[s].name));
				json_object_array_add(sides, x);
			}
			json_object_object_add(m, "sides", sides);
			json_object_object_add(j, "metric", m);
		} else {
			json_object_object_add(j, "metric", NULL);
		}
		json_object_object_add(j, "comparisons", cmps);
		cmps = NULL;
		if (fflush(out) == EOF || cm_write_json(j, e->json_path))
			rc = -1;
	}
	json_object_put(cmps);
	json_object_put(j);
	free(before);
	free(after);
	if (fflush(out) == EOF)
		rc = -1;
	return rc;
}
