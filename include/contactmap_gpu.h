/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * GPU records and maps, shared by the CUPTI agent (agent/cupti_agent.c), the
 * BPF side (bpf/gpu.bpf.c) and user space (src/gpu.c). Plain __u8..__u64 only.
 *
 * Two tiers produce the same records and map entries:
 *  - cupti: the agent, injected with CUDA_INJECTION64_PATH, turns CUPTI
 *    callbacks and activity records into struct cm_gpu_rec and passes them,
 *    up to CM_GPU_BATCH at a time, to contactmap_gpu_hook(), a no-op function
 *    of its own that a BPF uprobe reads;
 *  - uprobes: BPF uprobes and uretprobes on the CUDA driver and runtime
 *    libraries a process has mapped (API spans, no device times).
 */
#ifndef CONTACTMAP_GPU_H
#define CONTACTMAP_GPU_H

#include "contactmap.h"	/* CM_HIST_SLOTS; <linux/types.h> outside BPF */

/* Records per hook call: 64 x 56 bytes, read by one bpf_probe_read_user. */
#define CM_GPU_BATCH 64
/* Bumped when struct cm_gpu_rec changes; the agent sends it in its INFO record. */
#define CM_GPU_REC_VERSION 2
#define CM_GPU_HOOK_SYMBOL "contactmap_gpu_hook"

/*
 * The CUDA calls contactmap times, one id per function family (the _v2,
 * _ptsz and _ptds variants of a function share its id). X(name, class, lib):
 * class says what the call does, lib which library exports it.
 */
#define CM_GPU_APIS(X)                                   \
	X(cuLaunchKernel, LAUNCH, DRV)                   \
	X(cuLaunchKernelEx, LAUNCH, DRV)                 \
	X(cuLaunchCooperativeKernel, LAUNCH, DRV)        \
	X(cuGraphLaunch, GRAPH, DRV)                     \
	X(cuMemcpy, COPY, DRV)                           \
	X(cuMemcpyAsync, COPY, DRV)                      \
	X(cuMemcpyHtoD, COPY, DRV)                       \
	X(cuMemcpyHtoDAsync, COPY, DRV)                  \
	X(cuMemcpyDtoH, COPY, DRV)                       \
	X(cuMemcpyDtoHAsync, COPY, DRV)                  \
	X(cuMemcpyDtoD, COPY, DRV)                       \
	X(cuMemcpyDtoDAsync, COPY, DRV)                  \
	X(cuMemcpyPeer, COPY, DRV)                       \
	X(cuMemcpyPeerAsync, COPY, DRV)                  \
	X(cuMemcpy2D, COPY, DRV)                         \
	X(cuMemcpy2DAsync, COPY, DRV)                    \
	X(cuMemcpyBatchAsync, COPY, DRV)                 \
	X(cuMemsetD8, MEMSET, DRV)                       \
	X(cuMemsetD16, MEMSET, DRV)                      \
	X(cuMemsetD32, MEMSET, DRV)                      \
	X(cuMemsetD8Async, MEMSET, DRV)                  \
	X(cuMemsetD16Async, MEMSET, DRV)                 \
	X(cuMemsetD32Async, MEMSET, DRV)                 \
	X(cuCtxSynchronize, SYNC, DRV)                   \
	X(cuStreamSynchronize, SYNC, DRV)                \
	X(cuEventSynchronize, SYNC, DRV)                 \
	X(cuMemAlloc, ALLOC, DRV)                        \
	X(cuMemAllocHost, ALLOC, DRV)                    \
	X(cuMemHostAlloc, ALLOC, DRV)                    \
	X(cuMemAllocManaged, ALLOC, DRV)                 \
	X(cuMemAllocAsync, ALLOC, DRV)                   \
	X(cuMemHostRegister, ALLOC, DRV)                 \
	X(cuMemFree, FREE, DRV)                          \
	X(cuMemFreeAsync, FREE, DRV)                     \
	X(cuMemFreeHost, FREE, DRV)                      \
	X(cuMemHostUnregister, FREE, DRV)                \
	X(cudaLaunchKernel, LAUNCH, RT)                  \
	X(cudaLaunchKernelExC, LAUNCH, RT)               \
	X(cudaLaunchCooperativeKernel, LAUNCH, RT)       \
	X(cudaGraphLaunch, GRAPH, RT)                    \
	X(cudaMemcpy, COPY, RT)                          \
	X(cudaMemcpyAsync, COPY, RT)                     \
	X(cudaMemcpyPeer, COPY, RT)                      \
	X(cudaMemcpyPeerAsync, COPY, RT)                 \
	X(cudaMemcpy2D, COPY, RT)                        \
	X(cudaMemcpy2DAsync, COPY, RT)                   \
	X(cudaMemcpyBatchAsync, COPY, RT)                \
	X(cudaMemset, MEMSET, RT)                        \
	X(cudaMemsetAsync, MEMSET, RT)                   \
	X(cudaDeviceSynchronize, SYNC, RT)               \
	X(cudaStreamSynchronize, SYNC, RT)               \
	X(cudaEventSynchronize, SYNC, RT)                \
	X(cudaMalloc, ALLOC, RT)                         \
	X(cudaMallocHost, ALLOC, RT)                     \
	X(cudaHostAlloc, ALLOC, RT)                      \
	X(cudaMallocManaged, ALLOC, RT)                  \
	X(cudaMallocAsync, ALLOC, RT)                    \
	X(cudaHostRegister, ALLOC, RT)                   \
	X(cudaFree, FREE, RT)                            \
	X(cudaFreeAsync, FREE, RT)                       \
	X(cudaFreeHost, FREE, RT)                        \
	X(cudaHostUnregister, FREE, RT)

#define CM_GPU_API_ENUM_(name, cls, lib) CM_GA_##name,
enum cm_gpu_api {
	CM_GA_NONE = 0,
	CM_GPU_APIS(CM_GPU_API_ENUM_)
	CM_GA_COUNT
};
#undef CM_GPU_API_ENUM_

enum cm_gpu_class {
	CM_GPU_CLASS_OTHER = 0,
	CM_GPU_CLASS_LAUNCH = 1,
	CM_GPU_CLASS_GRAPH = 2,
	CM_GPU_CLASS_COPY = 3,
	CM_GPU_CLASS_MEMSET = 4,
	CM_GPU_CLASS_SYNC = 5,
	CM_GPU_CLASS_ALLOC = 6,
	CM_GPU_CLASS_FREE = 7,
};

#define CM_GPU_LIB_DRV 1
#define CM_GPU_LIB_RT 2

/* Copy directions: the numbering of CUpti_ActivityMemcpyKind, plus DEFAULT
 * for cuMemcpy/cudaMemcpyDefault (direction from unified addressing). */
#define CM_COPY_UNKNOWN 0
#define CM_COPY_HTOD 1
#define CM_COPY_DTOH 2
#define CM_COPY_HTOA 3
#define CM_COPY_ATOH 4
#define CM_COPY_ATOA 5
#define CM_COPY_ATOD 6
#define CM_COPY_DTOA 7
#define CM_COPY_DTOD 8
#define CM_COPY_HTOH 9
#define CM_COPY_PTOP 10
#define CM_COPY_DEFAULT 11
#define CM_COPY_NKINDS 12

/* Memory kinds: the numbering of CUpti_ActivityMemoryKind. */
#define CM_MEM_UNKNOWN 0
#define CM_MEM_PAGEABLE 1
#define CM_MEM_PINNED 2
#define CM_MEM_DEVICE 3
#define CM_MEM_ARRAY 4
#define CM_MEM_MANAGED 5
#define CM_MEM_DEVICE_STATIC 6
#define CM_MEM_MANAGED_STATIC 7
#define CM_MEM_NKINDS 8

/* Record types. */
#define CM_GPU_REC_API 1	/* an API call: api, tid, start/end, bytes, copy_kind, status */
#define CM_GPU_REC_SYNC_BEGIN 2	/* a synchronize call starts on this thread (sent at once) */
#define CM_GPU_REC_KERNEL 3	/* device: start/end, device, stream, corr */
#define CM_GPU_REC_COPY 4	/* device: copy_kind, src_mem, dst_mem, bytes, start/end;
				 * status = copies in the record (batched copies), 0 = 1 */
#define CM_GPU_REC_MEMSET 5	/* device: dst_mem, bytes, start/end */
#define CM_GPU_REC_SYNC 6	/* CUPTI synchronization record: sync_type, start/end */
#define CM_GPU_REC_OVERHEAD 7	/* CUPTI's own overhead: start/end */
#define CM_GPU_REC_INFO 8	/* agent state: status, flags, start_ns = clock offset,
				 * end_ns = when the status last changed, bytes = clock skew
				 * seen on sync records (signed), corr = cuptiGetVersion,
				 * stream = cuDriverGetVersion */
#define CM_GPU_REC_DROPPED 9	/* bytes = records CUPTI dropped since the last one */
#define CM_GPU_REC_OBSERVER 10	/* thread tid (of the caller's process) is the agent's or
				 * CUPTI's own: observer cost */
#define CM_GPU_REC_SYNC_END 11	/* a synchronize call inside another call ends (no API row) */

/* flags of a record */
#define CM_GPU_RF_SYNC 1	/* API record of a synchronize call: ends GPU wait */
#define CM_GPU_RF_GRAPH 2	/* device record of work launched by a graph */
#define CM_GPU_RF_NOTIME 4	/* CUPTI gave no timestamps (start = end = 0) */
#define CM_GPU_RF_CLOCK_CB 8	/* INFO: CUPTI timestamps come from CLOCK_MONOTONIC */
#define CM_GPU_RF_CLOCK_CAL 16	/* INFO: CUPTI's clock, shifted by a calibrated offset */
#define CM_GPU_RF_FINAL 32	/* INFO: the agent's last flush (at exit) */
#define CM_GPU_RF_CLOCK_AGREES 64	/* INFO: sync records lie inside their calls' spans */
#define CM_GPU_RF_CLOCK_DISAGREES 128	/* INFO: sync records lie far outside them (bytes = skew) */

/* The agent's state (status of an INFO record). */
#define CM_GPU_ST_NONE 0
#define CM_GPU_ST_CUPTI 1	/* CUPTI subscribed: the cupti tier */
#define CM_GPU_ST_MULTISUB 2	/* another profiler holds CUPTI: uprobe tier */
#define CM_GPU_ST_NO_CUPTI 3	/* libcupti not found or too old: uprobe tier */
#define CM_GPU_ST_CUPTI_ERROR 4	/* CUPTI failed otherwise: uprobe tier */
#define CM_GPU_ST_FORCED 5	/* --gpu=uprobes: uprobe tier asked for */
#define CM_GPU_ST_TAKEN_OVER 6	/* cupti tier, but another CUPTI client (torch.profiler's
				 * kineto) took the activity records over at end_ns:
				 * no device records after it */

#define CM_GPU_TIER_NONE 0
#define CM_GPU_TIER_CUPTI 1
#define CM_GPU_TIER_UPROBES 2

struct cm_gpu_rec {
	__u16 type;		/* CM_GPU_REC_* */
	__u16 api;		/* enum cm_gpu_api (API records) */
	__u32 flags;		/* CM_GPU_RF_* */
	__u32 tid;		/* host thread of an API record */
	__u32 corr;		/* CUPTI correlation id (informational) */
	__u64 start_ns;		/* CLOCK_MONOTONIC */
	__u64 end_ns;
	__u64 bytes;
	__u32 device;
	__u32 stream;
	__u8 copy_kind;		/* CM_COPY_* */
	__u8 src_mem;		/* CM_MEM_* */
	__u8 dst_mem;
	__u8 sync_type;		/* CUpti_ActivitySynchronizationType; overhead kind */
	__u32 status;		/* API: return value; INFO: CM_GPU_ST_*; COPY: copy count */
};

/*
 * uprobe attach cookie: what the BPF program needs to know about the probed
 * function (one generic entry and one generic return program serve all).
 */
#define CM_GPU_CK_API(c) ((c) & 0xff)			/* enum cm_gpu_api */
#define CM_GPU_CK_CLASS(c) (((c) >> 8) & 0xf)		/* enum cm_gpu_class */
#define CM_GPU_CK_BYTES_ARG(c) (((c) >> 12) & 0xf)	/* 1-based argument with the size */
#define CM_GPU_CK_BYTES_SHIFT(c) (((c) >> 16) & 0x3)	/* size = arg << shift (memsetD16/32) */
#define CM_GPU_CK_KIND_ARG(c) (((c) >> 20) & 0xf)	/* 1-based cudaMemcpyKind argument */
#define CM_GPU_CK_KIND(c) (((c) >> 24) & 0xf)		/* fixed CM_COPY_* */
#define CM_GPU_CK_PTR_ARG(c) (((c) >> 28) & 0xf)	/* 1-based pointer argument (host memory) */
#define CM_GPU_COOKIE(api, cls, barg, bshift, karg, kind, parg)                         \
	((__u64)(api) | ((__u64)(cls) << 8) | ((__u64)(barg) << 12) | ((__u64)(bshift) << 16) | \
	 ((__u64)(karg) << 20) | ((__u64)(kind) << 24) | ((__u64)(parg) << 28))

/* ---- maps ------------------------------------------------------------------- */

struct cm_gpu_api_key {
	__u32 pid;
	__u16 api;
	__u8 tier;		/* CM_GPU_TIER_* that saw it */
	__u8 pad;
};

struct cm_gpu_api_stat {
	__u64 count;
	__u64 errors;		/* nonzero return value */
	__u64 total_ns;
	__u64 max_ns;
	__u64 bytes;		/* copies, memsets, allocations */
	__u64 hist[CM_HIST_SLOTS];
};

struct cm_gpu_kern_key {
	__u32 pid;
	__u32 device;
	__u32 stream;
	__u32 graph;		/* 1: launched by a graph */
};

struct cm_gpu_kern_stat {
	__u64 count;
	__u64 total_ns;		/* device time */
	__u64 max_ns;
	__u64 untimed;		/* records without timestamps: counted, not timed */
};

#define CM_GPU_OP_COPY 0
#define CM_GPU_OP_MEMSET 1

struct cm_gpu_copy_key {
	__u32 pid;
	__u8 op;		/* CM_GPU_OP_* */
	__u8 kind;		/* CM_COPY_* */
	__u8 src_mem;		/* CM_MEM_* */
	__u8 dst_mem;
	__u8 tier;		/* cupti: device time; uprobes: API span */
	__u8 pad[3];
};

struct cm_gpu_copy_stat {
	__u64 count;
	__u64 bytes;
	__u64 total_ns;
	__u64 max_ns;
	__u64 untimed;
};

#define CM_GPU_SYNC_TYPES 5	/* CUpti_ActivitySynchronizationType 0..4 */

/* Per process: the agent's state and the counters of its records. */
struct cm_gpu_proc {
	__u32 tier;		/* CM_GPU_TIER_* */
	__u32 status;		/* CM_GPU_ST_* from the agent */
	__u32 info_flags;	/* CM_GPU_RF_CLOCK_* */
	__u32 rec_version;	/* the agent's CM_GPU_REC_VERSION */
	__s64 clock_offset_ns;	/* added to CUPTI timestamps (0 when CLOCK_CB) */
	__u64 hook_calls;
	__u64 records;
	__u64 bad_records;	/* unknown type or version */
	__u64 dropped;		/* CUPTI's dropped-record count */
	__u64 untimed;		/* device records without timestamps */
	__u64 overhead_count;
	__u64 overhead_ns;
	__u64 sync_rec_count[CM_GPU_SYNC_TYPES];
	__u64 sync_rec_ns[CM_GPU_SYNC_TYPES];
	__u64 graph_kernels;	/* kernel records launched by graphs */
	__u64 uprobe_requests;	/* times the agent asked for the uprobe tier */
	__u64 final_seen;	/* the agent's exit flush arrived */
	__u64 status_ns;	/* when the agent's status last changed (taken over) */
	__s64 clock_skew_ns;	/* sync records vs their calls' spans, when they disagree */
	__u32 cupti_version;	/* cuptiGetVersion of the libcupti in use */
	__u32 driver_version;	/* cuDriverGetVersion */
};

/* Host memory ranges pinned by the CUDA calls the uprobes saw, per process:
 * a copy from or to one of them is a pinned copy. */
#define CM_GPU_PINNED_SLOTS 16
struct cm_gpu_pinned {
	__u64 start[CM_GPU_PINNED_SLOTS];
	__u64 len[CM_GPU_PINNED_SLOTS];
};

/* Drops of the GPU maps (.bss), reported under "lost". */
struct cm_gpu_counters {
	__u64 api_full;
	__u64 kern_full;
	__u64 copy_full;
	__u64 procs_full;
	__u64 pinned_full;
	__u64 bad_batches;	/* unreadable or oversized hook batches */
	__u64 events_full;
};

/* Ring buffer message: the agent of pid asks for the uprobe tier. */
struct cm_gpu_event {
	__u32 pid;
	__u32 status;
};

#endif /* CONTACTMAP_GPU_H */
