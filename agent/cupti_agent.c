// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libcontactmap-cupti.so: contactmap's CUPTI agent.
 *
 * contactmap sets CUDA_INJECTION64_PATH to this library when it wraps a
 * command; the CUDA driver loads it in cuInit and calls InitializeInjection().
 * The agent loads libcupti with dlopen (no link-time dependency; a copy the
 * program already mapped is reused), moves CUPTI's timestamps to
 * CLOCK_MONOTONIC, subscribes to the runtime and driver calls that matter
 * and enables activity records for kernels, copies, memsets, synchronization
 * and CUPTI's own overhead. Everything it learns goes out as struct
 * cm_gpu_rec batches through contactmap_gpu_hook(), a function that does
 * nothing: contactmap reads its arguments with a BPF uprobe, so GPU events
 * share the maps, the clock and the host pid/tid of all the rest.
 *
 * Batching: API records collect per thread (up to CM_GPU_BATCH) and go out
 * when the batch is full, at every synchronize call, every flush period, at
 * thread exit and at process exit; activity records go out as CUPTI
 * completes its buffers. A synchronize call is announced at its start, at
 * once, so that the scheduler's view of the thread during the call becomes
 * GPU wait.
 *
 * When CUPTI cannot be used (not found, or another profiler holds it) the
 * agent says so, asks contactmap for the uprobe tier and waits (bounded)
 * until the driver carries the uprobes, then lets the program go on.
 *
 * Environment: CONTACTMAP_GPU (set by contactmap: "cupti" or "uprobes"; without
 * it the agent stays idle),
 * CONTACTMAP_CUPTI_LIB (a libcupti to load), CONTACTMAP_GPU_WAIT_MS (how long
 * to wait for uprobes, 2000), CONTACTMAP_CUPTI_FLUSH_MS (200),
 * CONTACTMAP_CUPTI_BUFFER_KB (1024), CONTACTMAP_AGENT_DEBUG.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cupti.h>
#include "contactmap_gpu.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- the hook ----------------------------------------------------------------- */

/*
 * contactmap's uprobe sits on this function's first instruction and reads
 * (recs, n) from the argument registers. noinline and the asm keep the call
 * and the arguments real; the function itself costs a call and a return.
 * It starts with a 5-byte nop, as USDT probes do: the kernel emulates a
 * probed nop (and from 6.17 on x86 can turn a nop5 probe into a call,
 * without a trap), where the bare `ret` the compiler would emit has to be
 * single-stepped out of line, a second trap.
 */
EXPORT __attribute__((noinline, used)) void contactmap_gpu_hook(const struct cm_gpu_rec *recs,
								 unsigned n)
{
#if defined(__x86_64__)
	__asm__ volatile(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00" : : "r"(recs), "r"(n) : "memory");
#else
	__asm__ volatile("nop" : : "r"(recs), "r"(n) : "memory");
#endif
}

/*
 * Never called: when the agent asked for the uprobe tier, contactmap places a
 * uprobe here after the CUDA libraries' ones, and its int3 tells the agent
 * that they are all in place.
 */
EXPORT __attribute__((noinline, used)) void contactmap_gpu_ready(void)
{
	__asm__ volatile("" : : : "memory");
}

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

/* ---- CUPTI, loaded at run time ------------------------------------------------------- */

static struct {
	void *lib;
	CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
	CUptiResult (*unsubscribe)(CUpti_SubscriberHandle);
	CUptiResult (*enable_callback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
				       CUpti_CallbackId);
	CUptiResult (*activity_enable)(CUpti_ActivityKind);
	CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc,
					  CUpti_BuffersCallbackCompleteFunc);
	CUptiResult (*flush_all)(uint32_t);
	CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
	CUptiResult (*result_string)(CUptiResult, const char **);
	/* optional */
	CUptiResult (*register_timestamp)(CUpti_TimestampCallbackFunc);
	CUptiResult (*get_timestamp)(uint64_t *);
	CUptiResult (*set_thread_id_type)(CUpti_ActivityThreadIdType);
	CUptiResult (*flush_period)(uint32_t);
	CUptiResult (*dropped)(CUcontext, uint32_t, size_t *);
} C;

static CUpti_SubscriberHandle subscriber;
static int64_t clock_offset;	/* added to CUPTI timestamps */
static uint32_t info_flags;	/* CM_GPU_RF_CLOCK_* */
static uint32_t status = CM_GPU_ST_NONE;
static int debug;
static size_t buffer_bytes = 1 << 20;
static uint64_t dropped_total;

#define dbg(...) do { if (debug) fprintf(stderr, "contactmap-cupti: " __VA_ARGS__); } while (0)

static const char *cupti_err(CUptiResult r)
{
	const char *s = NULL;

	if (C.result_string && C.result_string(r, &s) == CUPTI_SUCCESS && s)
		return s;
	return "unknown CUPTI error";
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t CUPTIAPI mono_cb(void)
{
	return mono_ns();
}

static uint32_t gettid_(void)
{
	return (uint32_t)syscall(SYS_gettid);
}

/* ---- API ids from CUPTI callback ids ---------------------------------------------------- */

#define RT(cb, api) { CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_##cb, CM_GA_##api }
#define DRV(cb, api) { CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_##cb, CM_GA_##api }
static const struct {
	CUpti_CallbackDomain domain;
	CUpti_CallbackId cbid;
	enum cm_gpu_api api;
} cbmap[] = {
	RT(cudaLaunchKernel_v7000, cudaLaunchKernel), RT(cudaLaunchKernel_ptsz_v7000, cudaLaunchKernel),
	RT(cudaLaunchKernelExC_v11060, cudaLaunchKernelExC),
	RT(cudaLaunchKernelExC_ptsz_v11060, cudaLaunchKernelExC),
	RT(cudaLaunchCooperativeKernel_v9000, cudaLaunchCooperativeKernel),
	RT(cudaLaunchCooperativeKernel_ptsz_v9000, cudaLaunchCooperativeKernel),
	RT(cudaGraphLaunch_v10000, cudaGraphLaunch), RT(cudaGraphLaunch_ptsz_v10000, cudaGraphLaunch),
	RT(cudaMemcpy_v3020, cudaMemcpy), RT(cudaMemcpy_ptds_v7000, cudaMemcpy),
	RT(cudaMemcpyAsync_v3020, cudaMemcpyAsync), RT(cudaMemcpyAsync_ptsz_v7000, cudaMemcpyAsync),
	RT(cudaMemset_v3020, cudaMemset), RT(cudaMemset_ptds_v7000, cudaMemset),
	RT(cudaMemsetAsync_v3020, cudaMemsetAsync), RT(cudaMemsetAsync_ptsz_v7000, cudaMemsetAsync),
	RT(cudaDeviceSynchronize_v3020, cudaDeviceSynchronize),
	RT(cudaStreamSynchronize_v3020, cudaStreamSynchronize),
	RT(cudaStreamSynchronize_ptsz_v7000, cudaStreamSynchronize),
	RT(cudaEventSynchronize_v3020, cudaEventSynchronize),
	RT(cudaMalloc_v3020, cudaMalloc), RT(cudaMallocHost_v3020, cudaMallocHost),
	RT(cudaHostAlloc_v3020, cudaHostAlloc), RT(cudaMallocManaged_v6000, cudaMallocManaged),
	RT(cudaMallocAsync_v11020, cudaMallocAsync), RT(cudaMallocAsync_ptsz_v11020, cudaMallocAsync),
	RT(cudaHostRegister_v4000, cudaHostRegister), RT(cudaFree_v3020, cudaFree),
	RT(cudaFreeHost_v3020, cudaFreeHost), RT(cudaHostUnregister_v4000, cudaHostUnregister),

	DRV(cuLaunchKernel, cuLaunchKernel), DRV(cuLaunchKernel_ptsz, cuLaunchKernel),
	DRV(cuLaunchKernelEx, cuLaunchKernelEx), DRV(cuLaunchKernelEx_ptsz, cuLaunchKernelEx),
	DRV(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel),
	DRV(cuLaunchCooperativeKernel_ptsz, cuLaunchCooperativeKernel),
	DRV(cuGraphLaunch, cuGraphLaunch), DRV(cuGraphLaunch_ptsz, cuGraphLaunch),
	DRV(cuMemcpy, cuMemcpy), DRV(cuMemcpy_ptds, cuMemcpy),
	DRV(cuMemcpyAsync, cuMemcpyAsync), DRV(cuMemcpyAsync_ptsz, cuMemcpyAsync),
	DRV(cuMemcpyHtoD_v2, cuMemcpyHtoD), DRV(cuMemcpyHtoD_v2_ptds, cuMemcpyHtoD),
	DRV(cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync), DRV(cuMemcpyHtoDAsync_v2_ptsz, cuMemcpyHtoDAsync),
	DRV(cuMemcpyDtoH_v2, cuMemcpyDtoH), DRV(cuMemcpyDtoH_v2_ptds, cuMemcpyDtoH),
	DRV(cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync), DRV(cuMemcpyDtoHAsync_v2_ptsz, cuMemcpyDtoHAsync),
	DRV(cuMemcpyDtoD_v2, cuMemcpyDtoD), DRV(cuMemcpyDtoD_v2_ptds, cuMemcpyDtoD),
	DRV(cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync), DRV(cuMemcpyDtoDAsync_v2_ptsz, cuMemcpyDtoDAsync),
	DRV(cuMemsetD8_v2, cuMemsetD8), DRV(cuMemsetD8_v2_ptds, cuMemsetD8),
	DRV(cuMemsetD16_v2, cuMemsetD16), DRV(cuMemsetD16_v2_ptds, cuMemsetD16),
	DRV(cuMemsetD32_v2, cuMemsetD32), DRV(cuMemsetD32_v2_ptds, cuMemsetD32),
	DRV(cuMemsetD8Async, cuMemsetD8Async), DRV(cuMemsetD8Async_ptsz, cuMemsetD8Async),
	DRV(cuMemsetD16Async, cuMemsetD16Async), DRV(cuMemsetD16Async_ptsz, cuMemsetD16Async),
	DRV(cuMemsetD32Async, cuMemsetD32Async), DRV(cuMemsetD32Async_ptsz, cuMemsetD32Async),
	DRV(cuCtxSynchronize, cuCtxSynchronize), DRV(cuStreamSynchronize, cuStreamSynchronize),
	DRV(cuStreamSynchronize_ptsz, cuStreamSynchronize), DRV(cuEventSynchronize, cuEventSynchronize),
	DRV(cuMemAlloc_v2, cuMemAlloc), DRV(cuMemAllocHost_v2, cuMemAllocHost),
	DRV(cuMemHostAlloc, cuMemHostAlloc), DRV(cuMemAllocManaged, cuMemAllocManaged),
	DRV(cuMemAllocAsync, cuMemAllocAsync), DRV(cuMemAllocAsync_ptsz, cuMemAllocAsync),
	DRV(cuMemHostRegister_v2, cuMemHostRegister), DRV(cuMemFree_v2, cuMemFree),
	DRV(cuMemFreeHost, cuMemFreeHost), DRV(cuMemHostUnregister, cuMemHostUnregister),
};
#undef RT
#undef DRV

static unsigned char rt_api[CUPTI_RUNTIME_TRACE_CBID_SIZE];
static unsigned char drv_api[CUPTI_DRIVER_TRACE_CBID_SIZE];
_Static_assert(CM_GA_COUNT < 256, "API ids fit a byte");

static const unsigned char api_class[CM_GA_COUNT] = {
#define X(n, c, l) [CM_GA_##n] = CM_GPU_CLASS_##c,
	CM_GPU_APIS(X)
#undef X
};

/* cudaMemcpyKind -> CM_COPY_* */
static uint8_t rt_kind(int k)
{
	static const uint8_t m[] = { CM_COPY_HTOH, CM_COPY_HTOD, CM_COPY_DTOH, CM_COPY_DTOD,
				     CM_COPY_DEFAULT };
	return k >= 0 && k < 5 ? m[k] : CM_COPY_UNKNOWN;
}

/* Size (and direction) of the call from its parameters. */
static uint64_t api_bytes(CUpti_CallbackDomain d, CUpti_CallbackId cb, const void *p, uint8_t *kind)
{
	*kind = CM_COPY_UNKNOWN;
	if (!p)
		return 0;
	if (d == CUPTI_CB_DOMAIN_RUNTIME_API) {
		switch (cb) {
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy_ptds_v7000:
			*kind = rt_kind(((const cudaMemcpy_v3020_params *)p)->kind);
			return ((const cudaMemcpy_v3020_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_ptsz_v7000:
			*kind = rt_kind(((const cudaMemcpyAsync_v3020_params *)p)->kind);
			return ((const cudaMemcpyAsync_v3020_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemset_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemset_ptds_v7000:
			return ((const cudaMemset_v3020_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemsetAsync_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemsetAsync_ptsz_v7000:
			return ((const cudaMemsetAsync_v3020_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMalloc_v3020:
			return ((const cudaMalloc_v3020_params *)p)->size;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMallocHost_v3020:
			return ((const cudaMallocHost_v3020_params *)p)->size;
		case CUPTI_RUNTIME_TRACE_CBID_cudaHostAlloc_v3020:
			return ((const cudaHostAlloc_v3020_params *)p)->size;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMallocManaged_v6000:
			return ((const cudaMallocManaged_v6000_params *)p)->size;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMallocAsync_v11020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMallocAsync_ptsz_v11020:
			return ((const cudaMallocAsync_v11020_params *)p)->size;
		case CUPTI_RUNTIME_TRACE_CBID_cudaHostRegister_v4000:
			return ((const cudaHostRegister_v4000_params *)p)->size;
		}
		return 0;
	}
	switch (cb) {
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy_ptds:
		*kind = CM_COPY_DEFAULT;
		return ((const cuMemcpy_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync_ptsz:
		*kind = CM_COPY_DEFAULT;
		return ((const cuMemcpyAsync_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2_ptds:
		*kind = CM_COPY_HTOD;
		return ((const cuMemcpyHtoD_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2_ptsz:
		*kind = CM_COPY_HTOD;
		return ((const cuMemcpyHtoDAsync_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2_ptds:
		*kind = CM_COPY_DTOH;
		return ((const cuMemcpyDtoH_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2_ptsz:
		*kind = CM_COPY_DTOH;
		return ((const cuMemcpyDtoHAsync_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2_ptds:
		*kind = CM_COPY_DTOD;
		return ((const cuMemcpyDtoD_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2_ptsz:
		*kind = CM_COPY_DTOD;
		return ((const cuMemcpyDtoDAsync_v2_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2_ptds:
		return ((const cuMemsetD8_v2_params *)p)->N;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2_ptds:
		return ((const cuMemsetD16_v2_params *)p)->N * 2;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2_ptds:
		return ((const cuMemsetD32_v2_params *)p)->N * 4;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async_ptsz:
		return ((const cuMemsetD8Async_params *)p)->N;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async_ptsz:
		return ((const cuMemsetD16Async_params *)p)->N * 2;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async:
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async_ptsz:
		return ((const cuMemsetD32Async_params *)p)->N * 4;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2:
		return ((const cuMemAlloc_v2_params *)p)->bytesize;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocHost_v2:
		return ((const cuMemAllocHost_v2_params *)p)->bytesize;
	case CUPTI_DRIVER_TRACE_CBID_cuMemHostAlloc:
		return ((const cuMemHostAlloc_params *)p)->bytesize;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged:
		return ((const cuMemAllocManaged_params *)p)->bytesize;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz:
		return ((const cuMemAllocAsync_params *)p)->bytesize;
	case CUPTI_DRIVER_TRACE_CBID_cuMemHostRegister_v2:
		return ((const cuMemHostRegister_v2_params *)p)->bytesize;
	}
	return 0;
}

/* ---- per-thread API batches ------------------------------------------------------------ */

struct tbatch {
	pthread_mutex_t lock;		/* the owner, the flush thread and exit take it */
	unsigned n;
	struct cm_gpu_rec recs[CM_GPU_BATCH];
	struct tbatch *next;
};

static pthread_mutex_t batches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tbatch *batches;
static pthread_key_t batch_key;

/* The outermost CUDA call in flight on this thread (runtime over driver). */
static __thread struct {
	int rt_depth, drv_depth;
	uint16_t api;
	uint8_t kind;
	uint64_t start, bytes;
	uint32_t corr;
	struct tbatch *b;
} T;

static void flush_locked(struct tbatch *b)
{
	if (b->n)
		contactmap_gpu_hook(b->recs, b->n);
	b->n = 0;
}

/* pthread key destructor: the thread's last records, then its batch goes */
static void thread_exit(void *arg)
{
	struct tbatch *b = arg, **pp;

	pthread_mutex_lock(&batches_lock);
	for (pp = &batches; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = b->next;
	pthread_mutex_unlock(&batches_lock);
	flush_locked(b);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static struct tbatch *my_batch(void)
{
	struct tbatch *b = T.b;

	if (b)
		return b;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_lock(&batches_lock);
	b->next = batches;
	batches = b;
	pthread_mutex_unlock(&batches_lock);
	pthread_setspecific(batch_key, b);
	T.b = b;
	return b;
}

static void flush_all_batches(void)
{
	pthread_mutex_lock(&batches_lock);
	for (struct tbatch *b = batches; b; b = b->next) {
		pthread_mutex_lock(&b->lock);
		flush_locked(b);
		pthread_mutex_unlock(&b->lock);
	}
	pthread_mutex_unlock(&batches_lock);
}

/* Queues one API record; now = 1 sends the batch (and it) at once. */
static void emit_api(const struct cm_gpu_rec *r, int now)
{
	struct tbatch *b = my_batch();

	if (!b) {
		contactmap_gpu_hook(r, 1);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->recs[b->n++] = *r;
	if (now || b->n == CM_GPU_BATCH)
		flush_locked(b);
	pthread_mutex_unlock(&b->lock);
}

/* ---- correlation ids of graph launches --------------------------------------------------- */

/*
 * Kernel records carry the correlation id of the driver call that launched
 * them; a graph launch gives all its kernels the same one. The table is
 * indexed by the id's low bits and tagged with the whole id (and a valid
 * bit: 0 is an id like any other once the 32-bit counter wraps).
 */
#define CORR_SLOTS 4096
static uint64_t corr_tab[CORR_SLOTS];

static void corr_mark_graph(uint32_t corr)
{
	__atomic_store_n(&corr_tab[corr % CORR_SLOTS], (1ULL << 32) | corr, __ATOMIC_RELAXED);
}

static int corr_is_graph(uint32_t corr)
{
	return __atomic_load_n(&corr_tab[corr % CORR_SLOTS], __ATOMIC_RELAXED) == ((1ULL << 32) | corr);
}

/* ---- callbacks -------------------------------------------------------------------------------- */

static void api_begin(unsigned api, CUpti_CallbackDomain d, const CUpti_CallbackData *cd,
		      CUpti_CallbackId cb)
{
	T.api = (uint16_t)api;
	T.bytes = api_bytes(d, cb, cd->functionParams, &T.kind);
	T.corr = cd->correlationId;
	T.start = mono_ns();
	if (api_class[api] == CM_GPU_CLASS_SYNC) {
		/* announced at once: from here the thread waits for the GPU */
		struct cm_gpu_rec r = { .type = CM_GPU_REC_SYNC_BEGIN, .api = (uint16_t)api,
					.tid = gettid_(), .corr = T.corr, .start_ns = T.start };

		emit_api(&r, 1);
	}
}

static void api_end(const CUpti_CallbackData *cd)
{
	int sync = api_class[T.api] == CM_GPU_CLASS_SYNC;
	struct cm_gpu_rec r = {
		.type = CM_GPU_REC_API, .api = T.api, .flags = sync ? CM_GPU_RF_SYNC : 0,
		.tid = gettid_(), .corr = T.corr, .start_ns = T.start, .end_ns = mono_ns(),
		.bytes = api_class[T.api] == CM_GPU_CLASS_FREE ? 0 : T.bytes, .copy_kind = T.kind,
		.status = cd->functionReturnValue ? *(const uint32_t *)cd->functionReturnValue : 0,
	};

	emit_api(&r, sync);
}

static void CUPTIAPI on_callback(void *userdata, CUpti_CallbackDomain d, CUpti_CallbackId cb,
				 const void *data)
{
	const CUpti_CallbackData *cd = data;
	int enter = cd->callbackSite == CUPTI_API_ENTER;
	unsigned api;

	if (d == CUPTI_CB_DOMAIN_RUNTIME_API) {
		api = cb < CUPTI_RUNTIME_TRACE_CBID_SIZE ? rt_api[cb] : 0;
		if (!api)
			return;
		if (enter) {
			if (T.rt_depth++ == 0 && T.drv_depth == 0)
				api_begin(api, d, cd, cb);
		} else if (T.rt_depth > 0 && --T.rt_depth == 0 && T.drv_depth == 0) {
			api_end(cd);
		}
		return;
	}
	if (d != CUPTI_CB_DOMAIN_DRIVER_API)
		return;
	api = cb < CUPTI_DRIVER_TRACE_CBID_SIZE ? drv_api[cb] : 0;
	if (!api)
		return;
	if (enter && api_class[api] == CM_GPU_CLASS_GRAPH)
		corr_mark_graph(cd->correlationId);
	/* inside a runtime call: that call is the one counted */
	if (T.rt_depth > 0)
		return;
	if (enter) {
		if (T.drv_depth++ == 0)
			api_begin(api, d, cd, cb);
	} else if (T.drv_depth > 0 && --T.drv_depth == 0) {
		api_end(cd);
	}
}

/* ---- activity buffers --------------------------------------------------------------------------- */

static void CUPTIAPI buffer_requested(uint8_t **buf, size_t *size, size_t *max_records)
{
	*buf = aligned_alloc(8, buffer_bytes);
	*size = *buf ? buffer_bytes : 0;
	*max_records = 0;
}

/* CUPTI's timestamp, on CLOCK_MONOTONIC; 0 stays 0 (no timestamp). */
static uint64_t ts(uint64_t t)
{
	return t ? (uint64_t)((int64_t)t + clock_offset) : 0;
}

static int to_rec(const CUpti_Activity *a, struct cm_gpu_rec *r)
{
	memset(r, 0, sizeof(*r));
	switch (a->kind) {
	case CUPTI_ACTIVITY_KIND_KERNEL:
	case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
		const struct pfx_kernel *k = (const void *)a;

		r->type = CM_GPU_REC_KERNEL;
		r->start_ns = ts(k->start);
		r->end_ns = ts(k->end);
		r->device = k->device_id;
		r->stream = k->stream_id;
		r->corr = k->correlation_id;
		if (corr_is_graph(k->correlation_id))
			r->flags |= CM_GPU_RF_GRAPH;
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMCPY: {
		const struct pfx_memcpy *m = (const void *)a;

		r->type = CM_GPU_REC_COPY;
		r->copy_kind = m->copy_kind;
		r->src_mem = m->src_kind;
		r->dst_mem = m->dst_kind;
		r->bytes = m->bytes;
		r->start_ns = ts(m->start);
		r->end_ns = ts(m->end);
		r->device = m->device_id;
		r->stream = m->stream_id;
		r->corr = m->correlation_id;
		break;
	}
	case CUPTI_ACTIVITY_KIND_MEMSET: {
		const struct pfx_memset *m = (const void *)a;

		r->type = CM_GPU_REC_MEMSET;
		r->dst_mem = (uint8_t)m->memory_kind;
		r->bytes = m->bytes;
		r->start_ns = ts(m->start);
		r->end_ns = ts(m->end);
		r->device = m->device_id;
		r->stream = m->stream_id;
		r->corr = m->correlation_id;
		break;
	}
	case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
		const struct pfx_sync *s = (const void *)a;

		r->type = CM_GPU_REC_SYNC;
		r->sync_type = s->type < CM_GPU_SYNC_TYPES ? (uint8_t)s->type : 0;
		r->start_ns = ts(s->start);
		r->end_ns = ts(s->end);
		r->stream = s->stream_id;
		r->corr = s->correlation_id;
		break;
	}
	case CUPTI_ACTIVITY_KIND_OVERHEAD: {
		const struct pfx_overhead *o = (const void *)a;

		r->type = CM_GPU_REC_OVERHEAD;
		r->sync_type = (uint8_t)o->overhead_kind;
		r->start_ns = ts(o->start);
		r->end_ns = ts(o->end);
		break;
	}
	default:
		return 0;
	}
	if (!r->start_ns && !r->end_ns)
		r->flags |= CM_GPU_RF_NOTIME;
	return 1;
}

static void send_dropped(uint64_t n)
{
	struct cm_gpu_rec r = { .type = CM_GPU_REC_DROPPED, .bytes = n };

	__atomic_fetch_add(&dropped_total, n, __ATOMIC_RELAXED);
	contactmap_gpu_hook(&r, 1);
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
				      size_t valid)
{
	struct cm_gpu_rec batch[CM_GPU_BATCH];
	CUpti_Activity *a = NULL;
	unsigned n = 0;
	size_t dropped = 0;

	while (valid && C.next_record(buf, valid, &a) == CUPTI_SUCCESS) {
		if (!to_rec(a, &batch[n]))
			continue;
		if (++n == CM_GPU_BATCH) {
			contactmap_gpu_hook(batch, n);
			n = 0;
		}
	}
	if (n)
		contactmap_gpu_hook(batch, n);
	if (C.dropped && C.dropped(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped)
		send_dropped(dropped);
	free(buf);
}

/* ---- set-up ----------------------------------------------------------------------------------- */

static void send_info(uint32_t flags)
{
	struct cm_gpu_rec r = {
		.type = CM_GPU_REC_INFO, .flags = info_flags | flags, .status = status,
		.start_ns = (uint64_t)clock_offset, .device = CM_GPU_REC_VERSION,
		.tid = gettid_(),
	};

	contactmap_gpu_hook(&r, 1);
}

static int find_cupti(struct dl_phdr_info *info, size_t size, void *data)
{
	const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;

	base = base ? base + 1 : info->dlpi_name;
	if (base && !strncmp(base, "libcupti.so", 11)) {
		snprintf(data, PATH_MAX, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

static void *load_cupti(void)
{
	static const char *const names[] = {
		"libcupti.so.13", "libcupti.so.12", "libcupti.so",
		"/usr/local/cuda/lib64/libcupti.so", "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so",
	};
	char mapped[PATH_MAX] = "";
	const char *env = getenv("CONTACTMAP_CUPTI_LIB");
	void *h;

	/* the program's own copy first: two CUPTIs in one process do not mix */
	if (dl_iterate_phdr(find_cupti, mapped) && (h = dlopen(mapped, RTLD_NOLOAD | RTLD_NOW))) {
		dbg("reusing the mapped %s\n", mapped);
		return h;
	}
	if (env && *env && (h = dlopen(env, RTLD_NOW | RTLD_LOCAL)))
		return h;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL))) {
			dbg("loaded %s\n", names[i]);
			return h;
		}
	return NULL;
}

#define SYM(field, name, required)                                             \
	do {                                                                   \
		*(void **)&C.field = dlsym(C.lib, name);                        \
		if (!C.field && (required)) {                                  \
			dbg("libcupti has no %s\n", name);                      \
			return -1;                                             \
		}                                                              \
	} while (0)

static int bind_cupti(void)
{
	SYM(subscribe, "cuptiSubscribe", 1);
	SYM(unsubscribe, "cuptiUnsubscribe", 1);
	SYM(enable_callback, "cuptiEnableCallback", 1);
	SYM(activity_enable, "cuptiActivityEnable", 1);
	SYM(register_callbacks, "cuptiActivityRegisterCallbacks", 1);
	SYM(flush_all, "cuptiActivityFlushAll", 1);
	SYM(next_record, "cuptiActivityGetNextRecord", 1);
	SYM(result_string, "cuptiGetResultString", 0);
	SYM(register_timestamp, "cuptiActivityRegisterTimestampCallback", 0);
	SYM(get_timestamp, "cuptiGetTimestamp", 0);
	SYM(set_thread_id_type, "cuptiSetThreadIdType", 0);
	SYM(flush_period, "cuptiActivityFlushPeriod", 0);
	SYM(dropped, "cuptiActivityGetNumDroppedRecords", 0);
	return 0;
}

/*
 * CUPTI's timestamps on CLOCK_MONOTONIC: asked for through the timestamp
 * callback and verified; where that is missing or does not hold (CUPTI's
 * default is CLOCK_REALTIME), an offset measured across the tightest of a
 * few cuptiGetTimestamp calls.
 */
static void set_clock(void)
{
	uint64_t c = 0, t0, t1, best = UINT64_MAX;

	if (C.register_timestamp && C.register_timestamp(mono_cb) == CUPTI_SUCCESS) {
		t0 = mono_ns();
		if (!C.get_timestamp || C.get_timestamp(&c) != CUPTI_SUCCESS) {
			info_flags = CM_GPU_RF_CLOCK_CB;	/* registered; nothing to check it with */
			return;
		}
		t1 = mono_ns();
		if (c >= t0 && c <= t1 + 1000) {
			info_flags = CM_GPU_RF_CLOCK_CB;
			return;
		}
		dbg("timestamp callback registered but not in use (%llu vs %llu)\n",
		    (unsigned long long)c, (unsigned long long)t0);
	}
	if (!C.get_timestamp)
		return;
	for (int i = 0; i < 7; i++) {
		t0 = mono_ns();
		if (C.get_timestamp(&c) != CUPTI_SUCCESS)
			return;
		t1 = mono_ns();
		if (t1 - t0 < best) {
			best = t1 - t0;
			clock_offset = (int64_t)(t0 + (t1 - t0) / 2) - (int64_t)c;
		}
	}
	info_flags = CM_GPU_RF_CLOCK_CAL;
	dbg("CUPTI clock calibrated: offset %lld ns (+-%llu)\n", (long long)clock_offset,
	    (unsigned long long)best / 2);
}

static int use_period;	/* CUPTI flushes its buffers itself (cuptiActivityFlushPeriod) */

static void *flush_thread(void *arg)
{
	long ms = (long)(intptr_t)arg;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	pthread_setname_np(pthread_self(), "cm-cupti-flush");
	/* contactmap's thread, not the program's: its time is observer cost */
	struct cm_gpu_rec me = { .type = CM_GPU_REC_OBSERVER, .tid = gettid_() };
	contactmap_gpu_hook(&me, 1);
	for (;;) {
		nanosleep(&ts, NULL);
		if (!use_period)
			C.flush_all(0);
		flush_all_batches();
	}
	return NULL;
}

static void at_exit(void)
{
	if (status == CM_GPU_ST_CUPTI)
		C.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
	flush_all_batches();
	send_info(CM_GPU_RF_FINAL);
	if (dropped_total)
		fprintf(stderr, "contactmap-cupti: CUPTI dropped %llu activity records (its buffers were full)\n",
			(unsigned long long)dropped_total);
}

/* No CUPTI: ask contactmap for uprobes and wait until the driver has them. */
static void fall_back(uint32_t why, const char *reason)
{
	long wait_ms = getenv("CONTACTMAP_GPU_WAIT_MS") ? atol(getenv("CONTACTMAP_GPU_WAIT_MS")) : 2000;
	volatile unsigned char *probe = (volatile unsigned char *)(uintptr_t)&contactmap_gpu_ready;
	long waited = 0;

	status = why;
	if (why != CM_GPU_ST_FORCED)
		fprintf(stderr, "contactmap-cupti: %s; GPU numbers come from uprobes (API spans, no device times)\n",
			reason);
	send_info(0);
	/* contactmap's last uprobe for this process goes on contactmap_gpu_ready */
	while (*probe != 0xcc && waited < wait_ms) {
		usleep(1000);
		waited++;
	}
	if (wait_ms && *probe != 0xcc)
		fprintf(stderr, "contactmap-cupti: no word from contactmap after %ld ms; CUDA calls may go untraced\n",
			wait_ms);
	dbg("uprobe tier after %ld ms\n", waited);
	atexit(at_exit);
}

EXPORT int InitializeInjection(void)
{
	static int done;
	const char *mode = getenv("CONTACTMAP_GPU"), *v;
	long flush_ms = 200;
	CUptiResult r;

	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return 1;
	debug = getenv("CONTACTMAP_AGENT_DEBUG") != NULL;
	if ((v = getenv("CONTACTMAP_CUPTI_FLUSH_MS")) && atol(v) > 0)
		flush_ms = atol(v);
	if ((v = getenv("CONTACTMAP_CUPTI_BUFFER_KB")) && atol(v) > 0)
		buffer_bytes = (size_t)atol(v) * 1024;
	pthread_key_create(&batch_key, thread_exit);
	/* injected by hand, without contactmap to read the hook: CUPTI would
	 * cost the program for nothing */
	if (!mode) {
		dbg("CONTACTMAP_GPU is not set (not started by contactmap): idle\n");
		return 1;
	}
	if (!strcmp(mode, "uprobes")) {
		fall_back(CM_GPU_ST_FORCED, "uprobes asked for");
		return 1;
	}
	C.lib = load_cupti();
	if (!C.lib) {
		fall_back(CM_GPU_ST_NO_CUPTI, "libcupti not found (set CONTACTMAP_CUPTI_LIB to its path)");
		return 1;
	}
	if (bind_cupti()) {
		fall_back(CM_GPU_ST_NO_CUPTI, "libcupti lacks functions the agent needs (too old?)");
		return 1;
	}
	/* before any activity kind is enabled, as CUPTI requires */
	set_clock();
	if (C.set_thread_id_type)
		C.set_thread_id_type(CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM);
	r = C.subscribe(&subscriber, on_callback, NULL);
	if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
		fall_back(CM_GPU_ST_MULTISUB, "another profiler already holds CUPTI (CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)");
		return 1;
	}
	if (r != CUPTI_SUCCESS) {
		char why[160];

		snprintf(why, sizeof(why), "cuptiSubscribe failed: %s", cupti_err(r));
		fall_back(CM_GPU_ST_CUPTI_ERROR, why);
		return 1;
	}
	for (size_t i = 0; i < sizeof(cbmap) / sizeof(cbmap[0]); i++) {
		if (cbmap[i].domain == CUPTI_CB_DOMAIN_RUNTIME_API)
			rt_api[cbmap[i].cbid] = (unsigned char)cbmap[i].api;
		else
			drv_api[cbmap[i].cbid] = (unsigned char)cbmap[i].api;
		if ((r = C.enable_callback(1, subscriber, cbmap[i].domain, cbmap[i].cbid)) != CUPTI_SUCCESS)
			dbg("callback %u/%u: %s\n", cbmap[i].domain, cbmap[i].cbid, cupti_err(r));
	}
	C.register_callbacks(buffer_requested, buffer_completed);
	static const CUpti_ActivityKind kinds[] = {
		CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
		CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_SYNCHRONIZATION,
		CUPTI_ACTIVITY_KIND_OVERHEAD,
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if ((r = C.activity_enable(kinds[i])) != CUPTI_SUCCESS)
			dbg("activity kind %d: %s\n", kinds[i], cupti_err(r));
	use_period = C.flush_period && C.flush_period((uint32_t)flush_ms) == CUPTI_SUCCESS;
	/* API batches (and, without cuptiActivityFlushPeriod, CUPTI's buffers) */
	pthread_t th;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, flush_thread, (void *)(intptr_t)flush_ms))
		dbg("no flush thread\n");
	pthread_attr_destroy(&attr);
	status = CM_GPU_ST_CUPTI;
	send_info(0);
	atexit(at_exit);
	dbg("CUPTI tier on (clock %s, offset %lld)\n",
	    info_flags & CM_GPU_RF_CLOCK_CB ? "monotonic" : "calibrated", (long long)clock_offset);
	return 1;
}
