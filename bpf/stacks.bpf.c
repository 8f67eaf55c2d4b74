// SPDX-License-Identifier: GPL-2.0
/*
 * On-CPU stacks: a cpu-clock perf event on every CPU (software, so it works in
 * VMs) samples traced threads: kernel stack when the sample hit the kernel,
 * frame-pointer user stack, and the user registers plus a snapshot of the user
 * stack for DWARF unwinding in user space (what perf --call-graph dwarf does).
 */
#include "common.bpf.h"

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cm_stack_event *e;
	struct cm_thread *t;

	if (!tid)
		return 0;
	t = thread_of(tid);
	if (!t || (t->flags & CM_TF_HELD))
		return 0;	/* held: contactmap's own child before the command's exec */
	__sync_fetch_and_add(&counters.samples, 1);
	e = bpf_ringbuf_reserve(&stack_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&counters.ringbuf_full, 1);
		return 0;
	}
	e->type = CM_EV_ONCPU;
	e->pid = t->pid;
	e->tid = tid;
	e->cause = 0;
	e->sc_nr = 0;
	e->weight = 1;
	e->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* the kernel part only when the sample interrupted the kernel; cs is
	 * word 17 of pt_regs, and the context allows only whole-word loads */
	if ((((unsigned long *)&ctx->regs)[17] & 3) == 0) {
		e->kstack_id = bpf_get_stackid(ctx, &stacks, 0);
		if (e->kstack_id < 0)
			__sync_fetch_and_add(&counters.kstack_missing, 1);
	} else {
		e->kstack_id = -2;	/* -ENOENT: no kernel part */
	}
	e->ustack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (e->ustack_id < 0)
		__sync_fetch_and_add(&counters.ustack_missing, 1);
	/* kernel threads have no user part */
	if (bpf_get_current_task_btf()->mm)
		snap_user(e, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
	else
		e->snap_len = 0;
	bpf_ringbuf_submit(e, lazy_wakeup(&stack_events));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
