// SPDX-License-Identifier: GPL-2.0
/*
 * --cgroup: processes that join the traced cgroup subtree while we run. A
 * task moved in (a write to cgroup.procs: a systemd service starting, a
 * container runtime placing its init) is traced from the move on, here, and
 * reported to user space, which seeds the rest of its threads from /proc as
 * attach mode does (a whole process moves with only its leader reported).
 * Children started inside by an untraced parent are taken at fork
 * (cgroup.bpf.h, sched.bpf.c), and children of traced threads are followed
 * anyway.
 */
#include "cgroup.bpf.h"

const volatile __u64 cfg_cgroup_id = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} cgroup_events SEC(".maps");

/*
 * The moved task joins the traced set now. A task that moved itself (the
 * usual way: a new child writes its pid to cgroup.procs, then execs) is
 * running, in that write, whose remaining microseconds count as user time; one
 * moved by another task is in a state unknown here, which its next switch or
 * wake-up settles, as for a thread seeded at attach.
 */
static __always_inline void adopt(struct task_struct *task, __u32 tid)
{
	struct cm_thread *t;

	/* taken (a full map, or an ended thread's entry under a reused id): the
	 * user-space seeding that the event asks for settles it and counts it */
	if (bpf_map_update_elem(&threads, &tid, (void *)&zero_thread, BPF_NOEXIST))
		return;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t)
		return;
	t->tid = tid;
	t->pid = BPF_CORE_READ(task, tgid);
	t->gen = __sync_fetch_and_add(&next_gen, 1) + 1;
	t->pgen = t->gen;	/* its process is new to us: numbered by this thread */
	t->ppid = BPF_CORE_READ(task, real_parent, tgid);
	t->flags = CM_TF_SEEDED;
	BPF_CORE_READ_STR_INTO(&t->comm, task, comm);
	t->start_ns = bpf_ktime_get_ns();
	t->state_ts = t->start_ns;
	t->state = task == (struct task_struct *)bpf_get_current_task() ? CM_RUNNING : CM_UNKNOWN;
	t->last_cpu = (__u32)-1;
	t->out_kstack = t->out_ustack = -1;
	/* faults from here on: the task's own counters are the base */
	t->min_flt_base = BPF_CORE_READ(task, min_flt);
	t->maj_flt_base = BPF_CORE_READ(task, maj_flt);
	tid_mark(tid, true);
	emit_maps(t);
	__sync_fetch_and_add(&live_threads, 1);
}

static __always_inline int on_attach(struct task_struct *task)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	struct cm_cgroup_event *e;

	/* the migration is done when the tracepoint fires: task->cgroups is new */
	if (!cfg_cgroup_id || tid_traced(tid) || !cm_in_cgroup(task))
		return 0;
	adopt(task, tid);
	e = bpf_ringbuf_reserve(&cgroup_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&counters.cgroup_events_full, 1);
		return 0;
	}
	e->type = CM_EV_CGROUP_JOIN;
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = tid;
	e->pad = 0;
	/* rare, and every millisecond before the seeding is untraced */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(cgroup_attach_task_btf, struct cgroup *dst, const char *path,
	     struct task_struct *task, bool threadgroup)
{
	return on_attach(task);
}

SEC("raw_tp/cgroup_attach_task")
int BPF_PROG(cgroup_attach_task_raw, struct cgroup *dst, const char *path,
	     struct task_struct *task, bool threadgroup)
{
	return on_attach(task);
}

char LICENSE[] SEC("license") = "GPL";
