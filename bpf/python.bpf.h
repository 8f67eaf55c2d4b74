/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CPython in the stacks and the ledger (bpf/python.bpf.c, src/python.c):
 * the py_procs map user space fills per Python process, and the hooks the scheduler and syscall programs call to
 * tell a wait for the GIL from other futex waits. Included by common.bpf.h.
 *
 * A process that is not Python costs one py_procs lookup that misses, at a
 * stack or at a futex block; nothing at all when cfg_python is off.
 */
#ifndef CM_PYTHON_BPF_H
#define CM_PYTHON_BPF_H

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CM_PY_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cm_py_proc);
} py_procs SEC(".maps");

CM_EXTERN const volatile __u32 cfg_futex_nr;	/* x86_64; set from the syscall table */
CM_EXTERN __u64 py_procs_full;		/* a forked Python process got no entry */

/* The Python frame walker (python.bpf.c); slot: its scratch buffer, 1 for
 * cpu-clock samples, 0 elsewhere (a sample may interrupt a walk). 1 when
 * user space should see the event at once (the process's first stacks). */
int cm_py_walk(struct cm_py_stack *out, struct cm_thread *t, __u32 slot);

/* Defined in common.bpf.h, after this file. */
static __always_inline void emit_offcpu(struct cm_thread *t, __u32 cause, __u32 nr, __u64 d,
				       bool dwarf);

/*
 * A stack event's record: the whole cm_stack_event for a thread of a Python
 * process in its own context (own), else one that ends before its Python
 * frames: other processes pay one py_procs lookup that misses, and not a
 * write to the record's last page. User space tells them by their length.
 */
static __always_inline struct cm_stack_event *py_reserve(struct cm_thread *t, bool own, bool *py)
{
	*py = cfg_python && own && bpf_map_lookup_elem(&py_procs, &t->pid);
	if (*py)
		return bpf_ringbuf_reserve(&stack_events, sizeof(struct cm_stack_event), 0);
	return bpf_ringbuf_reserve(&stack_events, offsetof(struct cm_stack_event, py), 0);
}

/* Submits a stack event from py_reserve, its Python frames walked first; user
 * space reads their code objects as it arrives, so one that may be the
 * process's last (a long block, d ns) wakes it at once. */
static __always_inline void py_submit(struct cm_stack_event *e, bool py, struct cm_thread *t,
				      __u32 slot, __u64 d)
{
	if (py && (cm_py_walk(&e->py, t, slot) || (e->py.nframes && d >= CM_PY_WAKE_BLOCK_NS)))
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(e, lazy_wakeup(&stack_events));
}

/* sys_enter: the futex word of a futex call, to be looked at if it blocks. */
static __always_inline void py_sys_enter(struct cm_thread *t, struct pt_regs *regs, long id)
{
	if (!cfg_python)
		return;
	t->sc_gil_ns = 0;
	t->sc_futex = id == cfg_futex_nr ? PT_REGS_PARM1_CORE_SYSCALL(regs) : 0;
}

/*
 * Switch-out of a thread blocking inside a futex call (current is still the
 * thread): if the word is in its interpreter's GIL state, the block's cause
 * is the GIL, and the thread holding it is named from gil->last_holder, which
 * take_gil sets to the holder's thread state while it holds the GIL.
 */
static __always_inline void py_block_cause(struct cm_thread *t)
{
	struct cm_py_proc *pp;
	__u64 holder = 0, tcb = 0, native = 0;
	__u32 tid = 0;

	if (!cfg_python || t->sc_nr1 != cfg_futex_nr + 1 || !t->sc_futex)
		return;
	pp = bpf_map_lookup_elem(&py_procs, &t->pid);
	if (!pp || t->sc_futex < pp->gil_lo || t->sc_futex >= pp->gil_hi)
		return;
	t->blk_cause = CM_CAUSE_GIL;
	t->gil_waits++;
	__sync_fetch_and_add(&pp->gil_waits, 1);
	if (!bpf_probe_read_user(&holder, sizeof(holder), (void *)pp->gil_holder) && holder) {
		if (pp->ts_native_thread_id) {
			if (!bpf_probe_read_user(&native, sizeof(native),
						 (void *)(holder + pp->ts_native_thread_id)))
				tid = (__u32)native;
		} else if (!bpf_probe_read_user(&tcb, sizeof(tcb), (void *)(holder + pp->ts_thread_id)) && tcb) {
			bpf_probe_read_user(&tid, sizeof(tid), (void *)(tcb + pp->tcb_tid));
		}
	}
	t->gil_holder = tid;
}

/* sys_exit: the call's waits for the GIL get an off-CPU stack of their own
 * (their time is not in sc_offcpu). */
static __always_inline void py_sys_exit(struct cm_thread *t, __u32 nr)
{
	if (!cfg_python || !cfg_offcpu_stacks || !t->sc_gil_ns || t->sc_partial)
		return;
	if (t->sc_gil_ns >= cfg_min_block_ns) {
		emit_offcpu(t, CM_CAUSE_GIL, nr, t->sc_gil_ns, true);
	} else {
		__sync_fetch_and_add(&counters.offcpu_skipped, 1);
		__sync_fetch_and_add(&counters.offcpu_skipped_ns, t->sc_gil_ns);
	}
}

/* A new process forked from a Python one runs the same image: it starts with
 * its parent's description (its counters its own), before user space has
 * looked at it. */
static __always_inline void py_on_fork(__u32 parent_pid, __u32 child_pid)
{
	struct cm_py_proc *pp;
	struct cm_py_proc c;

	if (!cfg_python)
		return;
	pp = bpf_map_lookup_elem(&py_procs, &parent_pid);
	if (!pp)
		return;
	__builtin_memcpy(&c, pp, sizeof(c));
	c.walks = c.frames = c.no_tstate = c.bad_tstate = c.read_failed = 0;
	c.truncated = c.walk_ns = c.not_ready = c.gil_waits = 0;
	if (bpf_map_update_elem(&py_procs, &child_pid, &c, BPF_NOEXIST) && !bpf_map_lookup_elem(&py_procs, &child_pid))
		__sync_fetch_and_add(&py_procs_full, 1);
}

/* exec replaces the image: whatever it was, it is no longer that Python
 * (user space looks again at the new one). */
static __always_inline void py_on_exec(__u32 pid)
{
	if (cfg_python)
		bpf_map_delete_elem(&py_procs, &pid);
}

#endif /* CM_PYTHON_BPF_H */
