// SPDX-License-Identifier: GPL-2.0
/*
 * Block I/O per submitting process, device and operation, timed from the
 * claim to completion, queue time included.
 *
 * Where the kernel has block_io_start (6.5+), a request is claimed there and
 * only there: it fires once per new request, in blk_mq_submit_bio, in the
 * submitter's context. Older kernels claim at insert or issue when the
 * current task is traced (the submitter inserts and issues its own requests
 * on the direct and plugged paths); there a request that a traced task only
 * dispatches (another's, run from its queue) is charged to it, and which
 * tracepoints a kernel has is reported under features.
 */
#include "common.bpf.h"

#define REQ_OP_BITS 8
#define REQ_OP_MASK_ ((1U << REQ_OP_BITS) - 1)

/* `fresh`: the request was just allocated, so an entry already under its
 * address is a leftover of an earlier request there and is replaced. */
static __always_inline int claim(struct request *rq, bool fresh)
{
	__u64 key = (__u64)rq;
	struct cm_thread *t;
	struct cm_blk_start st = {};
	struct cm_blk_stat *s;
	struct gendisk *disk;
	__u32 op;

	t = thread_of((__u32)bpf_get_current_pid_tgid());
	if (!t)
		return 0;
	if (!fresh && bpf_map_lookup_elem(&blk_inflight, &key))
		return 0;	/* claimed at insert; keep the earlier time */
	st.ts = bpf_ktime_get_ns();
	st.key.pgen = t->pgen;
	st.tid = t->tid;
	st.pid = t->pid;
	disk = BPF_CORE_READ(rq, q, disk);
	if (disk)
		st.key.dev = (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
	op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK_;
	st.key.op = op <= CM_BLK_DISCARD ? op : CM_BLK_OTHER;
	st.bytes = BPF_CORE_READ(rq, __data_len);
	if (bpf_map_update_elem(&blk_inflight, &key, &st, BPF_ANY)) {
		__sync_fetch_and_add(&counters.blk_inflight_full, 1);
		return 0;
	}
	s = lookup_or_init(&blkstats, &st.key, (void *)&zero_blk, &counters.blk_full);
	if (s) {
		__sync_fetch_and_add(&s->submitted, 1);
		/* counted here: a completion the kernel never reports keeps its bytes */
		__sync_fetch_and_add(&s->bytes, st.bytes);
	}
	return 0;
}

static __always_inline int complete(struct request *rq)
{
	__u64 key = (__u64)rq;
	struct cm_blk_start *st = bpf_map_lookup_elem(&blk_inflight, &key);
	struct cm_blk_stat *s;
	__u64 d, bytes;

	if (!st)
		return 0;
	d = bpf_ktime_get_ns() - st->ts;
	/* what is left to complete is the whole request at its first
	 * completion, requests merged into it since the claim included */
	bytes = BPF_CORE_READ(rq, __data_len);
	if (bytes < st->bytes)
		bytes = st->bytes;
	s = lookup_or_init(&blkstats, &st->key, (void *)&zero_blk, &counters.blk_full);
	if (s) {
		s->count++;
		s->completed_bytes += bytes;
		/* bios merged into the request after its claim */
		if (bytes > st->bytes)
			s->bytes += bytes - st->bytes;
		s->total_ns += d;
		if (d > s->max_ns)
			s->max_ns = d;
		hist_add(s->hist, d);
	}
	if (cfg_trace)
		emit_slice(st->pid, st->tid, NULL, CM_SL_BLOCK_IO, 0, st->key.op,
			   st->ts, st->ts + d, bytes);
	bpf_map_delete_elem(&blk_inflight, &key);
	return 0;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(block_io_start_btf, struct request *rq) { return claim(rq, true); }
SEC("raw_tp/block_io_start")
int BPF_PROG(block_io_start_raw, struct request *rq) { return claim(rq, true); }
/* A request's entry goes when it ends (block_io_done, after its last
 * block_rq_complete) or is merged into another (block_rq_merge), which then
 * completes for both: no entry outlives its request. */
static __always_inline int forget(struct request *rq)
{
	__u64 key = (__u64)rq;

	bpf_map_delete_elem(&blk_inflight, &key);
	return 0;
}

SEC("tp_btf/block_io_done")
int BPF_PROG(block_io_done_btf, struct request *rq) { return forget(rq); }
SEC("raw_tp/block_io_done")
int BPF_PROG(block_io_done_raw, struct request *rq) { return forget(rq); }
SEC("tp_btf/block_rq_merge")
int BPF_PROG(block_rq_merge_btf, struct request *rq) { return forget(rq); }
SEC("raw_tp/block_rq_merge")
int BPF_PROG(block_rq_merge_raw, struct request *rq) { return forget(rq); }
SEC("tp_btf/block_rq_insert")
int BPF_PROG(block_rq_insert_btf, struct request *rq) { return claim(rq, false); }
SEC("raw_tp/block_rq_insert")
int BPF_PROG(block_rq_insert_raw, struct request *rq) { return claim(rq, false); }
SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue_btf, struct request *rq) { return claim(rq, false); }
SEC("raw_tp/block_rq_issue")
int BPF_PROG(block_rq_issue_raw, struct request *rq) { return claim(rq, false); }
SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request *rq) { return complete(rq); }
SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request *rq) { return complete(rq); }

char LICENSE[] SEC("license") = "GPL";
