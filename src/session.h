/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A tracing session: the run loop of wrap and attach mode. It starts the core
 * tracer and then each subsystem (stacks, timeline, GPU, observer cost), runs
 * until the command exits, a signal or the duration, and writes the outputs.
 * tracer.c calls none of them; they take the tracer's types.
 */
#ifndef CM_SESSION_H
#define CM_SESSION_H

#include <stdbool.h>
#include <sys/types.h>
#include <json-c/json.h>
#include "tracer.h"

struct cm_interval;

struct cm_run_opts {
	const char *json_path;
	const char *folded_path;
	int fold_which;		/* CM_FOLD_* for -f */
	bool fold_pid;		/* --fold-pid */
	double interval;	/* -i seconds */
	const char *jsonl_path;
	struct cm_interval *iv;

	double duration;
	bool threads;
	pid_t *pids;
	int npids;
	char **argv;		/* wrap mode command */
	struct cm_tracer_opts tr;

	const char *text_path;	/* --text; NULL = stderr */
	unsigned thread_rows;	/* -t N */
	/* the outputs, opened before the run (cm_run_open_outputs); each is
	 * committed by the run and set to NULL, what is left is dropped */
	struct cm_out *json_out, *folded_out, *trace_out, *jsonl_out, *text_out;
	const char *pprof_path;	/* --pprof: the stacks as a gzipped profile.proto */
	const char *serve;	/* --serve ADDR:PORT */
	struct cm_exporter *exp;	/* its server (exporter.h): traces until stopped */
	const char *cgroup_path;	/* --cgroup, resolved (cgroup.h); its id is in tr */
	struct cm_out *pprof_out;	/* --pprof, opened with the other outputs */
	int tier;		/* CM_TIER_*: --tier */
	unsigned freq;		/* -F as given (0: not given) */
	const char *tier_reason;	/* why the procfs tier runs */
};

/* Opens every output the options name, refusing two that name one file.
 * 0, or -1 with one error line. */
int cm_run_open_outputs(struct cm_run_opts *o);
/* Drops the outputs the run did not commit (nothing half-written is left). */
void cm_run_close_outputs(struct cm_run_opts *o);
/* Commits *out, or drops it if failed (its writer's result); clears it.
 * 0, or -1 if it failed or the commit did (said once). */
int cm_run_settle(struct cm_out **out, int failed);
/* The report to the interval stream's end and to -o: 0 or -1. */
int cm_run_emit_report(struct cm_run_opts *o, json_object *report);
/* The text map, to --text or stderr: 0 or -1. */
int cm_run_emit_text(struct cm_run_opts *o, json_object *report);
/* 0 if -p may attach to pid; -1, with one error line, for a kernel thread
 * or a zombie (targets.c). */
int cm_check_attach_target(pid_t pid);

enum { CM_TIER_AUTO = 0, CM_TIER_BPF, CM_TIER_PROCFS };

/* Traces argv until it exits; returns its exit status (128+signal), or
 * contactmap's own failure status. */
int cm_run_wrap(struct cm_run_opts *o);
/* Traces the running processes o->pids until Ctrl-C, -d or they all exit;
 * with --cgroup, also every process of the cgroup, until Ctrl-C or -d. */
int cm_run_attach(struct cm_run_opts *o);
/* COMMAND as execvp would find it: 0, or the exit status of a shell that
 * cannot run it (127 not found, 126 not executable), printed. */
int cm_resolve_command(const char *cmd, char *out, size_t sz);

#endif /* CM_SESSION_H */
