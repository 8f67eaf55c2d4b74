// SPDX-License-Identifier: GPL-2.0
/* The one definition of every map and global the other objects share. */
#define CM_DEFINE
#include "common.bpf.h"

const volatile struct cm_thread zero_thread = {};
const volatile struct cm_sys_stat zero_sys = {};
const volatile struct cm_blk_stat zero_blk = {};

const volatile bool cfg_oncpu_stacks = false;
const volatile bool cfg_offcpu_stacks = false;
const volatile __u64 cfg_min_block_ns = 1000000;

const volatile bool cfg_critpath = false;
const volatile bool cfg_trace = false;
const volatile __u64 cfg_trace_sys_min_ns = 100000;
const volatile __u64 cfg_trace_max_per_sec = 100000;

struct cm_counters counters = {};
__s64 live_threads = 0;
__u32 next_gen = 0;

char LICENSE[] SEC("license") = "GPL";
