/* SPDX-License-Identifier: GPL-2.0 */
/*
 * --cgroup: is a task inside the traced cgroup v2 subtree? Used by the fork
 * hook (sched.bpf.c), for children an untraced parent starts there (clone3
 * with CLONE_INTO_CGROUP, or any fork inside it), and by cgroup.bpf.c for
 * tasks moved in. Inline: a global function cannot take a task pointer.
 */
#ifndef CM_CGROUP_BPF_H
#define CM_CGROUP_BPF_H

#include "common.bpf.h"

/* kernfs id of the target cgroup (name_to_handle_at in user space); 0: off */
extern const volatile __u64 cfg_cgroup_id;

/* cgroup v2 nesting is deep in containers (pod/slice/scope...), never this deep */
#define CM_CGROUP_MAX_DEPTH 32

static __always_inline bool cm_in_cgroup(struct task_struct *task)
{
	/* the default (v2) hierarchy: its ids never collide with v1 ones there */
	struct cgroup *cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);

	for (int i = 0; i < CM_CGROUP_MAX_DEPTH && cg; i++) {
		if (BPF_CORE_READ(cg, kn, id) == cfg_cgroup_id)
			return true;
		cg = BPF_CORE_READ(cg, self.parent, cgroup);
	}
	return false;
}

#endif /* CM_CGROUP_BPF_H */
