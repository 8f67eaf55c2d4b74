/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* --cgroup PATH: every process of a cgroup v2 subtree, those that join later too (cgroup.c). */
#ifndef CM_CGROUP_H
#define CM_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cm_tracer;

/* Checks PATH (absolute, or relative to the cgroup2 mount) is a directory of
 * a cgroup v2 hierarchy; its full path into out and its kernfs id into *id.
 * 0, or -1 with one line printed. */
int cm_cgroup_resolve(const char *path, char *out, size_t outsz, uint64_t *id);
/* After the programs are attached: takes the ring buffer of tasks that join,
 * then seeds every process in the subtree's cgroup.procs. The pids seeded go
 * into *pids (malloc'ed, *npids of them). 0 or -1 (printed). */
int cm_cgroup_start(struct cm_tracer *tr, const char *path, pid_t **pids, int *npids);

#endif /* CM_CGROUP_H */
