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
 * This file is the command line, the JSON output (contactmap-diff/1) and
 * cm_diff_files(), which `contactmap experiment` calls; the rows are built in
 * diff_rows.c and printed in diff_text.c.
 */
#include <math.h>
#include "diff.h"
#include "outfile.h"

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
				const char *sn = diff_side_name(s);
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

/* Reads files[0..split) as the BEFORE side and files[split..nfiles) as AFTER. */
static int load_sides(struct diff *d, char *const *files, int nfiles, int split)
{
	d->s[0] = (struct side){ .n = split, .paths = xcalloc(split, sizeof(char *)),
				.r = xcalloc(split, sizeof(json_object *)) };
	d->s[1] = (struct side){ .n = nfiles - split, .paths = xcalloc(nfiles - split, sizeof(char *)),
				.r = xcalloc(nfiles - split, sizeof(json_object *)) };
	for (int i = 0; i < nfiles; i++) {
		int s = i >= split, k = s ? i - split : i;
		json_object *r = cm_read_json(files[i]);

		if (!r)
			return -1;
		if (!arr(r, "processes") && !arr(r, "contact_map") && !obj(r, "totals")) {
			cm_err("%s is not a contactmap report: it has no processes, totals or contact_map",
			       files[i]);
			json_object_put(r);
			return -1;
		}
		d->s[s].paths[k] = !strcmp(files[i], "-") ? "stdin" : files[i];
		d->s[s].r[k] = r;
	}
	return 0;
}

int cm_diff_main(int argc, char **argv)
{
	struct diff d = { 0 };
	const char *json_path = NULL;
	struct cm_out *jout = NULL;
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
	if (load_sides(&d, files, nfiles, split))
		goto out;
	/* opened now (and refused now, if it must be), written at the end */
	if (json_path && !(jout = cm_out_open(json_path, "comparison", "-o")))
		goto out;

	diff_build(&d, &g, &ng);

	rc = 0;
	diff_print_text(json_path && !strcmp(json_path, "-") ? stderr : stdout, &d, g, ng, true);
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
	diff_free(&d);
	return rc;
}

int cm_diff_files(char *const *before, int nb, char *const *after, int na,
		  const struct cm_diff_opts *o, FILE *out, json_object **json)
{
	char **files = xcalloc(nb + na, sizeof(char *));
	struct diff d = { .all = o && o->all };
	struct group *g = NULL;
	size_t ng = 0;
	int rc = -1;

	if (json)
		*json = NULL;
	memcpy(files, before, nb * sizeof(char *));
	memcpy(files + nb, after, na * sizeof(char *));
	if (nb < 1 || na < 1 || load_sides(&d, files, nb + na, nb))
		goto out;
	diff_build(&d, &g, &ng);
	if (out)
		diff_print_text(out, &d, g, ng, !(o && o->no_file_list));
	if (json)
		*json = build_json(&d, g, ng);
	rc = 0;
out:
	free(g);
	free(files);
	diff_free(&d);
	return rc;
}
