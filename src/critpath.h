/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Wake-ups and the critical path (critpath.c). Every traced thread's history
 * of on-CPU stretches (split by subsystem) and off-CPU stretches (blocked by
 * a cause, then runnable; who woke it) comes from the switch-in records of
 * bpf/common.bpf.h. The critical path of a thread over an interval is its own
 * time, where each blocked stretch that another traced thread ended (by
 * waking it) is replaced by what the waker did over it, recursively: the OS
 * work that determined the interval's length.
 */
#ifndef CM_CRITPATH_H
#define CM_CRITPATH_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include "contactmap.h"

struct cm_critpath;

/* Where an interval's time went: by subsystem, and (when rows is set) by
 * thread and subsystem, for the slowest requests. */
struct cm_cp_row {
	uint32_t tid;
	uint32_t ss;
	uint64_t ns;
};

struct cm_cp_acc {
	uint64_t ss[CM_SS_SLOTS];
	bool detail;			/* also by thread (rows) */
	struct cm_cp_row *rows;
	size_t nrows, caprows;
	uint64_t truncated_ns;		/* history no longer (or not yet) there: booked as the leaf */
};

struct cm_critpath *cm_critpath_new(void);
void cm_critpath_free(struct cm_critpath *cp);
/* A CM_EV_SWITCH_IN record. */
void cm_critpath_switch_in(struct cm_critpath *cp, const struct cm_cp_event *e);
/* A traced thread ended (its exit record): its history is complete. */
void cm_critpath_thread_end(struct cm_critpath *cp, const struct cm_thread *t);
/* Wrap mode: the wrapped command's first thread, whose whole life's critical
 * path the report prints. */
void cm_critpath_set_main(struct cm_critpath *cp, uint32_t tid);

/*
 * The critical path of thread gen over [b, e], added to acc. vb and ve are
 * its cumulative on-CPU vectors at b and e (from marker records: exact), or
 * NULL (interpolated within its on-CPU stretches). Returns 0 when done, 1 when
 * some thread's history does not reach far enough yet (nothing added; call
 * again later), unless force (the missing part is booked as the leaf and
 * counted in truncated_ns).
 */
int cm_critpath_walk(struct cm_critpath *cp, uint32_t gen, uint64_t b, uint64_t e,
		     const uint64_t *vb, const uint64_t *ve, bool force, struct cm_cp_acc *acc);
/* The thread's own time over [b, e] (no waker replaced), into acc. */
int cm_critpath_own(struct cm_critpath *cp, uint32_t gen, uint64_t b, uint64_t e,
		    const uint64_t *vb, const uint64_t *ve, bool force, struct cm_cp_acc *acc);

/* Advances the main thread's critical path and trims histories no one can
 * need any more; keep_from: the oldest time someone (an open request) may
 * still ask about. Call every loop turn. */
void cm_critpath_poll(struct cm_critpath *cp, uint64_t now, uint64_t keep_from);
/* At the end: the threads still in the maps (closed at end_ns) give each
 * history its last stretch. */
void cm_critpath_finish(struct cm_critpath *cp, const struct cm_thread *live, size_t nlive,
			uint64_t end_ns);
/* The main thread's critical path (after cm_critpath_finish: to its end), or
 * NULL when there is none. */
json_object *cm_critpath_json(struct cm_critpath *cp);

/* Contact-map rows of acc (the top-level row keys), largest first. */
json_object *cm_cp_rows_json(const struct cm_cp_acc *acc);
void cm_cp_acc_free(struct cm_cp_acc *acc);
void cm_cp_acc_add(struct cm_cp_acc *a, const struct cm_cp_acc *b);

#endif /* CM_CRITPATH_H */
