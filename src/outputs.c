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
