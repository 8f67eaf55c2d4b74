// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CUPTI activity records to struct cm_gpu_rec, for the CUPTI agent. CUPTI
 * delivers the record versions of its own release (CUDA 12 or 13); the agent
 * reads only fields that sit at the same offsets in both.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cupti.h>
#include "agent.h"

/* ---- record layouts: the common prefix of CUDA 12 and 13 --------------------------- */

/*
 * Activity records grow new versions (Kernel9 in CUDA 12, Kernel10 in 13),
 * but each keeps the fields the agent reads at the same offsets. These are
 * those prefixes; the asserts hold them to every layout the headers know.
 */
struct pfx_kernel {
	uint32_t kind;
	uint8_t cache_config, shared_mem_config;
	uint16_t registers;
	uint32_t pgc_requested, pgc_executed;
	uint64_t start, end, completed;
	uint32_t device_id, context_id, stream_id;
	int32_t grid[3], block[3];
	int32_t static_smem, dynamic_smem;
	uint32_t local_per_thread, local_total;
	uint32_t correlation_id;
};

struct pfx_memcpy {
	uint32_t kind;
	uint8_t copy_kind, src_kind, dst_kind, flags;
	uint64_t bytes, start, end;
	uint32_t device_id, context_id, stream_id, correlation_id;
};

/* CUPTI_ACTIVITY_KIND_MEMCPY2: a peer-to-peer copy */
struct pfx_ptop {
	uint32_t kind;
	uint8_t copy_kind, src_kind, dst_kind, flags;
	uint64_t bytes, start, end;
	uint32_t device_id, context_id, stream_id;
	uint32_t src_device_id, src_context_id, dst_device_id, dst_context_id;
	uint32_t correlation_id;
};

struct pfx_memset {
	uint32_t kind, value;
	uint64_t bytes, start, end;
	uint32_t device_id, context_id, stream_id, correlation_id;
	uint16_t flags, memory_kind;
};

struct pfx_sync {
	uint32_t kind, type;
	uint64_t start, end;
	uint32_t correlation_id, context_id, stream_id, event_id;
};

struct pfx_overhead {
	uint32_t kind, overhead_kind, object_kind;
	uint32_t object_id[3];
	uint64_t start, end;
};

#define SAME(P, f, T, g) _Static_assert(offsetof(struct P, f) == offsetof(T, g), #T "." #g)
#define KERNEL_PREFIX(T)                                    \
	SAME(pfx_kernel, start, T, start);                  \
	SAME(pfx_kernel, end, T, end);                      \
	SAME(pfx_kernel, device_id, T, deviceId);           \
	SAME(pfx_kernel, stream_id, T, streamId);           \
	SAME(pfx_kernel, correlation_id, T, correlationId)
KERNEL_PREFIX(CUpti_ActivityKernel4);
KERNEL_PREFIX(CUpti_ActivityKernel9);	/* CUDA 12 */
KERNEL_PREFIX(CUpti_ActivityKernel10);	/* CUDA 13 */
/* graphId, 0 unless a graph launched the kernel: past the common prefix, but
 * at one offset in both */
#define KERNEL_GRAPH_ID offsetof(CUpti_ActivityKernel10, graphId)
_Static_assert(offsetof(CUpti_ActivityKernel9, graphId) == KERNEL_GRAPH_ID, "Kernel9.graphId");
#define MEMCPY_PREFIX(T)                                    \
	SAME(pfx_memcpy, copy_kind, T, copyKind);           \
	SAME(pfx_memcpy, src_kind, T, srcKind);             \
	SAME(pfx_memcpy, dst_kind, T, dstKind);             \
	SAME(pfx_memcpy, bytes, T, bytes);                  \
	SAME(pfx_memcpy, start, T, start);                  \
	SAME(pfx_memcpy, end, T, end);                      \
	SAME(pfx_memcpy, device_id, T, deviceId);           \
	SAME(pfx_memcpy, stream_id, T, streamId);           \
	SAME(pfx_memcpy, correlation_id, T, correlationId)
MEMCPY_PREFIX(CUpti_ActivityMemcpy5);	/* CUDA 12 */
MEMCPY_PREFIX(CUpti_ActivityMemcpy6);	/* CUDA 13 */
/* copies in the record (cudaMemcpyBatchAsync batches them): CUDA 13's
 * Memcpy6 only; a CUDA 12 record is one copy */
#define MEMCPY_COPY_COUNT offsetof(CUpti_ActivityMemcpy6, copyCount)
#define PTOP_PREFIX(T)                                      \
	SAME(pfx_ptop, copy_kind, T, copyKind);             \
	SAME(pfx_ptop, src_kind, T, srcKind);               \
	SAME(pfx_ptop, dst_kind, T, dstKind);               \
	SAME(pfx_ptop, bytes, T, bytes);                    \
	SAME(pfx_ptop, start, T, start);                    \
	SAME(pfx_ptop, end, T, end);                        \
	SAME(pfx_ptop, device_id, T, deviceId);             \
	SAME(pfx_ptop, stream_id, T, streamId);             \
	SAME(pfx_ptop, src_device_id, T, srcDeviceId);      \
	SAME(pfx_ptop, dst_device_id, T, dstDeviceId);      \
	SAME(pfx_ptop, correlation_id, T, correlationId)
PTOP_PREFIX(CUpti_ActivityMemcpyPtoP3);
PTOP_PREFIX(CUpti_ActivityMemcpyPtoP4);
#define MEMSET_PREFIX(T)                                    \
	SAME(pfx_memset, bytes, T, bytes);                  \
	SAME(pfx_memset, start, T, start);                  \
	SAME(pfx_memset, end, T, end);                      \
	SAME(pfx_memset, device_id, T, deviceId);           \
	SAME(pfx_memset, stream_id, T, streamId);           \
	SAME(pfx_memset, correlation_id, T, correlationId); \
	SAME(pfx_memset, memory_kind, T, memoryKind)
MEMSET_PREFIX(CUpti_ActivityMemset3);
MEMSET_PREFIX(CUpti_ActivityMemset4);
#define SYNC_PREFIX(T)                                      \
	SAME(pfx_sync, type, T, type);                      \
	SAME(pfx_sync, start, T, start);                    \
	SAME(pfx_sync, end, T, end);                        \
	SAME(pfx_sync, correlation_id, T, correlationId);   \
	SAME(pfx_sync, stream_id, T, streamId)
SYNC_PREFIX(CUpti_ActivitySynchronization);	/* CUDA 12 */
SYNC_PREFIX(CUpti_ActivitySynchronization2);	/* CUDA 13 */
#define OVERHEAD_PREFIX(T)                                  \
	SAME(pfx_overhead, overhead_kind, T, overheadKind); \
	SAME(pfx_overhead, start, T, start);                \
	SAME(pfx_overhead, end, T, end)
OVERHEAD_PREFIX(CUpti_ActivityOverhead2);
OVERHEAD_PREFIX(CUpti_ActivityOverhead3);
_Static_assert(sizeof(struct cm_gpu_rec) == 56, "struct cm_gpu_rec is 56 bytes");

/* CUPTI's timestamp, on CLOCK_MONOTONIC; 0 stays 0 (no timestamp). */
static uint64_t ts(uint64_t t, int64_t offset)
{
	return t ? (uint64_t)((int64_t)t + offset) : 0;
}

int cm_agent_to_rec(const CUpti_Activity *a, struct cm_gpu_rec *r, int64_t offset,
		    uint32_t cupti_version)
{
	memset(r, 0, sizeof(*r));
	switch (a->kind) {
	case CUPTI_ACTIVITY_KIND_KERNEL:
	case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
		const struct pfx_kernel *k = (const void *)a;
		uint32_t graph;

		memcpy(&graph, (const char *)a + KERNEL_GRAPH_ID, sizeof(graph));
		r->type = CM_GPU_REC_KERNEL;
		r->start_ns = ts(k->start, offset);
		r->end_ns = ts(k->end, offset);
		r->device = k->device_id;
		r->stream = k->stream_id;
		r->corr = k->correlation_id;
		if (graph)
			r->flags |= CM_GPU_RF_GRAPH;
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMCPY: {
		const struct pfx_memcpy *m = (const void *)a;
		uint64_t copies = 1;

		if (cupti_version >= 130000)
			memcpy(&copies, (const char *)a + MEMCPY_COPY_COUNT, sizeof(copies));
		r->type = CM_GPU_REC_COPY;
		r->copy_kind = m->copy_kind;
		r->src_mem = m->src_kind;
		r->dst_mem = m->dst_kind;
		r->bytes = m->bytes;
		r->start_ns = ts(m->start, offset);
		r->end_ns = ts(m->end, offset);
		r->device = m->device_id;
		r->stream = m->stream_id;
		r->corr = m->correlation_id;
		r->status = copies > UINT32_MAX ? UINT32_MAX : (uint32_t)copies;
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMCPY2: {
		const struct pfx_ptop *m = (const void *)a;

		r->type = CM_GPU_REC_COPY;
		r->copy_kind = CM_COPY_PTOP;
		r->src_mem = m->src_kind;
		r->dst_mem = m->dst_kind;
		r->bytes = m->bytes;
		r->start_ns = ts(m->start, offset);
		r->end_ns = ts(m->end, offset);
		r->device = m->device_id;
		r->stream = m->stream_id;
		r->corr = m->correlation_id;
		r->status = 1;
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMSET: {
		const struct pfx_memset *m = (const void *)a;

		r->type = CM_GPU_REC_MEMSET;
		r->dst_mem = (uint8_t)m->memory_kind;
		r->bytes = m->bytes;
		r->start_ns = ts(m->start, offset);
		r->end_ns = ts(m->end, offset);
		r->device = m->device_id;
		r->stream = m->stream_id;
		r->corr = m->correlation_id;
		break;
	}
	case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
		const struct pfx_sync *s = (const void *)a;

		r->type = CM_GPU_REC_SYNC;
		r->sync_type = s->type < CM_GPU_SYNC_TYPES ? (uint8_t)s->type : 0;
		r->start_ns = ts(s->start, offset);
		r->end_ns = ts(s->end, offset);
		r->stream = s->stream_id;
		r->corr = s->correlation_id;
		break;
	}
	case CUPTI_ACTIVITY_KIND_OVERHEAD: {
		const struct pfx_overhead *o = (const void *)a;

		r->type = CM_GPU_REC_OVERHEAD;
		r->sync_type = (uint8_t)o->overhead_kind;
		r->start_ns = ts(o->start, offset);
		r->end_ns = ts(o->end, offset);
		break;
	}
	default:
		return 0;
	}
	if (!r->start_ns && !r->end_ns)
		r->flags |= CM_GPU_RF_NOTIME;
	return 1;
}
