// SPDX-License-Identifier: GPL-2.0
/*
 * The critical path: who wakes whom (sched.bpf.c, sched_waking) needs to know
 * when a CPU is serving an interrupt, whose wake-ups are no thread's; and
 * the request markers of libcontactmap-mark.so (uprobes on its two functions)
 * come through the switch-in ring, in order with the thread's switches.
 */
#include "common.bpf.h"

static __always_inline int irq_enter(void)
{
	__u32 k = 0;
	__u64 *d = bpf_map_lookup_elem(&irq_depth, &k);

	if (d)
		(*d)++;
	return 0;
}

static __always_inline int irq_leave(void)
{
	__u32 k = 0;
	__u64 *d = bpf_map_lookup_elem(&irq_depth, &k);

	if (d && *d)
		(*d)--;
	return 0;
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(irq_handler_entry_btf) { return irq_enter(); }
SEC("raw_tp/irq_handler_entry")
int BPF_PROG(irq_handler_entry_raw) { return irq_enter(); }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(irq_handler_exit_btf) { return irq_leave(); }
SEC("raw_tp/irq_handler_exit")
int BPF_PROG(irq_handler_exit_raw) { return irq_leave(); }
SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry_btf) { return irq_enter(); }
SEC("raw_tp/softirq_entry")
int BPF_PROG(softirq_entry_raw) { return irq_enter(); }
SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit_btf) { return irq_leave(); }
SEC("raw_tp/softirq_exit")
int BPF_PROG(softirq_exit_raw) { return irq_leave(); }
SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(hrtimer_expire_entry_btf) { return irq_enter(); }
SEC("raw_tp/hrtimer_expire_entry")
int BPF_PROG(hrtimer_expire_entry_raw) { return irq_enter(); }
SEC("tp_btf/hrtimer_expire_exit")
int BPF_PROG(hrtimer_expire_exit_btf) { return irq_leave(); }
SEC("raw_tp/hrtimer_expire_exit")
int BPF_PROG(hrtimer_expire_exit_raw) { return irq_leave(); }

/* A marker call: the time so far is charged (a boundary, as a syscall is),
 * so the record's vector is the thread's on-CPU split at the call. */
static __always_inline int marker(struct pt_regs *ctx, __u32 type)
{
	struct cm_thread *t = thread_of((__u32)bpf_get_current_pid_tgid());
	struct cm_cp_event *e;
	__u64 now;

	if (!t || (t->flags & CM_TF_HELD))
		return 0;
	now = bpf_ktime_get_ns();
	account_oncpu(t, now, cur_stime());
	e = bpf_ringbuf_reserve(&cp_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&counters.cp_ringbuf_full, 1);
		return 0;
	}
	__builtin_memset(e, 0, offsetof(struct cm_cp_event, vec));
	e->type = type;
	e->tid = t->tid;
	e->pid = t->pid;
	e->gen = t->gen;
	e->ts = now;
	e->id = PT_REGS_PARM1(ctx);
	__builtin_memcpy(e->vec, t->oncpu_ss, sizeof(e->vec));
	bpf_ringbuf_submit(e, lazy_wakeup(&cp_events));
	return 0;
}

SEC("uprobe")
int req_begin(struct pt_regs *ctx) { return marker(ctx, CM_EV_REQ_BEGIN); }
SEC("uprobe")
int req_end(struct pt_regs *ctx) { return marker(ctx, CM_EV_REQ_END); }

char LICENSE[] SEC("license") = "GPL";
