// SPDX-License-Identifier: GPL-2.0
/*
 * GPU work in the ledger. Two tiers feed the same maps:
 *  - gpu_hook: a uprobe on contactmap_gpu_hook() in the CUPTI agent, which
 *    passes batches of struct cm_gpu_rec (API calls, kernels, copies, sync
 *    and overhead records, the agent's state);
 *  - gpu_api_enter/gpu_api_exit: uprobes and uretprobes on the CUDA driver
 *    and runtime libraries, one pair of programs for every function, told
 *    apart by the attach cookie (contactmap_gpu.h).
 * Either way a synchronize call in flight sets the thread's gpu_sync, and the
 * ledger's transitions (common.bpf.h) charge its time to GPU wait.
 */
#include "common.bpf.h"

struct gpu_batch {
	struct cm_gpu_rec recs[CM_GPU_BATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpu_batch);
} gpu_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct cm_gpu_proc);
} gpu_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct cm_gpu_api_key);
	__type(value, struct cm_gpu_api_stat);
} gpu_api SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct cm_gpu_kern_key);
	__type(value, struct cm_gpu_kern_stat);
} gpu_kern SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct cm_gpu_copy_key);
	__type(value, struct cm_gpu_copy_stat);
} gpu_copy SEC(".maps");


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct cm_gpu_pinned);
} gpu_pinned SEC(".maps");

/* The agent of a process asks for the uprobe tier (CUPTI unavailable). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} gpu_events SEC(".maps");

/* Drops of the GPU maps; user space reports them under "lost". */
struct cm_gpu_counters gpu_counters = {};

const volatile struct cm_gpu_api_stat zero_gpu_api = {};
const volatile struct cm_gpu_proc zero_gpu_proc = {};
const volatile struct cm_gpu_pinned zero_gpu_pinned = {};

/* ---- helpers ------------------------------------------------------------- */

static __always_inline struct cm_gpu_proc *proc_of(__u32 pid)
{
	return lookup_or_init(&gpu_procs, &pid, (void *)&zero_gpu_proc, &gpu_counters.procs_full);
}

/* A synchronize call starts: time so far is ordinary, from now on GPU wait. */
static __always_inline void sync_begin(struct cm_thread *t, __u64 now)
{
	account_oncpu(t, now, cur_stime());
	t->gpu_sync = 1;
	t->gpu_ts = now;
}

static __always_inline void sync_end(struct cm_thread *t, __u64 now)
{
	if (!t->gpu_sync)
		return;
	account_oncpu(t, now, cur_stime());
	t->gpu_sync = 0;
	t->gpu_syncs++;
	t->gpu_sync_ns += now - t->gpu_ts;
}

static __always_inline void api_add(__u32 pid, __u32 api, __u32 tier, __u64 d, __u64 bytes,
				    __u32 status)
{
	struct cm_gpu_api_key key = { .pid = pid, .api = api, .tier = tier };
	struct cm_gpu_api_stat *s;

	s = lookup_or_init(&gpu_api, &key, (void *)&zero_gpu_api, &gpu_counters.api_full);
	if (!s)
		return;
	s->count++;
	if (status)
		s->errors++;
	s->total_ns += d;
	if (d > s->max_ns)
		s->max_ns = d;
	s->bytes += bytes;
	hist_add(s->hist, d);
}

/* n: the copies one record stands for (cudaMemcpyBatchAsync batches them) */
static __always_inline void copy_add(struct cm_gpu_copy_key *key, __u64 n, __u64 bytes, __u64 d,
				     bool timed)
{
	struct cm_gpu_copy_stat zero = {}, *s;

	s = lookup_or_init(&gpu_copy, key, &zero, &gpu_counters.copy_full);
	if (!s)
		return;
	s->count += n;
	s->bytes += bytes;
	if (!timed) {
		s->untimed++;
		return;
	}
	s->total_ns += d;
	if (d > s->max_ns)
		s->max_ns = d;
}

/* ---- the agent's hook (cupti tier) ---------------------------------------- */

struct hook_ctx {
	__u32 pid;
	__u32 tid;
	__u32 n;
	__u64 now;
};

static int handle_rec(__u32 i, struct hook_ctx *c)
{
	__u32 zero = 0;
	struct gpu_batch *b = bpf_map_lookup_elem(&gpu_scratch, &zero);
	struct cm_gpu_proc *p;
	struct cm_gpu_rec *r;
	struct cm_thread *t;
	__u64 d;

	if (!b)
		return 1;
	/* bpf_loop runs i below n <= CM_GPU_BATCH (a power of two); the mask is
	 * the bound the verifier can see */
	r = &b->recs[i & (CM_GPU_BATCH - 1)];
	p = proc_of(c->pid);
	if (!p)
		return 1;
	d = r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0;
	switch (r->type) {
	case CM_GPU_REC_API:
		if (r->api >= CM_GA_COUNT) {
			p->bad_records++;
			break;
		}
		api_add(c->pid, r->api, CM_GPU_TIER_CUPTI, d, r->bytes, r->status);
		if ((r->flags & CM_GPU_RF_SYNC) && r->tid == c->tid) {
			t = thread_of(c->tid);
			if (t)
				sync_end(t, c->now);
		}
		break;
	case CM_GPU_REC_SYNC_BEGIN:
		if (r->tid == c->tid) {
			t = thread_of(c->tid);
			if (t && !t->gpu_sync)
				sync_begin(t, c->now);
		}
		break;
	case CM_GPU_REC_SYNC_END:
		if (r->tid == c->tid) {
			t = thread_of(c->tid);
			if (t)
				sync_end(t, c->now);
		}
		break;
	case CM_GPU_REC_KERNEL: {
		struct cm_gpu_kern_key key = {
			.pid = c->pid, .device = r->device, .stream = r->stream,
			.graph = !!(r->flags & CM_GPU_RF_GRAPH),
		};
		struct cm_gpu_kern_stat kz = {}, *s;

		s = lookup_or_init(&gpu_kern, &key, &kz, &gpu_counters.kern_full);
		if (!s)
			break;
		s->count++;
		if (key.graph)
			p->graph_kernels++;
		if (r->flags & CM_GPU_RF_NOTIME) {
			s->untimed++;
			p->untimed++;
			break;
		}
		s->total_ns += d;
		if (d > s->max_ns)
			s->max_ns = d;
		if (cfg_trace)
			emit_slice(c->pid, r->stream, NULL, CM_SL_GPU_KERNEL, key.graph, r->device,
				   r->start_ns, r->end_ns, 0);
		break;
	}
	case CM_GPU_REC_COPY:
	case CM_GPU_REC_MEMSET: {
		struct cm_gpu_copy_key key = {
			.pid = c->pid,
			.op = r->type == CM_GPU_REC_COPY ? CM_GPU_OP_COPY : CM_GPU_OP_MEMSET,
			.kind = r->copy_kind, .src_mem = r->src_mem, .dst_mem = r->dst_mem,
			.tier = CM_GPU_TIER_CUPTI,
		};
		bool timed = !(r->flags & CM_GPU_RF_NOTIME);

		copy_add(&key, r->type == CM_GPU_REC_COPY && r->status ? r->status : 1, r->bytes, d,
			 timed);
		if (!timed)
			p->untimed++;
		else if (cfg_trace)
			emit_slice(c->pid, r->stream, NULL, CM_SL_GPU_COPY, 0,
				   r->device | (__u32)r->copy_kind << 8 |
				   (__u32)(key.op == CM_GPU_OP_MEMSET) << 16,
				   r->start_ns, r->end_ns, r->bytes);
		break;
	}
	case CM_GPU_REC_SYNC: {
		__u32 ty = r->sync_type;

		if (ty < CM_GPU_SYNC_TYPES) {
			p->sync_rec_count[ty]++;
			p->sync_rec_ns[ty] += d;
		}
		break;
	}
	case CM_GPU_REC_OVERHEAD:
		p->overhead_count++;
		p->overhead_ns += d;
		break;
	case CM_GPU_REC_INFO:
		p->status = r->status;
		p->info_flags = r->flags;
		p->rec_version = r->device;
		p->clock_offset_ns = (__s64)r->start_ns;
		p->status_ns = r->end_ns;
		p->clock_skew_ns = (__s64)r->bytes;
		p->cupti_version = r->corr;
		p->driver_version = r->stream;
		if (r->flags & CM_GPU_RF_FINAL)
			p->final_seen = 1;
		/* taken over: still the cupti tier, up to the moment it was */
		if (r->status == CM_GPU_ST_CUPTI || r->status == CM_GPU_ST_TAKEN_OVER) {
			p->tier = CM_GPU_TIER_CUPTI;
		} else if (r->status != CM_GPU_ST_NONE && p->tier != CM_GPU_TIER_UPROBES) {
			struct cm_gpu_event ev = { .pid = c->pid, .status = r->status };

			p->tier = CM_GPU_TIER_UPROBES;
			p->uprobe_requests++;
			if (bpf_ringbuf_output(&gpu_events, &ev, sizeof(ev), 0))
				__sync_fetch_and_add(&gpu_counters.events_full, 1);
		}
		break;
	case CM_GPU_REC_DROPPED:
		p->dropped += r->bytes;
		break;
	case CM_GPU_REC_OBSERVER:
		/* the calling thread, or one of its process's threads by tid (CUPTI's) */
		t = thread_of(r->tid ? r->tid : c->tid);
		if (t && t->pid == c->pid)
			t->flags |= CM_TF_OBSERVER;
		break;
	default:
		p->bad_records++;
	}
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(gpu_hook, const struct cm_gpu_rec *recs, unsigned int n)	/* BPF_UPROBE is BPF_KPROBE in libbpf 1.1 */
{
	__u64 id = bpf_get_current_pid_tgid();
	struct hook_ctx c = { .pid = id >> 32, .tid = (__u32)id };
	struct gpu_batch *b;
	struct cm_gpu_proc *p;
	__u32 zero = 0;
	__u64 size;

	if (!thread_of(c.tid))
		return 0;
	c.now = bpf_ktime_get_ns();
	b = bpf_map_lookup_elem(&gpu_scratch, &zero);
	if (!b)
		return 0;
	/* 64-bit, so that the bound checked is the bound the helper gets */
	size = (__u64)n * sizeof(struct cm_gpu_rec);
	if (n == 0 || size > sizeof(b->recs) || bpf_probe_read_user(b->recs, size, recs)) {
		__sync_fetch_and_add(&gpu_counters.bad_batches, 1);
		return 0;
	}
	p = proc_of(c.pid);
	if (p) {
		p->hook_calls++;
		p->records += n;
	}
	c.n = n;
	bpf_loop(n, handle_rec, &c, 0);
	return 0;
}

/* ---- uprobes on the CUDA libraries (uprobe tier) -------------------------- */

/* The first five arguments, read at constant offsets of ctx (a computed ctx
 * offset is not allowed) and picked by 1-based index; 0 for none. */
struct gpu_args {
	__u64 a[8];
};

static __always_inline void read_args(struct pt_regs *ctx, struct gpu_args *g)
{
	g->a[0] = 0;
	g->a[1] = PT_REGS_PARM1(ctx);
	g->a[2] = PT_REGS_PARM2(ctx);
	g->a[3] = PT_REGS_PARM3(ctx);
	g->a[4] = PT_REGS_PARM4(ctx);
	g->a[5] = PT_REGS_PARM5(ctx);
	g->a[6] = 0;
	g->a[7] = 0;
}

static __always_inline __u64 arg_n(const struct gpu_args *g, __u32 n)
{
	return g->a[n & 7];
}

/* cudaMemcpyKind -> CM_COPY_* */
static __always_inline __u32 rt_copy_kind(__u64 k)
{
	switch (k) {
	case 0: return CM_COPY_HTOH;
	case 1: return CM_COPY_HTOD;
	case 2: return CM_COPY_DTOH;
	case 3: return CM_COPY_DTOD;
	case 4: return CM_COPY_DEFAULT;
	default: return CM_COPY_UNKNOWN;
	}
}

static __always_inline bool is_pinned(__u32 pid, __u64 addr)
{
	struct cm_gpu_pinned *pin = bpf_map_lookup_elem(&gpu_pinned, &pid);

	if (!pin || !addr)
		return false;
	for (int i = 0; i < CM_GPU_PINNED_SLOTS; i++)
		if (pin->len[i] && addr >= pin->start[i] && addr - pin->start[i] < pin->len[i])
			return true;
	return false;
}

static __always_inline void pinned_add(__u32 pid, __u64 start, __u64 len)
{
	struct cm_gpu_pinned *pin;

	if (!start || !len)
		return;
	pin = lookup_or_init(&gpu_pinned, &pid, (void *)&zero_gpu_pinned, &gpu_counters.pinned_full);
	if (!pin)
		return;
	for (int i = 0; i < CM_GPU_PINNED_SLOTS; i++) {
		if (!pin->len[i]) {
			pin->start[i] = start;
			pin->len[i] = len;
			return;
		}
	}
	__sync_fetch_and_add(&gpu_counters.pinned_full, 1);
}

static __always_inline void pinned_del(__u32 pid, __u64 start)
{
	struct cm_gpu_pinned *pin = bpf_map_lookup_elem(&gpu_pinned, &pid);

	if (!pin)
		return;
	for (int i = 0; i < CM_GPU_PINNED_SLOTS; i++)
		if (pin->len[i] && pin->start[i] == start)
			pin->len[i] = 0;
}

SEC("uprobe")
int gpu_api_enter(struct pt_regs *ctx)
{
	struct cm_thread *t = thread_of((__u32)bpf_get_current_pid_tgid());
	__u64 sp = PT_REGS_SP(ctx);
	struct gpu_args g;
	__u64 cookie, now;
	__u32 karg, parg;

	if (!t)
		return 0;
	/*
	 * A runtime call reaches the driver through its probed functions too:
	 * only the outermost call is timed, so each call counts once. A call
	 * deeper on the stack than the one in flight is nested in it; one at
	 * the same depth or above means that call returned unseen (its return
	 * probe was not in place yet, or it left by longjmp): start afresh.
	 */
	if (t->gpu_depth > 0 && sp < t->gpu_sp) {
		t->gpu_depth++;
		return 0;
	}
	if (t->gpu_depth > 0 && t->gpu_sync)
		sync_end(t, bpf_ktime_get_ns());
	t->gpu_depth = 1;
	t->gpu_sp = sp;
	cookie = bpf_get_attach_cookie(ctx);
	now = bpf_ktime_get_ns();
	read_args(ctx, &g);
	t->gpu_cookie = cookie;
	t->gpu_ts = now;
	t->gpu_bytes = CM_GPU_CK_BYTES_ARG(cookie) ?
		arg_n(&g, CM_GPU_CK_BYTES_ARG(cookie)) << CM_GPU_CK_BYTES_SHIFT(cookie) : 0;
	karg = CM_GPU_CK_KIND_ARG(cookie);
	parg = CM_GPU_CK_PTR_ARG(cookie);
	t->gpu_kind = karg ? rt_copy_kind(arg_n(&g, karg)) : CM_GPU_CK_KIND(cookie);
	t->gpu_ptr = parg ? arg_n(&g, parg) : 0;
	/* cudaMemcpy(dst, src, count, kind): the host side is dst for DtoH */
	if (karg && parg)
		t->gpu_ptr = arg_n(&g, t->gpu_kind == CM_COPY_DTOH ? 1 : 2);
	if (CM_GPU_CK_CLASS(cookie) == CM_GPU_CLASS_SYNC)
		sync_begin(t, now);
	return 0;
}

SEC("uretprobe")
int gpu_api_exit(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct cm_thread *t = thread_of((__u32)id);
	__u32 pid = id >> 32, api, cls, status;
	struct cm_gpu_proc *p;
	__u64 now, d, cookie;

	if (!t || !t->gpu_depth)
		return 0;
	if (--t->gpu_depth)
		return 0;
	now = bpf_ktime_get_ns();
	cookie = t->gpu_cookie;
	api = CM_GPU_CK_API(cookie);
	cls = CM_GPU_CK_CLASS(cookie);
	status = (__u32)PT_REGS_RC(ctx);	/* CUresult / cudaError_t */
	d = now - t->gpu_ts;
	if (api >= CM_GA_COUNT)
		return 0;
	api_add(pid, api, CM_GPU_TIER_UPROBES, d, cls == CM_GPU_CLASS_FREE ? 0 : t->gpu_bytes, status);
	p = proc_of(pid);
	if (p && p->tier == CM_GPU_TIER_NONE)
		p->tier = CM_GPU_TIER_UPROBES;

	switch (cls) {
	case CM_GPU_CLASS_SYNC:
		sync_end(t, now);
		break;
	case CM_GPU_CLASS_COPY:
	case CM_GPU_CLASS_MEMSET: {
		struct cm_gpu_copy_key key = {
			.pid = pid,
			.op = cls == CM_GPU_CLASS_COPY ? CM_GPU_OP_COPY : CM_GPU_OP_MEMSET,
			.kind = cls == CM_GPU_CLASS_COPY ? t->gpu_kind : CM_COPY_UNKNOWN,
			.tier = CM_GPU_TIER_UPROBES,
		};
		__u8 host = is_pinned(pid, t->gpu_ptr) ? CM_MEM_PINNED :
			    t->gpu_ptr ? CM_MEM_PAGEABLE : CM_MEM_UNKNOWN;

		if (status)
			break;	/* a failed call moved nothing */
		if (key.kind == CM_COPY_HTOD) {
			key.src_mem = host;
			key.dst_mem = CM_MEM_DEVICE;
		} else if (key.kind == CM_COPY_DTOH) {
			key.src_mem = CM_MEM_DEVICE;
			key.dst_mem = host;
		} else if (key.kind == CM_COPY_DTOD || key.kind == CM_COPY_PTOP) {
			key.src_mem = key.dst_mem = CM_MEM_DEVICE;
		} else if (key.op == CM_GPU_OP_MEMSET) {
			key.dst_mem = CM_MEM_DEVICE;
		}
		copy_add(&key, 1, t->gpu_bytes, d, true);
		break;
	}
	case CM_GPU_CLASS_ALLOC:
		if (status)
			break;
		/* pinned host memory: cuMemAllocHost/cuMemHostAlloc/cudaMallocHost/
		 * cudaHostAlloc return it through their first argument (void **);
		 * cuMemHostRegister/cudaHostRegister take it as the pointer itself */
		if (api == CM_GA_cuMemAllocHost || api == CM_GA_cuMemHostAlloc ||
		    api == CM_GA_cudaMallocHost || api == CM_GA_cudaHostAlloc) {
			__u64 host = 0;

			if (t->gpu_ptr && !bpf_probe_read_user(&host, sizeof(host), (void *)t->gpu_ptr))
				pinned_add(pid, host, t->gpu_bytes);
		} else if (api == CM_GA_cuMemHostRegister || api == CM_GA_cudaHostRegister) {
			pinned_add(pid, t->gpu_ptr, t->gpu_bytes);
		}
		break;
	case CM_GPU_CLASS_FREE:
		if (api == CM_GA_cuMemFreeHost || api == CM_GA_cudaFreeHost ||
		    api == CM_GA_cuMemHostUnregister || api == CM_GA_cudaHostUnregister)
			pinned_del(pid, t->gpu_ptr);
		break;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
