/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Thread life: exit records and drained rows into the books (life.c). */
#ifndef CM_LIFE_H
#define CM_LIFE_H

#include <stdint.h>
#include "tracer.h"

struct cm_books;

/* Reads exit records from the tracer's ring into books (run loop). */
int cm_life_start(struct cm_tracer *tr, struct cm_books *books);
/* fn(ctx, t) for every traced thread that ends, as its record arrives. */
typedef void (*cm_life_exit_fn)(void *ctx, const struct cm_thread *t);
int cm_life_on_exit(struct cm_tracer *tr, cm_life_exit_fn fn, void *ctx);
/* Collects what the ring missed, drains ended processes' block rows and
 * trims the books; at most once a second, so call it every loop turn. */
void cm_life_sweep(struct cm_tracer *tr);
/* The same at the end, after the programs are detached, with no grace. */
void cm_life_final(struct cm_tracer *tr);
/* How often the loop must call cm_life_sweep, in ms (-1: never). */
int cm_life_poll_ms(const struct cm_tracer *tr);

struct cm_life_counts {
	uint64_t swept;			/* exit records collected from the map */
	uint64_t no_final_switch;	/* of them: threads with no final switch-out */
	uint64_t drain_errors;		/* rows that could not be read (out of memory) */
};
void cm_life_counts(const struct cm_tracer *tr, struct cm_life_counts *c);
void cm_life_free(struct cm_tracer *tr);

#endif /* CM_LIFE_H */
