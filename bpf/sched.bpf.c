// SPDX-License-Identifier: GPL-2.0
/*
 * Scheduler side of the ledger: on-CPU, run-queue and blocked intervals from
 * sched_switch / sched_wakeup(_new); thread life from fork, exec and exit.
 * Each handler has a tp_btf twin and a raw_tp twin; user space loads one set.
 * Bodies use BPF_CORE_READ so the same code serves both.
 */
#include "common.bpf.h"
#include "cgroup.bpf.h"

/*
 * tp_btf arguments are trusted pointers the verifier lets us load from
 * directly; raw_tp ones need bpf_probe_read. The twins pass `btf` as a
 * constant so each keeps only its own kind of read.
 */
#define TASK_PID(btf, p) ((btf) ? (p)->pid : BPF_CORE_READ((p), pid))
#define TASK_STIME(btf, p) ((btf) ? (p)->stime : BPF_CORE_READ((p), stime))
#define TASK_EXEC(btf, p) ((btf) ? (p)->se.sum_exec_runtime : BPF_CORE_READ((p), se.sum_exec_runtime))

/* Each CPU's run queue (struct rq *), found once from a task on it (the
 * per-CPU `runqueues` symbol needs CONFIG_KALLSYMS_ALL to be loadable). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_rq SEC(".maps");

/*
 * This CPU's steal clock as its run queue has accounted it: the time the
 * hypervisor ran something else on this vCPU, which update_rq_clock_task()
 * leaves out of the tasks' run time. It lags by the time since the run
 * queue's clock was last updated: for a switch, at the start of the same
 * __schedule(), or at the wake-up just before. `on` is a task on this CPU.
 * 0 without paravirt steal accounting or group scheduling (cfs_rq->rq);
 * CM_STEAL_UNKNOWN while this CPU's run queue is not found.
 */
static __always_inline __u64 cpu_steal_ns(struct task_struct *on)
{
	__u32 k = 0;
	__u64 *slot;
	struct rq *rq;

	if (!bpf_core_field_exists(struct rq, prev_steal_time_rq) ||
	    !bpf_core_field_exists(struct cfs_rq, rq))
		return 0;
	slot = bpf_map_lookup_elem(&cpu_rq, &k);
	if (!slot)
		return CM_STEAL_UNKNOWN;
	if (!*slot) {
		rq = BPF_CORE_READ(on, se.cfs_rq, rq);
		if (!rq || BPF_CORE_READ(rq, cpu) != (int)bpf_get_smp_processor_id())
			return CM_STEAL_UNKNOWN;
		*slot = (__u64)rq;
	}
	rq = (struct rq *)*slot;
	return BPF_CORE_READ(rq, prev_steal_time_rq);
}

static __always_inline int on_switch(void *ctx, bool btf, bool preempt, struct task_struct *prev,
				     struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns(), run_ts = 0;
	struct cm_thread *t;

	/* no switch happens inside an interrupt: a depth left over (a handler
	 * whose entry was seen but not its exit, as programs were attached)
	 * must not make every later wake-up on this CPU look like one */
	if (cfg_critpath) {
		__u32 k = 0;
		__u64 *d = bpf_map_lookup_elem(&irq_depth, &k);

		if (d)
			*d = 0;
	}

	t = thread_of(TASK_PID(btf, prev));
	if (t) {
		__u64 seg = t->state_ts;

		account_oncpu(t, now, TASK_STIME(btf, prev));
		t->exec_at_out = TASK_EXEC(btf, prev);
		if (t->run_ts && !t->run_est && t->steal_at_in != CM_STEAL_UNKNOWN) {
			__u64 s = cpu_steal_ns(prev);

			/* a slice runs on one CPU: its steal clock only grows */
			if (s != CM_STEAL_UNKNOWN && s >= t->steal_at_in)
				t->steal_ns += s - t->steal_at_in;
		}
		if (cfg_trace && t->run_ts)
			emit_slice(t->pid, t->tid, &t->trace_seq,
				   CM_SL_RUN | (t->run_est ? CM_SL_ESTIMATED : 0), 0, 0, t->run_ts, now, 0);
		/* a switch-out with no switch-in after it starts no slice */
		run_ts = t->run_ts;
		t->run_ts = 0;
		t->run_est = 0;
		if ((prev_state & TASK_DEAD_STATE) && (t->flags & CM_TF_EXITED)) {
			t->state = CM_DEAD;
			t->end_ns = now;
			/* the kernel counts its last switch as voluntary (nvcsw), and
			 * a parent's wait4 rusage includes it */
			t->vol_switches++;
			/* its last switch: a new thread that reuses the id is not this one */
			tid_mark(t->tid, false);
			retire(t, t->tid);
			t = NULL;
		} else if (preempt || prev_state == TASK_RUNNING_STATE) {
			/* still runnable: preempted, or yielded */
			t->state = CM_RUNQ_PREEMPT;
			t->invol_switches++;
		} else {
			t->state = CM_BLOCKED;
			t->vol_switches++;
			/* woken while still on the CPU (sched_waking before this
			 * switch-out): runnable from now on, not blocked */
			if (cfg_critpath && run_ts && t->wake_ts > run_ts)
				t->wake_ts = now;
			if (btf)
				t->blk_iowait = BPF_CORE_READ_BITFIELD(prev, in_iowait);
			else
				t->blk_iowait = BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait);
			if (t->gpu_sync)
				t->blk_cause = CM_CAUSE_GPU_SYNC;
			else if (t->sc_nr1)
				t->blk_cause = CM_CAUSE_SYSCALL;
			else if (seg && t->fault_seg == seg)
				t->blk_cause = CM_CAUSE_FAULT;
			else
				t->blk_cause = CM_CAUSE_OTHER;
			py_block_cause(t);	/* a futex wait on the GIL */
			if (cfg_offcpu_stacks) {
				/* current is still prev: these are its stacks */
				t->out_kstack = bpf_get_stackid(ctx, &stacks, 0);
				t->out_ustack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
			}
		}
	}

	t = thread_of(TASK_PID(btf, next));
	if (t) {
		__u32 cpu = bpf_get_smp_processor_id();

		settle_off_cpu(t, now, false);
		/* off CPU no ticks are counted: its next segment starts here */
		t->stime_at = TASK_STIME(btf, next);
		if (t->last_cpu != cpu && t->last_cpu != (__u32)-1)
			t->migrations++;
		t->last_cpu = cpu;
		t->state = CM_RUNNING;
		t->state_ts = now;
		t->run_ts = now;
		t->run_est = 0;
		t->steal_at_in = cpu_steal_ns(next);
	}
	return 0;
}

/*
 * The waker runs on its own CPU, and the wakee may already be switched in on
 * another before this program finishes: so the wakeup only stamps wake_ts,
 * and every state change stays with the thread's own, ordered events.
 */
static __always_inline int on_wakeup(bool btf, struct task_struct *p)
{
	struct cm_thread *t = thread_of(TASK_PID(btf, p));

	if (t && (t->state == CM_BLOCKED || t->state == CM_UNKNOWN))
		t->wake_ts = bpf_ktime_get_ns();
	return 0;
}

/*
 * Who wakes a thread: sched_waking runs in the waker's context (sched_wakeup
 * may run on the wakee's CPU, from an IPI). The waker counts when it is a
 * traced thread inside a syscall (a futex wake, a pipe write, an exit) and
 * not in an interrupt (bpf/critpath.bpf.c keeps the per-CPU depth): a timer
 * or a completion wakes no one's thread.
 */
static __always_inline int on_waking(bool btf, struct task_struct *p)
{
	struct cm_thread *t, *w;

	t = thread_of(TASK_PID(btf, p));
	/* sched_waking fires only for a task whose state says it sleeps; one we
	 * still see running is waking before its switch-out was seen (the waker
	 * then waits for it to be off the CPU): on_switch keeps the stamp */
	if (!t || (t->state != CM_BLOCKED && t->state != CM_UNKNOWN && t->state != CM_RUNNING))
		return 0;
	/* with the critical path on, this program stamps the wake-up too (and
	 * sched_wakeup is not loaded): one program per wake-up, not two */
	t->wake_ts = bpf_ktime_get_ns();
	t->waker_gen = 0;
	if (in_interrupt_now())
		return 0;
	w = thread_of((__u32)bpf_get_current_pid_tgid());
	/* in a syscall, or exiting (its exit call is closed at sched_process_exit,
	 * before it wakes its parent) */
	if (w && (w->sc_nr1 || (w->flags & CM_TF_EXITED)))
		t->waker_gen = w->gen;
	return 0;
}

/* A new thread's entry; an entry still under its id is a thread that has
 * certainly ended (its id is being reused), whose record is sent first. */
static __always_inline struct cm_thread *new_thread(__u32 tid)
{
	struct cm_thread *old;

	if (!bpf_map_update_elem(&threads, &tid, (void *)&zero_thread, BPF_NOEXIST))
		return bpf_map_lookup_elem(&threads, &tid);
	old = bpf_map_lookup_elem(&threads, &tid);
	if (!old || !retire(old, tid) ||
	    bpf_map_update_elem(&threads, &tid, (void *)&zero_thread, BPF_NOEXIST)) {
		__sync_fetch_and_add(&counters.threads_full, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&threads, &tid);
}

static __always_inline int on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptid = BPF_CORE_READ(parent, pid);
	__u32 tid = BPF_CORE_READ(child, pid);
	__u32 pid = BPF_CORE_READ(child, tgid);
	struct cm_thread *pt, *t;

	pt = thread_of(ptid);
	/* --cgroup: an untraced parent's child that starts inside the cgroup */
	if (!pt && !(cfg_cgroup_id && cm_in_cgroup(child)))
		return 0;
	t = new_thread(tid);
	if (!t)
		return 0;
	tid_mark(tid, true);
	t->tid = tid;
	t->pid = pid;
	t->gen = __sync_fetch_and_add(&next_gen, 1) + 1;
	/* a new process is numbered by its first thread (an adopted one by itself) */
	t->pgen = !pt || pid != pt->pid ? t->gen : pt->pgen;
	t->ppid = !pt ? BPF_CORE_READ(parent, tgid) : pid != pt->pid ? pt->pid : pt->ppid;
	BPF_CORE_READ_STR_INTO(&t->comm, child, comm);
	t->start_ns = bpf_ktime_get_ns();
	/* from fork to its first run it is being set up and then runnable */
	t->state = CM_RUNQ_WAKE;
	t->state_ts = t->start_ns;
	t->last_cpu = (__u32)-1;
	t->out_kstack = t->out_ustack = -1;
	/* a new process: its mappings now (its stacks reach user space later) */
	if (!pt || pid != pt->pid) {
		if (pt)
			py_on_fork(pt->pid, pid);
		emit_maps(t);
	}
	__sync_fetch_and_add(&live_threads, 1);
	return 0;
}

static __always_inline int on_exit(struct task_struct *p)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cm_thread *t = thread_of(tid);
	struct task_struct *cur;
	__u64 now;

	if (!t || (t->flags & CM_TF_EXITED))
		return 0;
	cur = (struct task_struct *)bpf_get_current_task();
	now = bpf_ktime_get_ns();
	t->flags |= CM_TF_EXITED;
	t->exit_ts = now;
	t->exit_code = BPF_CORE_READ(cur, exit_code);
	t->min_flt = BPF_CORE_READ(cur, min_flt);
	t->maj_flt = BPF_CORE_READ(cur, maj_flt);
	/* the last of its process (signal->live drops before this tracepoint) */
	if (BPF_CORE_READ(cur, signal, live.counter) == 0)
		t->flags |= CM_TF_GROUP_DEAD;
	bpf_get_current_comm(&t->comm, sizeof(t->comm));
	/* exit and exit_group never return: close them as completed calls */
	if (t->sc_nr1) {
		account_oncpu(t, now, cur_stime());
		close_syscall(t, t->sc_nr1 - 1, now, false);
		t->sc_nr1 = 0;
	}
	__sync_fetch_and_add(&counters.exits, 1);
	__sync_fetch_and_add(&live_threads, -1);
	return 0;
}

/*
 * The wrapped command, held by contactmap until every program was attached,
 * has exec'ed: its own life starts here. What came before (the wait on the
 * pipe, contactmap's code in the child, the teardown of the copy of
 * contactmap's memory) is contactmap's: the ledger starts afresh, and so do
 * the fault counters. The execve in flight is the command's, counted from here.
 */
static __noinline void start_command(struct cm_thread *t)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	__u64 now = bpf_ktime_get_ns();
	__u32 cpu = t->last_cpu, nr1 = t->sc_nr1;

	/* everything after the identity (tid ... comm) from the zero template */
	bpf_probe_read_kernel(&t->start_ns, sizeof(*t) - offsetof(struct cm_thread, start_ns),
			      (void *)&zero_thread.start_ns);
	t->flags &= ~CM_TF_HELD;
	/* a new number: the rows of the calls before the exec are left behind */
	t->gen = __sync_fetch_and_add(&next_gen, 1) + 1;
	t->last_cpu = cpu;
	t->out_kstack = t->out_ustack = -1;
	t->start_ns = now;
	t->state = CM_RUNNING;
	t->state_ts = now;
	t->run_ts = now;
	t->steal_at_in = cpu_steal_ns(cur);
	t->stime_at = cur->stime;
	t->min_flt_base = cur->min_flt;
	t->maj_flt_base = cur->maj_flt;
	t->sc_nr1 = nr1;
	t->sc_enter_ts = now;
}

static __always_inline int on_exec(struct task_struct *p)
{
	struct cm_thread *t = thread_of((__u32)bpf_get_current_pid_tgid());

	if (t && (t->flags & CM_TF_HELD))
		start_command(t);
	if (t) {
		t->flags |= CM_TF_EXECED;
		bpf_get_current_comm(&t->comm, sizeof(t->comm));
		py_on_exec(t->pid);
		emit_maps(t);
	}
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	return on_switch(ctx, true, preempt, prev, next, prev_state);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	return on_switch(ctx, false, preempt, prev, next, prev_state);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p) { return on_wakeup(true, p); }
SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p) { return on_wakeup(false, p); }
SEC("tp_btf/sched_waking")
int BPF_PROG(sched_waking_btf, struct task_struct *p) { return on_waking(true, p); }
SEC("raw_tp/sched_waking")
int BPF_PROG(sched_waking_raw, struct task_struct *p) { return on_waking(false, p); }
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p) { return on_wakeup(true, p); }
SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p) { return on_wakeup(false, p); }

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork_btf, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}
SEC("raw_tp/sched_process_fork")
int BPF_PROG(sched_process_fork_raw, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit_btf, struct task_struct *p) { return on_exit(p); }
SEC("raw_tp/sched_process_exit")
int BPF_PROG(sched_process_exit_raw, struct task_struct *p) { return on_exit(p); }

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec_btf, struct task_struct *p) { return on_exec(p); }
SEC("raw_tp/sched_process_exec")
int BPF_PROG(sched_process_exec_raw, struct task_struct *p) { return on_exec(p); }

char LICENSE[] SEC("license") = "GPL";
