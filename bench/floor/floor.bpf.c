// SPDX-License-Identifier: GPL-2.0
/*
 * The floor: the cheapest BPF tracer of the events contactmap hooks most
 * often. Each program only bumps a per-CPU counter (an inlined array lookup,
 * no atomics, no clock read), so what a traced event costs under it is the
 * price of the tp_btf trampoline itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "floor.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOOR_NCOUNTERS + 1);	/* + the clock sink of -k */
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/*
 * Cost-ladder knobs for bench/run.py --analysis, all off by default (the
 * verifier drops the dead code): read the clock per event, and look the
 * current thread up in a hash map keyed by tid, as a per-thread tracer does
 * to filter, or in task-local storage (both stay empty here, so every lookup
 * misses, which is what an untraced thread costs).
 */
const volatile bool with_ktime = false;
const volatile __u32 ktime_reads = 1;	/* -K N: clock reads per event with -k */
const volatile bool with_hash = false;
const volatile bool with_task_storage = false;

/* -T: the same filter through task-local storage (empty: a miss is a NULL
 * check of task->bpf_storage), the cheaper alternative to the hash map. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} task_marks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} tids SEC(".maps");

static __always_inline void bump(__u32 key)
{
	__u64 *v;

	if (with_hash) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		if (bpf_map_lookup_elem(&tids, &tid))
			return;
	}
	if (with_task_storage) {
		if (bpf_task_storage_get(&task_marks, bpf_get_current_task_btf(), 0, 0))
			return;
	}
	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		(*v)++;
	if (with_ktime) {
		__u32 sink = FLOOR_NCOUNTERS;

		v = bpf_map_lookup_elem(&counts, &sink);
		if (v) {
			for (int i = 0; i < 32; i++) {
				if (i >= ktime_reads)
					break;
				*v += bpf_ktime_get_ns();
			}
		}
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_sys_enter) { bump(FLOOR_SYS_ENTER); return 0; }

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_sys_exit) { bump(FLOOR_SYS_EXIT); return 0; }

SEC("tp_btf/sched_switch")
int BPF_PROG(floor_sched_switch) { bump(FLOOR_SCHED_SWITCH); return 0; }

char LICENSE[] SEC("license") = "GPL";
