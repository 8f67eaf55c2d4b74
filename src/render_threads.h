/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The per-thread rows of the text map (-t): sorted, grouped by name, capped. */
#ifndef CM_RENDER_THREADS_H
#define CM_RENDER_THREADS_H

#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>

/* A process's threads: its threads[] rows and the counts of its
 * threads_folded[] rows (exited threads the collector folded by name). */
uint64_t cm_thread_count(json_object *process);
/* The thread table of one process, at most max_rows rows (0: CM_THREAD_ROWS). */
void cm_render_threads(json_object *process, int width, int max_rows, FILE *out);

#endif /* CM_RENDER_THREADS_H */
