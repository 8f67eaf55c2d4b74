/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Internals of contactmap diff, shared by its three parts:
 *   diff_rows.c  reading reports and aligning them into rows, statistics,
 *                the environment facts, ordering into groups;
 *   diff_text.c  the text tables;
 *   diff.c       the command line, the JSON output and cm_diff_files().
 */
#ifndef CM_DIFF_H
#define CM_DIFF_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "xalloc.h"

#define DIFF_SCHEMA "contactmap-diff/1"
#define WIDTH 80
#define TOP_GROUPS 10		/* changed groups shown per section in text */
#define WINDOW_NOTE_FRAC 0.10	/* windows this much apart: absolute ns mislead */

enum section { SEC_CONTACT, SEC_TOTALS, SEC_LEDGER, SEC_SYSCALLS, SEC_SCHED, SEC_FAULTS,
	       SEC_BLOCK, SEC_WINDOW, SEC_N };
extern const char *const diff_sec_key[SEC_N];	/* JSON section names */
extern const char *const diff_sec_title[SEC_N];	/* text headings */

enum unit { U_NS, U_BYTES, U_COUNT };	/* also the sort class: time first */
extern const char *const diff_unit_key[];	/* "ns", "bytes", "count" */

struct row {
	enum section sec;
	enum unit unit;
	bool take_max;		/* quantiles of duplicate rows: the max, not the sum */
	char *proc;		/* process label; NULL for report-wide rows */
	char *item;		/* subsystem, ledger field, syscall, device op ... */
	char *metric;		/* NULL, or "count", "total_ns" ... within the item */
	char *label;		/* display name of item, when it differs */
	char *key;		/* [proc/]item[.metric] */
	size_t order;
	double *v[2];		/* per run */
	double *share[2];	/* contact map rows: share per run */
	double mean[2], min[2], max[2], sd[2], share_mean[2];
	double delta, rel;
	bool has_rel, noise;
	size_t group;
};

struct env_fact {
	char *key;
	char *val[2];		/* distinct values on a side, " | "-joined */
	int present[2];		/* runs of the side that have the key */
};

struct side {
	int n;
	char **paths;
	json_object **r;
};

struct diff {
	struct side s[2];
	struct row *rows;
	size_t nrows, cap;
	size_t *hash;		/* open addressing: row index + 1, 0 = free */
	size_t hcap;
	struct env_fact *env;
	size_t nenv, envcap;
	char **warnings, **notes;
	int nwarn, nnotes;
	bool all;
};

struct group {
	size_t first, n;	/* rows[first .. first+n) */
	enum section sec;
	int cls;		/* unit class of the weight: time, bytes, counts */
	double weight;		/* largest |delta| of that class */
	bool changed;
};

/* ---- small helpers ---------------------------------------------------------- */

#define obj(o, k) cm_json_get_type((o), (k), json_type_object)
#define arr(o, k) cm_json_get_type((o), (k), json_type_array)

/* ---- diff_rows.c ---------------------------------------------------------- */
/* A number member of a report object; absent or not a number reads as 0. */
double diff_num(json_object *o, const char *key);
/* Loads every report of both sides into rows and environment facts, computes
 * the statistics, notes and warnings, and orders the rows into groups
 * (*g, *ng; free *g). The sides' reports must be set already. */
void diff_build(struct diff *d, struct group **g, size_t *ng);
void diff_free(struct diff *d);
bool diff_env_changed(const struct env_fact *f);
/* The report's command line (or "pid 1,2"), allocated. */
char *diff_command_of(json_object *r);
const char *diff_side_name(int s);

/* ---- diff_text.c ---------------------------------------------------------- */
/* list_files: one line per report under the heading (the experiment lists
 * its runs itself and passes false). */
void diff_print_text(FILE *out, struct diff *d, struct group *g, size_t ng, bool list_files);

#endif /* CM_DIFF_H */
