/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The timeline: Chrome Trace Event / Perfetto JSON, streamed as slices arrive. */
#ifndef CM_TIMELINE_H
#define CM_TIMELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>

struct cm_timeline;

/* Streams into fp (an output of outfile.h, which its owner commits after
 * cm_timeline_close); max_bytes caps the file (0 = no cap). NULL when out
 * of memory (printed). base_ns: see cm_timeline_set_base. */
struct cm_timeline *cm_timeline_open(FILE *fp, uint64_t base_ns, uint64_t max_bytes);
/* Times are written relative to base_ns: the report's window.start_ns, set
 * when the window opens (no event is older: only traced threads have any). */
void cm_timeline_set_base(struct cm_timeline *tl, uint64_t base_ns);
/* One ring-buffer record (struct cm_slice_event). */
int cm_timeline_event(struct cm_timeline *tl, const void *data, size_t len);
/* Writes track names from the report and the drop figures, adds the
 * timeline's own losses to report.lost, and frees tl (not the stream). */
int cm_timeline_close(struct cm_timeline *tl, json_object *report, uint64_t kernel_dropped);

/* A marked request [start, end] of thread tid, on its own track. */
void cm_timeline_request(struct cm_timeline *tl, uint32_t pid, uint32_t tid, uint64_t id,
			 uint64_t start, uint64_t end);
/* A thread's final sequence number: events dropped after its last one
 * that arrived are marked as a gap at ts. */
void cm_timeline_final_seq(struct cm_timeline *tl, uint32_t pid, uint32_t tid, uint32_t seq,
			   uint64_t ts, const char *comm);
/* Frees an unfinished timeline (a run that failed); NULL is fine. */
void cm_timeline_abort(struct cm_timeline *tl);

#endif /* CM_TIMELINE_H */
