/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Internals of contactmap experiment: the command line and the order of the
 * runs (experiment.c), one run (experiment_run.c) and what is made of them
 * (experiment_out.c). */
#ifndef CM_EXPERIMENT_H
#define CM_EXPERIMENT_H

#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include "cm.h"
#include "knobs.h"

#define EXP_SCHEMA "contactmap-experiment/1"

struct exp_side {
	char name[2];		/* "A" is the baseline, "B", "C" ... the variants */
	struct cm_knob *knobs;
	int nknobs;
	bool system;		/* has system-wide knobs: applied before, restored after each run */
	bool named_sched;	/* has sched=...@COMM: threads set from outside as they appear */
};

struct exp_run {
	int round, side;	/* round 0 .. runs-1; warm-up runs have round -1 */
	char *report, *out, *err, *log;
	bool done;
	int status;		/* the command's exit status (128+N when killed by signal N) */
	uint64_t window_ns;
	double metric;		/* mean of the matches; NAN when none */
	int nmetric;
	json_object *contact_map;	/* the report's rows, for the JSON and the plot */
};

struct exp {
	char **cmd;
	struct exp_side *sides;
	int nsides;
	struct exp_run *runs;
	int nruns;
	int runs_per_side, warmup;
	const char *metric_src;
	regex_t metric_re;
	const char *json_path;
	char *dir;
	bool dir_made;		/* by mkdtemp: removed again if nothing ran */
	bool all;
	double timeout;
	int stop_sig;		/* the signal that stopped the experiment, 0 if none */
	struct cm_knob_state *state;	/* the originals of the system knobs, NULL if none */
	uint64_t start_ns, end_ns;
};

/* experiment_run.c */
uint64_t exp_now_ns(void);
/* Writes the values of a side's system knobs. 0, or -1 (printed). */
int exp_apply_side(const struct exp_side *s);
/* Runs r: 0 done, -1 failed (printed), 1 stopped by a signal (e->stop_sig). */
int exp_run_one(struct exp *e, struct exp_run *r, const char *helper, int sfd, const sigset_t *oldmask);

/* experiment_out.c: prints the runs, the metric and one diff per variant
 * (text), and writes the JSON when asked. 0 or -1 (message printed). */
int exp_output(struct exp *e);

#endif /* CM_EXPERIMENT_H */
