/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The interval stream: one JSON line per interval, lines summing to the report. */
#ifndef CM_INTERVAL_H
#define CM_INTERVAL_H

#include <json-c/json.h>

struct cm_interval;
struct cm_out;

/* Streams into out (outfile.h), which it owns from here. NULL when out of
 * memory (printed). */
struct cm_interval *cm_interval_open(struct cm_out *out);
/* Writes the interval since the previous cumulative report and keeps this
 * one. -1 once the stream failed (said once, in one line). */
int cm_interval_emit(struct cm_interval *iv, json_object *cumulative);
/* After the last line: commits the stream. 0 or -1. */
int cm_interval_finish(struct cm_interval *iv);
/* Frees iv, dropping a stream that was never finished. */
void cm_interval_close(struct cm_interval *iv);

#endif /* CM_INTERVAL_H */
