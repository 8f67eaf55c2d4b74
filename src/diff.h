/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * contactmap diff: the model (diff.c: reports into rows, statistics, the
 * environment, JSON) and its text (diff_text.c) share these types.
 */
#ifndef CM_DIFF_H
#define CM_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <json-c/json.h>

#define DIFF_SCHEMA "contactmap-diff/1"
#define WIDTH 80
#define TOP_GROUPS 10		/* changed groups shown per section in text */
#define WINDOW_NOTE_FRAC 0.10	/* windows this much apart: absolute ns mislead */

enum section { SEC_CONTACT, SEC_TOTALS, SEC_LEDGER, SEC_SYSCALLS, SEC_SCHED, SEC_FAULTS,
	       SEC_BLOCK, SEC_WINDOW, SEC_N };
extern const char *const diff_sec_key[SEC_N];
extern const char *const diff_sec_title[SEC_N];

enum unit { U_NS, U_BYTES, U_COUNT };	/* also the sort class: time first */
extern const char *const diff_unit_key[];

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

/* Allocation that cannot fail quietly: out of memory is one error line and exit 1. */
void *diff_xrealloc(void *p, size_t n);
void *diff_xcalloc(size_t n, size_t sz);
char *diff_xstrdup(const char *s);
char *diff_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define obj(o, k) cm_json_get_type((o), (k), json_type_object)
#define arr(o, k) cm_json_get_type((o), (k), json_type_array)

/* A report number; anything but a finite number reads as 0. */
double diff_num(json_object *o, const char *key);
/* The traced command of a report, joined by spaces (malloc). */
char *diff_command_of(json_object *r);
/* Whether an environment fact differs between the sides. */
bool diff_env_changed(const struct env_fact *f);

static inline const char *side_name(int s)
{
	return s ? "after" : "before";
}

/* The text comparison, on stdout or where -o - leaves it. */
void diff_print_text(FILE *out, struct diff *d, struct group *g, size_t ng);

#endif /* CM_DIFF_H */
