/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Stack events from BPF: unwound as they arrive, aggregated, symbolized at the end. */
#ifndef CM_STACKS_H
#define CM_STACKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>

struct cm_stacks;
struct cm_sym;

#define CM_FOLD_ONCPU 1
#define CM_FOLD_OFFCPU 2
#define CM_FOLD_PID 4		/* root each stack at comm-PID, not comm */

struct cm_python;

struct cm_stacks *cm_stacks_new(struct cm_sym *sym, int stackmap_fd);
void cm_stacks_free(struct cm_stacks *s);
/* One ring-buffer record (struct cm_stack_event, or a short CM_EV_MAPS one). */
int cm_stacks_event(struct cm_stacks *s, const void *data, size_t len);
/* One aggregated stack, symbolized: frames root first, exactly as the folded
 * file prints them between its comm and its cause frame. weight: samples
 * on-CPU, blocked ns off-CPU. cause: "syscall:futex", ... (NULL on-CPU). */
struct cm_stack_row {
	uint32_t pid, tid;
	const char *comm;	/* sanitized */
	bool oncpu;
	const char *cause;
	uint64_t weight;
	const char **frames;
	size_t nframes;
};
typedef int (*cm_stacks_fn)(const struct cm_stack_row *row, void *ctx);
/* Calls fn for every stack of the kinds in which (CM_FOLD_*), one per thread,
 * in no order; stops at fn's first non-zero return, and returns it. */
int cm_stacks_foreach(struct cm_stacks *s, int which, cm_stacks_fn fn, void *ctx);
/* Writes folded stacks ("comm;frame;...;leaf COUNT") to fp, whose owner
 * (outfile.h) commits it. 0, or -1 when out of memory (printed). */
int cm_stacks_write_folded(struct cm_stacks *s, FILE *fp, int which);
/* Per process: the heaviest stacks on-CPU and behind each off-CPU cause. */
json_object *cm_stacks_process_json(struct cm_stacks *s, uint32_t pid, int top);
/* Python frames in place of the interpreter's from now on (python.c). */
void cm_stacks_set_python(struct cm_stacks *s, struct cm_python *py);
/* Every aggregated stack of pid: its type (CM_EV_ONCPU/OFFCPU), cause name
 * ("" on-CPU), weight (samples or ns) and user frames, innermost first. */
typedef void (*cm_stacks_visit_fn)(void *arg, int type, const char *cause, uint64_t weight,
				   const uint64_t *ips, int nuser);
void cm_stacks_visit_pid(struct cm_stacks *s, uint32_t pid, cm_stacks_visit_fn fn, void *arg);
/* Run-wide figures: methods, truncation, how many reached main. */
json_object *cm_stacks_summary_json(struct cm_stacks *s);

#endif /* CM_STACKS_H */
