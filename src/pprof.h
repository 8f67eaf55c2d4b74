/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* --pprof: the folded file's stacks as a gzipped profile.proto (pprof.c). */
#ifndef CM_PPROF_H
#define CM_PPROF_H

#include <stdint.h>
#include <stdio.h>

struct cm_stacks;

struct cm_pprof_info {
	unsigned sample_hz;		/* on-CPU samples per second (0: none taken) */
	uint64_t start_ns, duration_ns;	/* the window, CLOCK_MONOTONIC */
	uint64_t min_block_ns;		/* shorter blocks have no off-CPU stack */
	int which;			/* CM_FOLD_* */
};

/* Writes the profile to fp, whose owner (outfile.h) commits it. Sample types
 * cpu/nanoseconds (samples x the nominal period) and off_cpu/nanoseconds
 * (blocked time); labels pid, tid (numbers), comm and, off-CPU, cause. 0 or
 * -1 (printed). */
int cm_pprof_write(struct cm_stacks *s, FILE *fp, const struct cm_pprof_info *info);

#endif /* CM_PPROF_H */
