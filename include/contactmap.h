/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Structures shared by the BPF programs and user space. Plain __u32/__u64 only,
 * so the same bytes mean the same thing on both sides of a map.
 */
#ifndef CONTACTMAP_H
#define CONTACTMAP_H

#ifndef __VMLINUX_H__	/* BPF side gets the types from vmlinux.h */
#include <stdbool.h>
#include <linux/types.h>
#endif

/* Subsystems of the contact map, in display order. */
enum cm_subsys {
	CM_SS_CPU_USER,
	CM_SS_CPU_KERNEL,	/* kernel time outside syscalls that is not a fault's */
	CM_SS_RUNQ,
	CM_SS_MEMORY,
	CM_SS_SYNC,
	CM_SS_FILE_IO,
	CM_SS_NETWORK,
	CM_SS_BLOCK_IO,
	CM_SS_SLEEP,
	CM_SS_POLL,
	CM_SS_CHILD_WAIT,	/* wait4/waitid: a parent waiting for its children */
	CM_SS_PROCESS,
	CM_SS_OTHER,
	CM_SS_GPU,		/* GPU wait (synchronize calls) and GPU driver ioctls */
	CM_SS_GIL,		/* Python threads waiting for their interpreter's GIL */
	CM_SS_UNATTRIBUTED,
	CM_SS_COUNT
};

/* Slots of a thread's cumulative on-CPU time by subsystem (the critical path). */
#define CM_SS_SLOTS 16
_Static_assert(CM_SS_COUNT <= CM_SS_SLOTS, "a slot per subsystem");

#include "cm_python.h"

#define CM_COMM_LEN 16
/* log2 buckets: slot i holds [2^i, 2^(i+1)) ns; slot 39 is ~550 s and up. */
#define CM_HIST_SLOTS 40

/* Thread states of the ledger's state machine. */
enum cm_state {
	CM_UNKNOWN = 0,	/* seeded at attach; resolved by the first event */
	CM_RUNNING = 1,	/* on a CPU */
	CM_RUNQ_WAKE = 2,	/* runnable after fork */
	CM_RUNQ_PREEMPT = 3,	/* runnable after being preempted */
	CM_BLOCKED = 4,	/* off CPU, waiting (cause in blk_cause), until wake_ts if set */
	CM_DEAD = 5,	/* final switch-out after exit */
};

/* Off-CPU causes outside syscalls; syscall causes are the syscall number. */
#define CM_CAUSE_SYSCALL 0
#define CM_CAUSE_FAULT 1
#define CM_CAUSE_OTHER 2
#define CM_CAUSE_GPU_SYNC 3	/* inside a CUDA synchronize call (bpf/gpu.bpf.c) */
#define CM_CAUSE_GIL 4		/* a futex wait on its interpreter's GIL (bpf/python.bpf.c) */

/*
 * ioctl on a GPU driver file (/dev/nvidia*) is kept apart under this pseudo
 * syscall number, above every real one: its time is GPU driver time.
 */
#define CM_SYS_GPU_IOCTL 4000
#define CM_GPU_DEV_MAJORS 4	/* char-device majors of GPU driver files */

/*
 * Syscall rows of a thread are keyed by its generation, not its tid: a row
 * outlives nothing, and a new thread that reuses a tid never meets an old
 * thread's rows. Bit i of sc_used says row nr i exists (nr >= CM_SYS_USED_OTHER
 * is kept under CM_SYS_USED_OTHER, and the GPU ioctl pseudo-syscall under its
 * own bit), so user space can drain them when the thread ends.
 */
#define CM_SYS_USED_WORDS 8
#define CM_SYS_USED_OTHER 510	/* row of syscalls numbered 510 and up */
#define CM_SYS_USED_GPU 511	/* bit of the CM_SYS_GPU_IOCTL row */

/* Per-thread ledger and state, one entry of the `threads` hash map. */
struct cm_thread {
	__u32 tid;
	__u32 pid;		/* tgid */
	__u32 ppid;		/* tgid of the parent process, for a new process */
	__u32 flags;		/* CM_TF_* */
	__u32 gen;		/* unique per traced thread over the run: its syscall rows' key */
	__u32 pgen;		/* unique per traced process (its first thread's gen) */
	char comm[CM_COMM_LEN];

	__u64 start_ns;		/* start of its traced window */
	__u64 end_ns;		/* final switch-out after exit, 0 while alive */
	__s64 exit_code;	/* task->exit_code at exit */

	/* state machine */
	__u64 state_ts;		/* when the current state (or on-CPU segment) began */
	__u32 state;		/* enum cm_state */
	__u32 blk_cause;	/* CM_CAUSE_* while BLOCKED */
	__u32 blk_iowait;	/* blocked through io_schedule() (task->in_iowait) */
	__u32 last_cpu;
	__u64 wake_ts;		/* last wakeup while BLOCKED: the one field another CPU writes */
	__u64 exec_at_out;	/* task->se.sum_exec_runtime at the last switch-out */
	__u64 steal_at_in;	/* the CPU's steal clock at run_ts; CM_STEAL_UNKNOWN: none */
	__u64 run_ts;		/* when it was last switched in (timeline) */
	__u32 trace_seq;	/* timeline events emitted or dropped for this thread */
	__u32 run_est;		/* run_ts is an estimate (resync) */
	__s32 out_kstack;	/* stacks where it last blocked (when stacks are on) */
	__s32 out_ustack;
	__u64 fault_seg;	/* state_ts of the segment of the last user page fault:
				 * tells a fault block from others */

	/* the syscall in flight: nr + 1, 0 when in user space */
	__u32 sc_nr1;
	__u16 sc_partial;	/* entered before tracing began: time kept, not counted */
	__u16 sc_exec_map;	/* an mmap/mprotect with PROT_EXEC: maps change */
	__u64 sc_enter_ts;
	__u64 sc_oncpu;
	__u64 sc_offcpu;
	__u64 sc_iowait;

	/*
	 * Kernel time outside syscalls (page faults, interrupts) by the kernel's
	 * own tick accounting: task->stime at the last boundary, and the system
	 * ticks that fell in user segments (between syscalls) not yet charged, by
	 * whether the segment took a page fault (see cm_account_oncpu).
	 */
	__u64 stime_at;
	__u64 kcarry_fault;
	__u64 kcarry_other;

	/* the ledger */
	__u64 oncpu_user_ns;
	__u64 oncpu_sys_ns;
	__u64 oncpu_kfault_ns;	/* kernel, outside syscalls, in segments that faulted */
	__u64 oncpu_kother_ns;	/* kernel, outside syscalls, otherwise (interrupts) */
	__u64 sys_offcpu_ns;	/* blocked in syscalls, summed over its rows: the ledger */
	__u64 sys_iowait_ns;	/* closes even if a row could not be stored */
	__u64 runq_wake_ns;
	__u64 runq_preempt_ns;
	__u64 off_fault_ns;	/* blocked in a page fault outside syscalls */
	__u64 off_other_ns;	/* blocked, neither syscall nor fault */
	__u64 off_fault_iowait_ns;	/* part of off_fault_ns in io_schedule */
	__u64 off_other_iowait_ns;
	__u64 unattributed_ns;
	/*
	 * Part of the on-CPU time in which the hypervisor ran something else on
	 * this vCPU (steal): the growth of the run queue's own steal account
	 * (rq->prev_steal_time_rq, CONFIG_PARAVIRT_TIME_ACCOUNTING) from
	 * switch-in to switch-out, the time the kernel left out of the thread's
	 * run time for that reason. 0 on kernels without it.
	 */
	__u64 steal_ns;

	/* scheduler */
	__u64 vol_switches;
	__u64 invol_switches;
	__u64 migrations;
	__u64 wakeups;
	__u64 runq_waits;
	__u64 runq_hist[CM_HIST_SLOTS];

	/* faults: the task's own counters (exact), and the tracepoint's count */
	__u64 min_flt_base;
	__u64 maj_flt_base;
	__u64 min_flt;
	__u64 maj_flt;
	__u64 user_faults;	/* exceptions:page_fault_user events */

	/*
	 * GPU (bpf/gpu.bpf.c). While gpu_sync is set the thread is inside a CUDA
	 * synchronize call: its on-CPU time is GPU wait (spin) and its blocked
	 * time GPU wait (blocked, cause CM_CAUSE_GPU_SYNC), syscall or not.
	 */
	__u32 gpu_sync;
	__u32 gpu_depth;	/* nesting of probed CUDA calls (runtime over driver) */
	__u64 gpu_cookie;	/* uprobe cookie of the outermost call in flight */
	__u64 gpu_ts;		/* its start */
	__u64 gpu_bytes;	/* its size argument */
	__u64 gpu_ptr;		/* its host pointer argument */
	__u32 gpu_kind;		/* its copy kind (CM_COPY_*) */
	__u32 gpu_pad;
	__u64 gpu_sp;		/* its stack pointer at entry: tells nested calls from stale ones */
	__u64 gpu_spin_ns;	/* on-CPU inside synchronize calls */
	__u64 gpu_blocked_ns;	/* blocked inside synchronize calls */
	__u64 gpu_syncs;	/* synchronize calls completed */
	__u64 gpu_sync_ns;	/* their wall time */

	__u64 exit_ts;		/* sched_process_exit */
	__u64 sc_used[CM_SYS_USED_WORDS];	/* syscall rows that exist (see above) */

	/* the critical path (bpf/critpath.bpf.c) */
	__u32 sc_grp;		/* enum cm_subsys of the syscall in flight */
	__u32 waker_gen;	/* gen of the traced thread that woke it, 0: none or an interrupt */
	__u64 oncpu_ss[CM_SS_SLOTS];	/* on-CPU so far, by subsystem (as cm_account_oncpu charges it) */

	__u64 probe_ts;		/* in a uprobe trampoline's syscall since (observer work) */

	/*
	 * Python (bpf/python.bpf.c): a futex wait whose word lies in the
	 * interpreter's GIL state is blocked time of cause CM_CAUSE_GIL; the
	 * futex call keeps its count and latency but not that time.
	 */
	__u64 sc_futex;		/* the futex word of the futex call in flight */
	__u64 gil_ns;		/* blocked waiting for the GIL */
	__u64 sc_gil_ns;	/* the part of it in the syscall in flight */
	__u64 gil_waits;	/* blocks on the GIL */
	__u32 gil_holder;	/* tid holding the GIL when the last wait began */
	__u32 gil_pad;
	__u64 py_tstate;	/* its PyThreadState, as the last walk found it */
};

#define CM_STEAL_UNKNOWN (~0ULL)	/* cm_thread.steal_at_in */
#define CM_TF_SEEDED 1		/* existed before tracing began */
#define CM_TF_EXITED 2		/* sched_process_exit seen */
#define CM_TF_EXECED 4
#define CM_TF_OBSERVER 8	/* contactmap's own thread in the target (the CUPTI agent's) */
#define CM_TF_HELD 16		/* the wrapped command before exec, held by contactmap */
#define CM_TF_GROUP_DEAD 32	/* no thread of its process was alive when it exited */

/* The row of syscall nr in a thread's sc_used bitmap. */
static inline __attribute__((always_inline)) __u32 cm_sys_used_bit(__u32 nr)
{
	return nr == 4000 ? CM_SYS_USED_GPU : nr < CM_SYS_USED_OTHER ? nr : CM_SYS_USED_OTHER;
}

/* Per-thread, per-syscall statistics: key of the `sysstats` map. */
struct cm_sys_key {
	__u32 gen;		/* the thread's cm_thread.gen */
	__u32 nr;		/* as cm_sys_used_bit keeps it */
};

struct cm_sys_stat {
	__u64 count;
	__u64 errors;
	__u64 total_ns;
	__u64 oncpu_ns;
	__u64 offcpu_ns;	/* blocked, iowait included */
	__u64 iowait_ns;	/* the part of offcpu_ns in io_schedule() */
	__u64 max_ns;
	__u64 hist[CM_HIST_SLOTS];
};

/* Block I/O, per submitting process, device and operation. */
struct cm_blk_key {
	__u32 pgen;		/* the process's cm_thread.pgen */
	__u32 dev;		/* MKDEV as the kernel's dev_t: major << 20 | minor */
	__u32 op;		/* CM_BLK_* */
	__u32 pad;
};

#define CM_BLK_READ 0
#define CM_BLK_WRITE 1
#define CM_BLK_FLUSH 2
#define CM_BLK_DISCARD 3
#define CM_BLK_OTHER 4

struct cm_blk_stat {
	__u64 submitted;	/* claimed for a traced submitter */
	__u64 count;		/* completions seen (times and hist are theirs) */
	__u64 bytes;		/* at the claim, grown by what merged in before completion */
	__u64 completed_bytes;	/* of the completions seen */
	__u64 total_ns;
	__u64 max_ns;
	__u64 hist[CM_HIST_SLOTS];
};

struct cm_blk_start {
	__u64 ts;
	struct cm_blk_key key;
	__u64 bytes;
	__u32 tid;		/* the submitter, for the timeline */
	__u32 pid;
};

/* ---- stacks ------------------------------------------------------------------ */
#define CM_STACK_DEPTH 127	/* frames per stack in the stack map */
#define CM_STACK_SNAP 16384	/* bytes of user stack copied for DWARF unwinding */
#define CM_SNAP_CHUNK 1024

/* The reader of the stack and timeline ring buffers reads this often on its
 * own: their events wake it only when a quarter of the buffer waits. */
#define CM_RB_POLL_MS 50
#define CM_EV_ONCPU 1		/* a cpu-clock sample */
#define CM_EV_OFFCPU 2		/* a block that lasted at least the minimum */
#define CM_EV_MAPS 3		/* the process mapped code: re-read its maps */

/* The user registers, in x86_64 pt_regs order (what libdw needs to unwind). */
struct cm_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct cm_stack_event {
	__u32 type;		/* CM_EV_* */
	__u32 pid;
	__u32 tid;
	__s32 kstack_id;	/* kernel stack in the `stacks` map, or -errno */
	__s32 ustack_id;	/* frame-pointer user stack, or -errno */
	__u32 cause;		/* CM_CAUSE_* for off-CPU */
	__u32 sc_nr;		/* syscall, when cause is CM_CAUSE_SYSCALL */
	__u32 snap_len;		/* bytes of stack[] that are valid (0: no DWARF) */
	__u64 weight;		/* 1 for a sample, blocked ns for off-CPU */
	__u64 ts;
	char comm[CM_COMM_LEN];
	struct cm_regs regs;
	__u8 stack[CM_STACK_SNAP];
	struct cm_py_stack py;	/* Python frames (py.nframes 0: none) */
};

/* ---- thread life ---------------------------------------------------------------- */
/*
 * A traced thread's final figures, sent at its last switch-out; its map entry
 * is then freed and user space folds the record (and drains its syscall rows)
 * into its process's books. Where the ring is full the entry stays, marked
 * CM_DEAD, and user space collects it from the map.
 */
#define CM_EV_THREAD_EXIT 8
#define CM_LIFE_RING_BYTES (4 << 20)

struct cm_life_event {
	__u32 type;		/* CM_EV_THREAD_EXIT */
	__u32 pad;
	struct cm_thread t;
};

/* ---- the critical path ----------------------------------------------------------- */
/*
 * One record per switch-in of a traced thread: the off-CPU stretch that just
 * ended (blocked from off_start to wake_ts, then runnable; or runnable all
 * along), who woke it, and its cumulative on-CPU time by subsystem as of
 * off_start (nothing is charged on-CPU while off CPU): the difference of two
 * records' vectors is what the on-CPU stretch between them did. Request
 * markers come through the same ring, so one thread's records stay in order.
 */
#define CM_EV_SWITCH_IN 9
#define CM_EV_REQ_BEGIN 10
#define CM_EV_REQ_END 11

#define CM_CP_ESTIMATED 1	/* flags: its switch-in was never reported (resync) */
#define CM_CP_IOWAIT 2		/* blocked in io_schedule() */

struct cm_cp_event {
	__u32 type;		/* CM_EV_SWITCH_IN or CM_EV_REQ_* */
	__u32 tid;
	__u32 pid;
	__u32 gen;
	__u64 ts;		/* switch-in, or the marker call */
	__u64 off_start;	/* SWITCH_IN: when it left the CPU */
	__u64 wake_ts;		/* SWITCH_IN: its wake-up, 0 if it was runnable (preempted) */
	__u64 id;		/* REQ_*: the request id */
	__u32 state;		/* SWITCH_IN: enum cm_state it was off CPU in */
	__u32 cause;		/* SWITCH_IN: CM_CAUSE_* of a block */
	__u32 nr;		/* SWITCH_IN: syscall of a CM_CAUSE_SYSCALL block */
	__u32 waker_gen;	/* SWITCH_IN: the traced thread that woke it, 0 if none */
	__u32 flags;		/* CM_CP_* */
	__u32 pad;
	__u64 vec[CM_SS_SLOTS];	/* cumulative on-CPU by subsystem (see above) */
};

/* ---- timeline ------------------------------------------------------------------- */
#define CM_EV_SLICE 4

#define CM_SL_RUN 1		/* on a CPU */
#define CM_SL_RUNQ 2		/* runnable, waiting for a CPU */
#define CM_SL_BLOCKED 3		/* off CPU; cause and nr say why */
#define CM_SL_SYSCALL 4		/* a syscall at least cfg_trace_sys_min_ns long */
#define CM_SL_BLOCK_IO 5	/* a block request: tid is the submitter, nr the op */
#define CM_SL_GPU_KERNEL 6	/* device time of a kernel: tid is the stream, nr the device */
#define CM_SL_GPU_COPY 7	/* a copy or memset: tid the stream, nr device | kind << 8 | memset << 16 */
#define CM_SL_ESTIMATED 0x8000	/* flag on RUN/RUNQ/BLOCKED: the switch-in that ends or starts it
				 * was never reported, so that edge is estimated */

struct cm_slice_event {
	__u32 type;		/* CM_EV_SLICE */
	__u32 pid;
	__u32 tid;
	__u16 kind;		/* CM_SL_* */
	__u16 cause;		/* CM_CAUSE_* for BLOCKED */
	__u32 nr;		/* syscall number; block op for BLOCK_IO */
	__u32 seq;		/* per thread: a jump tells user space events were dropped */
	__u64 start;
	__u64 end;
	__u64 bytes;		/* BLOCK_IO */
};

/* --cgroup: a task moved into the traced cgroup (bpf/cgroup.bpf.c). */
#define CM_EV_CGROUP_JOIN 5

struct cm_cgroup_event {
	__u32 type;		/* CM_EV_CGROUP_JOIN */
	__u32 pid;
	__u32 tid;
	__u32 pad;
};

/* Drop and anomaly counters, kept in .bss and reported under "lost". */
struct cm_counters {
	__u64 threads_full;	/* a traced thread could not get a map entry */
	__u64 sysstats_full;
	__u64 blk_full;
	__u64 blk_inflight_full;
	__u64 switch_in_blocked;	/* resumed without a wakeup event seen */
	__u64 run_while_off;	/* ran code while believed off CPU (a missed switch-in) */
	__u64 switch_in_unknown;	/* switch-in from an unknown or running state */
	__u64 wakeup_unknown;	/* woken from a state seeded as unknown */
	__u64 ringbuf_full;	/* stack events dropped: ring buffer full */
	__u64 kstack_missing;	/* kernel stack not captured (map full, -EFAULT) */
	__u64 ustack_missing;
	__u64 offcpu_skipped;	/* blocks shorter than the minimum: no stack */
	__u64 offcpu_skipped_ns;
	__u64 samples;		/* cpu-clock samples of traced threads */
	__u64 trace_ringbuf_full;	/* timeline events dropped: ring buffer full */
	__u64 trace_rate_limited;	/* timeline events dropped by the rate limit */
	__u64 exit_ringbuf_full;	/* exit records that waited in the map (not lost) */
	__u64 exits;		/* traced threads that reached sched_process_exit */
	__u64 retired;		/* exit records sent */
	__u64 cp_ringbuf_full;	/* switch-in records and markers dropped: ring buffer full */
	__u64 probe_syscalls;	/* uretprobe/uprobe trampoline syscalls in traced threads */
	__u64 probe_syscall_ns;	/* their time: observer cost, in no syscall row */
	__u64 cgroup_events_full;	/* --cgroup: a task that joined went unreported */
};

/*
 * On-CPU time d ends at a boundary: it goes to user or syscall time or, inside
 * a CUDA synchronize call, to GPU wait (spin): the syscalls such a call makes
 * keep their count and latency but not this time, so nothing is counted twice.
 * `stime` is the thread's task->stime now: the system ticks the kernel counted
 * in a user segment are kernel time outside syscalls (a fault's or an
 * interrupt's), and are charged to it, carried over to later user segments
 * where a tick (4 ms at HZ=250) is longer than the segment it fell in. One
 * definition for the BPF programs and for user space closing the intervals
 * still open at the end (with stime = t->stime_at: no new ticks).
 */
static inline __attribute__((always_inline)) void cm_account_oncpu(struct cm_thread *t, __u64 d,
								   __u64 stime, bool faulted)
{
	__u64 ticks = stime > t->stime_at ? stime - t->stime_at : 0, c;

	t->stime_at = stime;
	if (t->gpu_sync) {
		t->gpu_spin_ns += d;
		t->oncpu_ss[CM_SS_GPU] += d;
	} else if (t->sc_nr1) {
		t->oncpu_sys_ns += d;
		t->sc_oncpu += d;
		t->oncpu_ss[t->sc_grp < CM_SS_SLOTS ? t->sc_grp : CM_SS_OTHER] += d;
	} else {
		if (faulted)
			t->kcarry_fault += ticks;
		else
			t->kcarry_other += ticks;
		c = t->kcarry_fault < d ? t->kcarry_fault : d;
		t->kcarry_fault -= c;
		t->oncpu_kfault_ns += c;
		t->oncpu_ss[CM_SS_MEMORY] += c;
		d -= c;
		c = t->kcarry_other < d ? t->kcarry_other : d;
		t->kcarry_other -= c;
		t->oncpu_kother_ns += c;
		t->oncpu_ss[CM_SS_CPU_KERNEL] += c;
		t->oncpu_user_ns += d - c;
		t->oncpu_ss[CM_SS_CPU_USER] += d - c;
	}
}

/*
 * Blocked time d ends (a wake-up, or a switch-in with no wake-up seen): it
 * goes to the cause the switch-out recorded. One definition for the BPF
 * programs and for user space closing the intervals still open at the end.
 */
static inline __attribute__((always_inline)) void cm_account_blocked(struct cm_thread *t, __u64 d)
{
	if (t->blk_cause == CM_CAUSE_GPU_SYNC) {
		t->gpu_blocked_ns += d;	/* io-wait or not: waiting for the GPU */
	} else if (t->blk_cause == CM_CAUSE_GIL) {
		t->gil_ns += d;
		t->sc_gil_ns += d;
	} else if (t->blk_cause == CM_CAUSE_SYSCALL && t->sc_nr1) {
		t->sc_offcpu += d;
		t->sys_offcpu_ns += d;
		if (t->blk_iowait) {
			t->sc_iowait += d;
			t->sys_iowait_ns += d;
		}
	} else if (t->blk_cause == CM_CAUSE_FAULT) {
		t->off_fault_ns += d;
		if (t->blk_iowait)
			t->off_fault_iowait_ns += d;
	} else {
		t->off_other_ns += d;
		if (t->blk_iowait)
			t->off_other_iowait_ns += d;
	}
}

#endif /* CONTACTMAP_H */
