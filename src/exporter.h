/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * --serve ADDR:PORT: /metrics in the Prometheus text format, made from the
 * cumulative contactmap/1 report that the run loop publishes every second
 * (exporter.c). It knows the report's JSON and nothing else of contactmap.
 */
#ifndef CM_EXPORTER_H
#define CM_EXPORTER_H

#include <stdio.h>
#include <json-c/json.h>

struct cm_exporter;

/* Distinct syscalls and off-CPU causes a process gets series for; the rest
 * are summed under "other" (README: "In production"). */
#define CM_EXPORT_TOP_SYSCALLS 16
#define CM_EXPORT_TOP_CAUSES 8
#define CM_EXPORT_TOP_GPU_API 8

/* Listens on SPEC ("PORT", ":PORT", "HOST:PORT", "[V6]:PORT"; the host is
 * 127.0.0.1 unless given) and serves from a thread of its own, with the
 * signals the run loop takes blocked (503 until the first report). NULL on
 * error (one line printed). */
struct cm_exporter *cm_exporter_open(const char *spec);
/* Replaces what /metrics serves with the metrics of REPORT (not kept); the
 * first call prints the URL on stderr. */
void cm_exporter_publish(struct cm_exporter *e, json_object *report);
void cm_exporter_close(struct cm_exporter *e);

/* `contactmap metrics REPORT.json`: a saved report's metrics on stdout (for
 * node_exporter's textfile collector, or to look at them). */
int cm_metrics_main(int argc, char **argv);

#endif /* CM_EXPORTER_H */
