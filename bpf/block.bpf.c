// SPDX-License-Identifier: GPL-2.0
/*
 * Block I/O per submitting process, device and operation. A request is
 * claimed at insert or issue when the current task is traced (the submitter
 * issues its own requests on the direct and plugged paths), and timed from
 * that point to completion, queue time included.
 */
#include "common.bpf.h"

#define REQ_OP_BITS 8
#define REQ_OP_MASK_ ((1U << REQ_OP_BITS) - 1)

static __always_inline int claim(struct request *rq)
{
	__u64 key = (__u64)rq;
	struct cm_thread *t;
	struct cm_blk_start st = {};
	struct gendisk *disk;
	__u32 op;

	t = thread_of((__u32)bpf_get_current_pid_tgid());
	if (!t)
		return 0;
	if (bpf_map_lookup_elem(&blk_inflight, &key))
		return 0;	/* claimed at insert; keep the earlier time */
	st.ts = bpf_ktime_get_ns();
	st.key.pid = t->pid;
	st.tid = t->tid;
	disk = BPF_CORE_READ(rq, q, disk);
	if (disk)
		st.key.dev = (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
	op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK_;
	st.key.op = op <= CM_BLK_DISCARD ? op : CM_BLK_OTHER;
	st.bytes = BPF_CORE_READ(rq, __data_len);
	if (bpf_map_update_elem(&blk_inflight, &key, &st, BPF_ANY))
		__sync_fetch_and_add(&counters.blk_inflight_full, 1);
	return 0;
}

static __always_inline int complete(struct request *rq)
{
	__u64 key = (__u64)rq;
	struct cm_blk_start *st = bpf_map_lookup_elem(&blk_inflight, &key);
	struct cm_blk_stat *s;
	__u64 d;

	if (!st)
		return 0;
	d = bpf_ktime_get_ns() - st->ts;
	s = bpf_map_lookup_elem(&blkstats, &st->key);
	if (!s) {
		bpf_map_update_elem(&blkstats, &st->key, (void *)&zero_blk, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&blkstats, &st->key);
	}
	if (s) {
		s->count++;
		s->bytes += st->bytes;
		s->total_ns += d;
		if (d > s->max_ns)
			s->max_ns = d;
		hist_add(s->hist, d);
	} else {
		__sync_fetch_and_add(&counters.blk_full, 1);
	}
	if (cfg_trace)
		emit_slice(st->key.pid, st->tid, NULL, CM_SL_BLOCK_IO, 0, st->key.op,
			   st->ts, st->ts + d, st->bytes);
	bpf_map_delete_elem(&blk_inflight, &key);
	return 0;
}

/* block_io_start (6.5+) fires in blk_mq_submit_bio, always in the
 * submitter's context: the surest claim, where the kernel has it. */
SEC("tp_btf/block_io_start")
int BPF_PROG(block_io_start_btf, struct request *rq) { return claim(rq); }
SEC("raw_tp/block_io_start")
int BPF_PROG(block_io_start_raw, struct request *rq) { return claim(rq); }
SEC("tp_btf/block_rq_insert")
int BPF_PROG(block_rq_insert_btf, struct request *rq) { return claim(rq); }
SEC("raw_tp/block_rq_insert")
int BPF_PROG(block_rq_insert_raw, struct request *rq) { return claim(rq); }
SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_rq_issue_btf, struct request *rq) { return claim(rq); }
SEC("raw_tp/block_rq_issue")
int BPF_PROG(block_rq_issue_raw, struct request *rq) { return claim(rq); }
SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_rq_complete_btf, struct request *rq) { return complete(rq); }
SEC("raw_tp/block_rq_complete")
int BPF_PROG(block_rq_complete_raw, struct request *rq) { return complete(rq); }

char LICENSE[] SEC("license") = "GPL";
