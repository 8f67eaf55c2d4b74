// SPDX-License-Identifier: GPL-2.0
/*
 * User page faults. The exact minor/major counts come from the task's own
 * counters (read at exit, or from /proc at the end); this tracepoint marks
 * the running segment (the interval since the thread's last boundary, named
 * by its start time) in which a fault happened, so that a block ending that
 * segment is charged to the fault, and counts faults taken from user mode.
 * No clock read: a fault costs a bitmap test, a lookup and two stores.
 */
#include "common.bpf.h"

static __always_inline int on_fault(void)
{
	struct cm_thread *t = thread_of((__u32)bpf_get_current_pid_tgid());

	if (t) {
		t->fault_seg = t->state_ts;
		t->user_faults++;
	}
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user_btf) { return on_fault(); }
SEC("raw_tp/page_fault_user")
int BPF_PROG(page_fault_user_raw) { return on_fault(); }

char LICENSE[] SEC("license") = "GPL";
