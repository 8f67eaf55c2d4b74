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

/*
 * Sizes are set from user space with bpf_map__set_max_entries(). The threads
 * and syscall tables hold what is alive now (entries are freed when their
 * thread ends), and are not preallocated where the kernel allows it (6.1+,
 * bpf_mem_alloc): their memory follows the live set, and the bound is only a
 * ceiling. User space turns preallocation back on for older kernels.
 */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct cm_thread);
} threads SEC(".maps");

/*
 * One bit per thread id: set while the thread is traced. Every program looks
 * here before the threads hash, so an untraced thread costs one inlined array
 * load instead of a hash lookup. Sized to PID_MAX_LIMIT, not to the current
 * pid_max, which root may raise while we run (512 KiB; only the words of ids
 * in use are ever touched). User space maps it to set the bits of the threads
 * it seeds (atomically: forks set bits in the same words at the same time).
 */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);	/* words of 64 tids: PID_MAX_LIMIT (4M) */
	__type(key, __u32);
	__type(value, __u64);
} traced_tids SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct cm_sys_key);
	__type(value, struct cm_sys_stat);
} sysstats SEC(".maps");

/* Requests in flight. LRU: an entry whose completion the kernel never
 * reports (this VM drops a few) is the oldest, and goes first. */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cm_blk_start);
} blk_inflight SEC(".maps");

/* The subsystem (enum cm_subsys) of each syscall number, from user space. */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u32);
} sys_groups SEC(".maps");

/* Interrupt nesting per CPU: [0] hard irqs, softirqs and timer callbacks
 * being served (bpf/critpath.bpf.c). */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} irq_depth SEC(".maps");

static __always_inline bool in_interrupt_now(void)
{
	__u32 k = 0;
	__u64 *d = bpf_map_lookup_elem(&irq_depth, &k);

	return d && *d;
}

/* Switch-in records and request markers (struct cm_cp_event); sized from
 * user space when the critical path is on. */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} cp_events SEC(".maps");

/* Exit records of traced threads (struct cm_life_event). */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CM_LIFE_RING_BYTES);
} life_events SEC(".maps");

/* Per process, device and op; a process's rows are drained when it ends. */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct cm_blk_key);
	__type(value, struct cm_blk_stat);
} blkstats SEC(".maps");

/* Stacks: kernel and frame-pointer user stacks, deduplicated by the kernel. */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, CM_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} stack_events SEC(".maps");

CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} trace_events SEC(".maps");

/* per-CPU rate limit of the timeline: [0] window start, [1] events in it */
CM_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} trace_rate SEC(".maps");

CM_EXTERN const volatile bool cfg_critpath;	/* switch-in records for the critical path */
CM_EXTERN const volatile bool cfg_trace;
CM_EXTERN const volatile __u64 cfg_trace_sys_min_ns;
CM_EXTERN const volatile __u64 cfg_trace_max_per_sec;	/* per CPU */

/* Set before load: stacks off unless asked for (-f / --stacks). */
CM_EXTERN const volatile bool cfg_oncpu_stacks;
CM_EXTERN const volatile bool cfg_offcpu_stacks;
CM_EXTERN const volatile __u64 cfg_min_block_ns;
/* Set before load: Python frames and the GIL cause (python.bpf.h) */
CM_EXTERN const volatile bool cfg_python;

/* Zeroed templates: the values are larger than the 512-byte BPF stack. */
CM_EXTERN const volatile struct cm_thread zero_thread;
CM_EXTERN const volatile struct cm_sys_stat zero_sys;
CM_EXTERN const volatile struct cm_blk_stat zero_blk;

CM_EXTERN struct cm_counters counters;
CM_EXTERN __s64 live_threads;
CM_EXTERN __u32 next_gen;	/* user space takes numbers from it too, atomically */

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

/* The map's value for key, created from `zero` if missing; `full` counts a full map. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *zero,
					    __u64 *full)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		__sync_fetch_and_add(full, 1);
	return v;
}

static __always_inline bool tid_traced(__u32 tid)
{
	__u32 w = tid / 64;
	__u64 *bits = bpf_map_lookup_elem(&traced_tids, &w);

	return bits && (*bits & (1ULL << (tid % 64)));
}

static __always_inline void tid_mark(__u32 tid, bool on)
{
	__u32 w = tid / 64;
	__u64 *bits = bpf_map_lookup_elem(&traced_tids, &w);

	if (!bits)
		return;
	if (on)
		__sync_fetch_and_or(bits, 1ULL << (tid % 64));
	else
		__sync_fetch_and_and(bits, ~(1ULL << (tid % 64)));
}

static __always_inline struct cm_thread *thread_of(__u32 tid)
{
	if (!tid_traced(tid))
		return NULL;
	return bpf_map_lookup_elem(&threads, &tid);
}

/* task->stime of the current task (ns of system ticks), for cm_account_oncpu. */
static __always_inline __u64 cur_stime(void)
{
	return bpf_get_current_task_btf()->stime;
}



/* Copies the user stack from sp up in 1 KiB chunks, then 128-byte ones: a
 * read that crosses the end of the stack mapping fails whole. */
static __always_inline __u32 snap_user_stack(__u8 *dst, __u64 sp)
{
	__u32 off = 0;

	for (int i = 0; i < CM_STACK_SNAP / CM_SNAP_CHUNK; i++) {
		if (bpf_probe_read_user(dst + off, CM_SNAP_CHUNK, (void *)(sp + off)))
			break;
		off += CM_SNAP_CHUNK;
	}
	if (off < CM_STACK_SNAP) {
		for (int j = 0; j < CM_SNAP_CHUNK / 128; j++) {
			if (off > CM_STACK_SNAP - 128)
				break;
			if (bpf_probe_read_user(dst + off, 128, (void *)(sp + off)))
				break;
			off += 128;
		}
	}
	return off;
}

/* Fills regs and the stack snapshot from the task's user registers. */
static __always_inline void snap_user(struct cm_stack_event *e, struct pt_regs *uregs)
{
	if (bpf_probe_read_kernel(&e->regs, sizeof(e->regs), uregs)) {
		e->snap_len = 0;
		return;
	}
	e->snap_len = snap_user_stack(e->stack, e->regs.sp);
}

/*
 * Submit flags for events user space need not see at once: wake the reader
 * only once a quarter of the buffer waits; it reads every CM_RB_POLL_MS on
 * its own. A wake-up per event had the reader preempt the traced thread that
 * had just made it: with the timeline, whose slices come from those very
 * switches, a sleeper's 5 ms naps turned into ~1000 involuntary switches a
 * run; with stacks, one more switch per off-CPU stack.
 */
static __always_inline __u64 lazy_wakeup(void *rb)
{
	return bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(rb, BPF_RB_RING_SIZE) / 4
		       ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/*
 * The thread is gone: its final figures go to user space and its entry is
 * freed, so the tables hold the live set only. Where the ring is full the
 * entry stays (marked dead by the caller) and user space collects it from the
 * map instead: late, not lost.
 */
static __always_inline bool retire(struct cm_thread *t, __u32 tid)
{
	struct cm_life_event *e = bpf_ringbuf_reserve(&life_events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&counters.exit_ringbuf_full, 1);
		return false;
	}
	e->type = CM_EV_THREAD_EXIT;
	e->pad = 0;
	if (bpf_probe_read_kernel(&e->t, sizeof(e->t), t)) {
		bpf_ringbuf_discard(e, 0);
		return false;
	}
	bpf_ringbuf_submit(e, lazy_wakeup(&life_events));
	__sync_fetch_and_add(&counters.retired, 1);
	bpf_map_delete_elem(&threads, &tid);
	return true;
}

#include "python.bpf.h"

/* An off-CPU stack event: the thread blocked for d ns (called in its context). */
static __always_inline void emit_offcpu(struct cm_thread *t, __u32 cause, __u32 nr, __u64 d,
				       bool dwarf)
{
	struct cm_stack_event *e;
	bool py;

	e = py_reserve(t, dwarf, &py);	/* room for Python frames if it is Python */
	if (!e) {
		__sync_fetch_and_add(&counters.ringbuf_full, 1);
		return;
	}
	e->type = CM_EV_OFFCPU;
	e->pid = t->pid;
	e->tid = t->tid;
	e->kstack_id = t->out_kstack;
	e->ustack_id = t->out_ustack;
	e->cause = cause;
	e->sc_nr = nr;
	e->weight = d;
	e->ts = bpf_ktime_get_ns();
	__builtin_memcpy(e->comm, t->comm, sizeof(e->comm));
	e->snap_len = 0;
	if (dwarf)
		snap_user(e, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
	py_submit(e, py, t, 0, d);
}

/* One timeline slice; dropped (and counted) past the per-CPU rate or when
 * the ring buffer is full. The thread's seq advances either way. */
static __always_inline void emit_slice(__u32 pid, __u32 tid, __u32 *seq, __u16 kind,
				       __u16 cause, __u32 nr, __u64 start, __u64 end, __u64 bytes)
{
	struct cm_slice_event *e;
	__u32 k0 = 0, k1 = 1;
	__u64 *win, *cnt;

	if (seq)
		(*seq)++;
	win = bpf_map_lookup_elem(&trace_rate, &k0);
	cnt = bpf_map_lookup_elem(&trace_rate, &k1);
	if (!win || !cnt)
		return;
	if (end - *win > 1000000000ULL) {
		*win = end;
		*cnt = 0;
	}
	if (++*cnt > cfg_trace_max_per_sec) {
		__sync_fetch_and_add(&counters.trace_rate_limited, 1);
		return;
	}
	e = bpf_ringbuf_reserve(&trace_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&counters.trace_ringbuf_full, 1);
		return;
	}
	e->type = CM_EV_SLICE;
	e->pid = pid;
	e->tid = tid;
	e->kind = kind;
	e->cause = cause;
	e->nr = nr;
	e->seq = seq ? *seq : 0;
	e->start = start;
	e->end = end;
	e->bytes = bytes;
	bpf_ringbuf_submit(e, lazy_wakeup(&trace_events));
}

/* Tells user space to read the process's mappings while it lives: at once
 * (a wake-up), as it may not live long. */
static __always_inline void emit_maps(struct cm_thread *t)
{
	struct cm_stack_event *e;

	if (!cfg_oncpu_stacks && !cfg_offcpu_stacks && !cfg_python)
		return;
	/* a short record: user space looks at type before the rest */
	e = bpf_ringbuf_reserve(&stack_events, 16, 0);
	if (!e) {
		__sync_fetch_and_add(&counters.ringbuf_full, 1);
		return;
	}
	e->type = CM_EV_MAPS;
	e->pid = t->pid;
	e->tid = t->tid;
	bpf_ringbuf_submit(e, 0);
}

/* A scheduler slice of the thread on the timeline. `est`: its end is an
 * estimate (a switch-in the tracepoint never reported, see resync). */
static __always_inline void trace_slice(struct cm_thread *t, __u16 kind, __u64 start, __u64 end,
					bool est)
{
	__u16 cause = kind == CM_SL_BLOCKED ? t->blk_cause : 0;
	__u32 nr = kind == CM_SL_BLOCKED && t->blk_cause == CM_CAUSE_SYSCALL && t->sc_nr1 ? t->sc_nr1 - 1 : 0;

	if (cfg_trace && !(t->flags & CM_TF_HELD))
		emit_slice(t->pid, t->tid, &t->trace_seq, kind | (est ? CM_SL_ESTIMATED : 0), cause, nr,
			   start, end, 0);
}

/* Blocks outside syscalls get their off-CPU stack here (the thread is not
 * current, so frame-pointer stacks only); a syscall's at its sys_exit. */
static __always_inline void offcpu_nonsyscall(struct cm_thread *t, __u64 d)
{
	/* a held command's wait is contactmap's (see start_command, sched.bpf.c);
	 * a GIL wait is a futex call's: its stack comes at sys_exit */
	if (!cfg_offcpu_stacks ||
	    ((t->blk_cause == CM_CAUSE_SYSCALL || t->blk_cause == CM_CAUSE_GIL) && t->sc_nr1) ||
	    (t->flags & CM_TF_HELD))
		return;
	if (d >= cfg_min_block_ns) {
		emit_offcpu(t, t->blk_cause, 0, d, false);
	} else {
		__sync_fetch_and_add(&counters.offcpu_skipped, 1);
		__sync_fetch_and_add(&counters.offcpu_skipped_ns, d);
	}
}

/*
 * The thread's off-CPU stretch, from state_ts to `end`, is over: charge it by
 * the state the thread left the CPU in and put it on the timeline. Called at
 * its switch-in, and by resync (`resynced`) when no switch-in was reported and
 * `end` is an estimate.
 */
/* The off-CPU stretch from state_ts to end, for the critical path (see
 * struct cm_cp_event); before settle_off_cpu charges it. */
static __always_inline void emit_switch_in(struct cm_thread *t, __u64 end, bool resynced)
{
	struct cm_cp_event *e;
	__u64 wake = t->wake_ts;

	e = bpf_ringbuf_reserve(&cp_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&counters.cp_ringbuf_full, 1);
		return;
	}
	e->type = CM_EV_SWITCH_IN;
	e->tid = t->tid;
	e->pid = t->pid;
	e->gen = t->gen;
	e->ts = end;
	e->off_start = t->state_ts;
	e->state = t->state;
	e->cause = t->blk_cause;
	e->nr = t->sc_nr1 ? t->sc_nr1 - 1 : 0;
	e->id = 0;
	e->flags = (resynced ? CM_CP_ESTIMATED : 0) | (t->blk_iowait ? CM_CP_IOWAIT : 0);
	e->pad = 0;
	if ((t->state == CM_BLOCKED || t->state == CM_UNKNOWN) && wake >= t->state_ts && wake <= end) {
		e->wake_ts = wake;
		e->waker_gen = t->waker_gen;
	} else {
		e->wake_ts = 0;
		e->waker_gen = 0;
	}
	__builtin_memcpy(e->vec, t->oncpu_ss, sizeof(e->vec));
	bpf_ringbuf_submit(e, lazy_wakeup(&cp_events));
}

static __always_inline void settle_off_cpu(struct cm_thread *t, __u64 end, bool resynced)
{
	__u64 d = end - t->state_ts, wake = t->wake_ts;

	if (cfg_critpath && !(t->flags & CM_TF_HELD))
		emit_switch_in(t, end, resynced);

	switch (t->state) {
	case CM_RUNQ_WAKE:
	case CM_RUNQ_PREEMPT:
		if (t->state == CM_RUNQ_WAKE)
			t->runq_wake_ns += d;
		else
			t->runq_preempt_ns += d;
		t->runq_waits++;
		hist_add(t->runq_hist, d);
		trace_slice(t, CM_SL_RUNQ, t->state_ts, end, resynced);
		break;
	case CM_BLOCKED:
	case CM_UNKNOWN:
		/* blocked until the wakeup, then runnable until the end */
		if (wake >= t->state_ts && wake <= end) {
			if (t->state == CM_BLOCKED) {
				cm_account_blocked(t, wake - t->state_ts);
				offcpu_nonsyscall(t, wake - t->state_ts);
			} else {
				t->unattributed_ns += wake - t->state_ts;
				__sync_fetch_and_add(&counters.wakeup_unknown, 1);
			}
			t->wakeups++;
			t->runq_wake_ns += end - wake;
			t->runq_waits++;
			hist_add(t->runq_hist, end - wake);
			trace_slice(t, CM_SL_BLOCKED, t->state_ts, wake, false);
			trace_slice(t, CM_SL_RUNQ, wake, end, resynced);
		} else if (t->state == CM_BLOCKED) {
			/* resumed with no wakeup seen: all of it was blocked */
			cm_account_blocked(t, d);
			offcpu_nonsyscall(t, d);
			trace_slice(t, CM_SL_BLOCKED, t->state_ts, end, resynced);
			if (!resynced)
				__sync_fetch_and_add(&counters.switch_in_blocked, 1);
		} else {
			/*
			 * Seeded as runnable ('R' in /proc) and switched in with
			 * no event of its own and no wakeup since: it was not on
			 * a CPU (a running thread is seen leaving one first), so
			 * it waited in the run queue all along. A wrapped command
			 * is seeded so right after fork, and charging this to
			 * unattributed broke the 1% bound of short commands.
			 */
			t->runq_wake_ns += d;
			t->runq_waits++;
			hist_add(t->runq_hist, d);
			__sync_fetch_and_add(&counters.switch_in_unknown, 1);
		}
		break;
	default:
		t->unattributed_ns += d;
		if (!resynced)
			__sync_fetch_and_add(&counters.switch_in_unknown, 1);
	}
}

/*
 * The thread runs code although its last event left it off CPU: its switch-in
 * was never reported. This kernel's sched_switch tracepoint sometimes does
 * that (a classic-tracepoint bpftrace script counting the same thread's
 * switches sees the same hole, so it is not this program missing a run). The
 * kernel's own exec-time counter says how much of the gap it ran; the rest is
 * settled by the state we had it in, up to that estimated switch-in. The
 * counter lags by at most a tick, so the run part is a slight underestimate.
 *
 * A rare path, and a global function (its one definition is in maps.bpf.c):
 * the verifier checks it once per program. Inlined, or as a static
 * subprogram checked at every call site, it made start-up 18 ms slower.
 */
#ifdef CM_DEFINE
__noinline int cm_resync(struct cm_thread *t, __u64 d, __u64 stime)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	__u64 ran;

	if (!t)
		return 0;	/* a global function's pointer argument may be NULL */
	ran = BPF_CORE_READ(cur, se.sum_exec_runtime) - t->exec_at_out;
	__sync_fetch_and_add(&counters.run_while_off, 1);
	if (ran > d)
		ran = d;
	settle_off_cpu(t, t->state_ts + d - ran, true);
	/* for the timeline: it has been running for the last `ran` ns */
	t->run_ts = t->state_ts + d - ran;
	t->run_est = 1;
	t->steal_at_in = CM_STEAL_UNKNOWN;
	cm_account_oncpu(t, ran, stime, false);
	return 0;
}
#else
int cm_resync(struct cm_thread *t, __u64 d, __u64 stime);
#endif

/*
 * The row of the syscall in flight, created (and marked in the thread's
 * sc_used, so that user space can drain it when the thread ends) if missing;
 * NULL when the map is full (counted).
 */
static __always_inline struct cm_sys_stat *sys_row(struct cm_thread *t, struct cm_sys_key *key)
{
	struct cm_sys_stat *s = bpf_map_lookup_elem(&sysstats, key);
	__u32 bit;

	if (s)
		return s;
	bpf_map_update_elem(&sysstats, key, (void *)&zero_sys, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&sysstats, key);
	if (!s) {
		__sync_fetch_and_add(&counters.sysstats_full, 1);
		return NULL;
	}
	bit = key->nr == CM_SYS_GPU_IOCTL ? CM_SYS_USED_GPU : key->nr;
	if (bit < CM_SYS_USED_WORDS * 64)
		t->sc_used[bit / 64] |= 1ULL << (bit % 64);
	return s;
}

/*
 * The syscall in flight ends at `now` (sys_exit, or exit/exit_group, which
 * never return): its row takes the call, unless it began before tracing
 * (then only its time), and `error` says whether it failed. Returns the row;
 * NULL when the map is full (counted: the thread's own sums keep its time).
 */
static __always_inline struct cm_sys_stat *close_syscall(struct cm_thread *t, __u32 nr,
							 __u64 now, bool error)
{
	struct cm_sys_key key = { .gen = t->gen, .nr = cm_sys_used_bit(nr) == CM_SYS_USED_OTHER ?
							CM_SYS_USED_OTHER : nr };
	struct cm_sys_stat *s = sys_row(t, &key);
	__u64 total = now - t->sc_enter_ts;

	if (!s)
		return NULL;
	if (!t->sc_partial) {
		s->count++;
		if (error)
			s->errors++;
		s->total_ns += total;
		if (total > s->max_ns)
			s->max_ns = total;
		hist_add(s->hist, total);
	}
	s->oncpu_ns += t->sc_oncpu;
	s->offcpu_ns += t->sc_offcpu;
	s->iowait_ns += t->sc_iowait;
	return s;
}

/* On-CPU time since the last boundary ends now (see cm_account_oncpu);
 * stime: the thread's task->stime now. */
static __always_inline void account_oncpu(struct cm_thread *t, __u64 now, __u64 stime)
{
	__u64 d = now - t->state_ts;

	if (t->state == CM_UNKNOWN)
		t->stime_at = stime;	/* seeded while running: its ticks so far are not ours */
	if (t->state != CM_RUNNING && t->state != CM_UNKNOWN)
		cm_resync(t, d, stime);
	else
		cm_account_oncpu(t, d, stime, t->fault_seg == t->state_ts);
	t->state = CM_RUNNING;
	t->state_ts = now;
}

#endif /* CM_COMMON_BPF_H */
