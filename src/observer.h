/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* contactmap's own cost: the kernel's BPF run-time statistics (observer.c). */
#ifndef CM_OBSERVER_H
#define CM_OBSERVER_H

#include "tracer.h"

/* BPF run-time statistics (observer.c). start: the last subsystem the run loop starts
 * (full mode turns them on there, sampled mode starts its thread); window: the
 * window opened at start_ns; stop: off for good, on-time counted up to end_ns;
 * read: the programs' counters and the on-time, as of end_ns. */
const char *cm_observer_mode_name(enum cm_observer_mode m);
int cm_observer_start(struct cm_tracer *tr, enum cm_observer_mode mode);
void cm_observer_window(struct cm_tracer *tr);
void cm_observer_stop(struct cm_tracer *tr);
void cm_observer_read(const struct cm_tracer *tr, struct cm_snapshot *s);
void cm_observer_free(struct cm_tracer *tr);
/* contactmap's own CPU time and peak memory so far (getrusage). */
json_object *cm_observer_self_json(void);

#endif /* CM_OBSERVER_H */
