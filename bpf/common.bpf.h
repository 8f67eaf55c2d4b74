/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps and ledger transitions shared by the per-subsystem BPF objects. The
 * objects are linked into one by `bpftool gen object`; maps and globals are
 * defined in maps.bpf.c (CM_DEFINE) and declared extern everywhere else.
 */
#ifndef CM_COMMON_BPF_H
#define CM_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "contactmap.h"
#include "contactmap_gpu.h"

#ifdef CM_DEFINE
#define CM_EXTERN
#else
#define CM_EXTERN extern
#endif

/* Sizes are set from user space with bpf_map__set_max_entries(). */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct cm_thread);
} threads SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cm_sys_key);
	__type(value, struct cm_sys_stat);
} sysstats SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct cm_blk_start);
} blk_inflight SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct cm_blk_key);
	__type(value, struct cm_blk_stat);
} blkstats SEC(".maps");

/* Zeroed templates: the values are larger than the 512-byte BPF stack. */
CM_EXTERN const volatile struct cm_thread zero_thread;
CM_EXTERN const volatile struct cm_sys_stat zero_sys;
CM_EXTERN const volatile struct cm_blk_stat zero_blk;

CM_EXTERN struct cm_counters counters;
CM_EXTERN __s64 live_threads;

#define TASK_RUNNING_STATE 0
#define TASK_DEAD_STATE 0x80

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5; v >>= r;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r < CM_HIST_SLOTS ? r : CM_HIST_SLOTS - 1;
}

static __always_inline void hist_add(__u64 *hist, __u64 v)
{
	__u32 slot = log2_slot(v);

	if (slot < CM_HIST_SLOTS)	/* keeps the verifier sure of the bound */
		hist[slot]++;
}

static __always_inline struct cm_thread *thread_of(__u32 tid)
{
	return bpf_map_lookup_elem(&threads, &tid);
}

/* Blocked time ends (wakeup, or a switch-in with no wakeup seen). */
static __always_inline void account_blocked(struct cm_thread *t, __u64 d);

/*
 * The thread runs code although its last event left it off CPU: its switch-in
 * was never traced (this kernel's sched_switch tracepoint sometimes reports a
 * switch-out with no switch-in to match). The kernel's own exec-time counter
 * says how much of the gap it ran; the rest was the state we had it in. The
 * counter lags by at most a tick, so the run part is a slight underestimate.
 */
static __always_inline void resync(struct cm_thread *t, __u64 d)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	__u64 ran = BPF_CORE_READ(cur, se.sum_exec_runtime) - t->exec_at_out;

	__sync_fetch_and_add(&counters.run_while_off, 1);
	if (ran > d)
		ran = d;
	if (t->state == CM_RUNQ_PREEMPT || t->state == CM_RUNQ_WAKE)
		t->runq_preempt_ns += d - ran;
	else if (t->state == CM_BLOCKED)
		account_blocked(t, d - ran);
	else
		t->unattributed_ns += d - ran;
	if (t->gpu_sync) {
		t->gpu_spin_ns += ran;
	} else if (t->sc_nr1) {
		t->oncpu_sys_ns += ran;
		t->sc_oncpu += ran;
	} else {
		t->oncpu_user_ns += ran;
	}
}

/*
 * On-CPU time since the last boundary goes to user or syscall time, or, inside
 * a CUDA synchronize call, to GPU wait (spin): the syscalls such a call makes
 * keep their count and latency but not this time, so nothing is counted twice.
 */
static __always_inline void account_oncpu(struct cm_thread *t, __u64 now)
{
	__u64 d = now - t->state_ts;

	if (t->state != CM_RUNNING && t->state != CM_UNKNOWN) {
		resync(t, d);
	} else if (t->gpu_sync) {
		t->gpu_spin_ns += d;
	} else if (t->sc_nr1) {
		t->oncpu_sys_ns += d;
		t->sc_oncpu += d;
	} else {
		t->oncpu_user_ns += d;
	}
	t->state = CM_RUNNING;
	t->state_ts = now;
}

/* Blocked time ends (wakeup, or a switch-in with no wakeup seen). */
static __always_inline void account_blocked(struct cm_thread *t, __u64 d)
{
	if (t->blk_cause == CM_CAUSE_GPU_SYNC) {
		t->gpu_blocked_ns += d;	/* io-wait or not: waiting for the GPU */
	} else if (t->blk_cause == CM_CAUSE_SYSCALL && t->sc_nr1) {
		t->sc_offcpu += d;
		if (t->blk_iowait)
			t->sc_iowait += d;
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

#endif /* CM_COMMON_BPF_H */
