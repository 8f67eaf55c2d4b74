// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A run's outputs (session.h): every file the options name is opened before
 * anything runs, through outfile.c, and two that are one file are refused;
 * the run commits each one, and what it did not is dropped at the end.
 */
#include "cm.h"
#include "session.h"
#include "interval.h"
#include "outfile.h"

int cm_run_open_outputs(struct cm_run_opts *o)
{
	struct { const char *path, *what, *option; struct cm_out **out; } outs[] = {
		{ o->json_path, "report", "-o", &o->json_out },
		{ o->folded_path, "folded stacks", "-f", &o->folded_out },
		{ o->tr.trace_path, "timeline", "--trace", &o->trace_out },
		{ o->jsonl_path, "interval stream", "--jsonl", &o->jsonl_out },
		{ o->text_path, "text map", "--text", &o->text_out },
		{ o->pprof_path, "pprof profile", "--pprof", &o->pprof_out },
	};
	size_t n = sizeof(outs) / sizeof(outs[0]);

	for (size_t i = 0; i < n; i++) {
		if (!outs[i].path)
			continue;
		*outs[i].out = cm_out_open(outs[i].path, outs[i].what, outs[i].option);
		if (!*outs[i].out)
			return -1;
		/* ./X and X, a link and its target, two hard links: one file */
		for (size_t j = 0; j < i; j++) {
			if (*outs[j].out && cm_out_same(*outs[i].out, *outs[j].out)) {
				if (cm_out_is_stdout(*outs[i].out) && cm_out_is_stdout(*outs[j].out))
					cm_err("%s - and %s - both write to stdout: send one of them to a file",
					       outs[j].option, outs[i].option);
				else
					cm_err("%s %s and %s %s are the same file: give each output its own",
					       outs[j].option, outs[j].path, outs[i].option, outs[i].path);
				return -1;
			}
		}
	}
	if (o->jsonl_out) {
		o->iv = cm_interval_open(o->jsonl_out);
		o->jsonl_out = NULL;	/* the stream owns it */
		if (!o->iv)
			return -1;
	}
	return 0;
}

void cm_run_close_outputs(struct cm_run_opts *o)
{
	cm_interval_close(o->iv);
	o->iv = NULL;
	cm_out_abort(o->json_out);
	cm_out_abort(o->folded_out);
	cm_out_abort(o->trace_out);
	cm_out_abort(o->jsonl_out);
	cm_out_abort(o->text_out);
	cm_out_abort(o->pprof_out);
	o->json_out = o->folded_out = o->trace_out = o->jsonl_out = o->text_out = NULL;
	o->pprof_out = NULL;
}

int cm_run_settle(struct cm_out **out, int failed)
{
	int rc = 0;

	if (!*out)
		return 0;
	if (failed) {
		cm_out_abort(*out);
		rc = -1;
	} else if (cm_out_commit(*out)) {
		rc = -1;
	}
	*out = NULL;
	return rc;
}

int cm_run_emit_report(struct cm_run_opts *o, json_object *report)
{
	int rc = 0;

	if (o->iv && (cm_interval_emit(o->iv, report) | cm_interval_finish(o->iv)))
		rc = -1;
	if (o->json_out && cm_write_json_out(report, o->json_out))
		rc = -1;
	o->json_out = NULL;
	return rc;
}

int cm_run_emit_text(struct cm_run_opts *o, json_object *report)
{
	struct cm_render_opts ro = { .threads = o->threads, .width = 80,
				     .thread_rows = (int)o->thread_rows };

	/* the text map goes to stderr, as perf and strace print theirs, unless
	 * --text sends it elsewhere: stdout is the command's, or the JSON's */
	if (o->text_out)
		return cm_run_settle(&o->text_out,
				     cm_render_text(report, &ro, cm_out_fp(o->text_out)));
	if (cm_render_text(report, &ro, stderr) ||
	    cm_out_check_stream(stderr, "text map", "stderr"))
		return -1;
	return 0;
}
