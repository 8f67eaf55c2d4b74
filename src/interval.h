/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The interval stream: one JSON line per interval, lines summing to the report. */
#ifndef CM_INTERVAL_H
#define CM_INTERVAL_H

#include <json-c/json.h>

struct cm_interval;

/* "-" is stdout. NULL on error (printed). */
struct cm_interval *cm_interval_open(const char *path);
/* Writes the interval since the previous cumulative report and keeps this one. */
int cm_interval_emit(struct cm_interval *iv, json_object *cumulative);
void cm_interval_close(struct cm_interval *iv);

#endif /* CM_INTERVAL_H */
