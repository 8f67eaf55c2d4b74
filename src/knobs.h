/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Knobs of `contactmap experiment` (knobs.c) and the record that puts the
 * system-wide ones back (knobstate.c).
 *
 * A system-wide knob (sysctl, THP, I/O scheduler, governor) is a list of
 * files with the value to write and the value read before anything changed.
 * A per-process knob (CPU affinity, scheduling policy, environment, malloc
 * tunables, prefault) changes only the workload: `contactmap experiment
 * --apply` sets it in the traced process itself, just before exec.
 */
#ifndef CM_KNOBS_H
#define CM_KNOBS_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct cm_knob_file {
	char *path;		/* /proc/sys/..., /sys/... */
	char *value;		/* what the knob writes */
	char *original;		/* what was there before the experiment */
};

struct cm_knob {
	char *spec;		/* as given: "sysctl:vm.swappiness=10" */
	const char *kind;	/* "sysctl", "thp", "cpus", ... */
	bool system;		/* changes the machine: recorded, restored after each run */
	struct cm_knob_file *files;
	int nfiles;
	/* sched=POLICY[:PRIO]@COMM: threads named COMM, set from outside while
	 * the run goes (the others are set in the workload before exec) */
	int policy, prio;
	char comm[16];
};

/* Parses and checks one knob: syntax, that the machine has it, that the value
 * is one it takes, that this process may change it; system knobs read their
 * original values. 0, or -1 after one "contactmap: error:" line. */
int cm_knob_parse(const char *spec, struct cm_knob *k);
void cm_knob_free(struct cm_knob *k);
/* The table of knobs, for --list-knobs. */
void cm_knobs_list(FILE *out);

/* Applies a per-process knob to the calling process (before exec). 0 or -1
 * (message printed). */
int cm_knob_apply_here(const struct cm_knob *k);
/* Sets the policy of knob k (sched=...@COMM) on thread tid. */
int cm_knob_sched_thread(const struct cm_knob *k, pid_t tid);

/* Writes value into a knob file (one write, as sysfs wants). 0, or -1 with
 * errno set. Refuses paths no knob writes. */
int cm_knob_write(const char *path, const char *value);
/* True for the files knobs write: /proc/sys/..., THP, I/O schedulers, governors. */
bool cm_knob_path_allowed(const char *path);
/* The value a knob file holds now, as a knob would write it back ("[madvise]"
 * lists give the word in brackets). Allocated; NULL when unreadable. */
char *cm_knob_read(const char *path);

/* ---- knobstate.c: the record of original values ------------------------------ */
struct cm_knob_state;

/* Records every file of the system knobs with its original value in a new
 * state file under a root-owned directory, written and synced before
 * anything changes; fails (one line) when another live experiment changes
 * the same files or a killed one left them changed. *out is NULL when there
 * are no system knobs. */
int cm_state_create(struct cm_knob **knobs, int n, const char *command, struct cm_knob_state **out);
/* Writes every original value back. 0, or -1 when one could not be (each
 * failure printed). */
int cm_state_restore(struct cm_knob_state *st);
/* Restores, then removes the state file. */
int cm_state_finish(struct cm_knob_state *st);
const char *cm_state_path(const struct cm_knob_state *st);
/* contactmap experiment --restore: restores what killed experiments left. */
int cm_state_restore_main(void);

#endif /* CM_KNOBS_H */
