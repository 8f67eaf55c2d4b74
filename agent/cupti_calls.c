// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The CUDA calls the CUPTI agent times: their CUPTI callback ids, the API id
 * each counts as (contactmap_gpu.h), and their sizes from their parameters.
 */
#include <stddef.h>
#include <stdint.h>
#include <cupti.h>
#include "agent.h"

#define RT(cb, api) { CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_##cb, CM_GA_##api }
#define DRV(cb, api) { CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_##cb, CM_GA_##api }
const struct cm_agent_cb cm_agent_cbs[] = {
	RT(cudaLaunchKernel_v7000, cudaLaunchKernel), RT(cudaLaunchKernel_ptsz_v7000, cudaLaunchKernel),
	/* CUDA 13: what <<<...>>> calls (host_runtime.h), a jump to cudaLaunchKernel */
	RT(__cudaLaunchKernel_v13000, cudaLaunchKernel), RT(__cudaLaunchKernel_ptsz_v13000, cudaLaunchKernel),
	RT(cudaLaunchKernelExC_v11060, cudaLaunchKernelExC),
	RT(cudaLaunchKernelExC_ptsz_v11060, cudaLaunchKernelExC),
	RT(cudaLaunchCooperativeKernel_v9000, cudaLaunchCooperativeKernel),
	RT(cudaLaunchCooperativeKernel_ptsz_v9000, cudaLaunchCooperativeKernel),
	RT(cudaGraphLaunch_v10000, cudaGraphLaunch), RT(cudaGraphLaunch_ptsz_v10000, cudaGraphLaunch),
	RT(cudaMemcpy_v3020, cudaMemcpy), RT(cudaMemcpy_ptds_v7000, cudaMemcpy),
	RT(cudaMemcpyAsync_v3020, cudaMemcpyAsync), RT(cudaMemcpyAsync_ptsz_v7000, cudaMemcpyAsync),
	RT(cudaMemcpyPeer_v4000, cudaMemcpyPeer), RT(cudaMemcpyPeerAsync_v4000, cudaMemcpyPeerAsync),
	RT(cudaMemcpy2D_v3020, cudaMemcpy2D), RT(cudaMemcpy2D_ptds_v7000, cudaMemcpy2D),
	RT(cudaMemcpy2DAsync_v3020, cudaMemcpy2DAsync), RT(cudaMemcpy2DAsync_ptsz_v7000, cudaMemcpy2DAsync),
	RT(cudaMemcpyBatchAsync_v12080, cudaMemcpyBatchAsync),
	RT(cudaMemcpyBatchAsync_ptsz_v12080, cudaMemcpyBatchAsync),
	RT(cudaMemcpyBatchAsync_v13000, cudaMemcpyBatchAsync),
	RT(cudaMemcpyBatchAsync_ptsz_v13000, cudaMemcpyBatchAsync),
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
	RT(cudaFreeAsync_v11020, cudaFreeAsync), RT(cudaFreeAsync_ptsz_v11020, cudaFreeAsync),
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
	DRV(cuMemcpyPeer, cuMemcpyPeer), DRV(cuMemcpyPeer_ptds, cuMemcpyPeer),
	DRV(cuMemcpyPeerAsync, cuMemcpyPeerAsync), DRV(cuMemcpyPeerAsync_ptsz, cuMemcpyPeerAsync),
	DRV(cuMemcpy2D_v2, cuMemcpy2D), DRV(cuMemcpy2D_v2_ptds, cuMemcpy2D),
	DRV(cuMemcpy2DAsync_v2, cuMemcpy2DAsync), DRV(cuMemcpy2DAsync_v2_ptsz, cuMemcpy2DAsync),
	DRV(cuMemcpyBatchAsync, cuMemcpyBatchAsync), DRV(cuMemcpyBatchAsync_ptsz, cuMemcpyBatchAsync),
	DRV(cuMemcpyBatchAsync_v2, cuMemcpyBatchAsync), DRV(cuMemcpyBatchAsync_v2_ptsz, cuMemcpyBatchAsync),
	DRV(cuMemsetD8_v2, cuMemsetD8), DRV(cuMemsetD8_v2_ptds, cuMemsetD8),
	DRV(cuMemsetD16_v2, cuMemsetD16), DRV(cuMemsetD16_v2_ptds, cuMemsetD16),
	DRV(cuMemsetD32_v2, cuMemsetD32), DRV(cuMemsetD32_v2_ptds, cuMemsetD32),
	DRV(cuMemsetD8Async, cuMemsetD8Async), DRV(cuMemsetD8Async_ptsz, cuMemsetD8Async),
	DRV(cuMemsetD16Async, cuMemsetD16Async), DRV(cuMemsetD16Async_ptsz, cuMemsetD16Async),
	DRV(cuMemsetD32Async, cuMemsetD32Async), DRV(cuMemsetD32Async_ptsz, cuMemsetD32Async),
	DRV(cuCtxSynchronize, cuCtxSynchronize), DRV(cuCtxSynchronize_v2, cuCtxSynchronize),
	DRV(cuStreamSynchronize, cuStreamSynchronize),
	DRV(cuStreamSynchronize_ptsz, cuStreamSynchronize), DRV(cuEventSynchronize, cuEventSynchronize),
	DRV(cuMemAlloc_v2, cuMemAlloc), DRV(cuMemAllocHost_v2, cuMemAllocHost),
	DRV(cuMemHostAlloc, cuMemHostAlloc), DRV(cuMemAllocManaged, cuMemAllocManaged),
	DRV(cuMemAllocAsync, cuMemAllocAsync), DRV(cuMemAllocAsync_ptsz, cuMemAllocAsync),
	DRV(cuMemHostRegister_v2, cuMemHostRegister), DRV(cuMemFree_v2, cuMemFree),
	DRV(cuMemFreeAsync, cuMemFreeAsync), DRV(cuMemFreeAsync_ptsz, cuMemFreeAsync),
	DRV(cuMemFreeHost, cuMemFreeHost), DRV(cuMemHostUnregister, cuMemHostUnregister),
};
#undef RT
#undef DRV

const size_t cm_agent_ncbs = sizeof(cm_agent_cbs) / sizeof(cm_agent_cbs[0]);

/* cudaMemcpyKind -> CM_COPY_* */
static uint8_t rt_kind(int k)
{
	static const uint8_t m[] = { CM_COPY_HTOH, CM_COPY_HTOD, CM_COPY_DTOH, CM_COPY_DTOD,
				     CM_COPY_DEFAULT };
	return k >= 0 && k < 5 ? m[k] : CM_COPY_UNKNOWN;
}

/*
 * The batched copies (cudaMemcpyBatchAsync of CUDA 12.8 and 13,
 * cuMemcpyBatchAsync and its _v2) all start with (dsts, srcs, sizes, count):
 * the bytes are the sum of sizes[], read within a bound so that a huge batch
 * cannot stretch the call it is part of.
 */
struct batch_pfx {
	const void *dsts, *srcs;
	const size_t *sizes;
	size_t count;
};
#define BATCH_PREFIX(T)                                                                  \
	_Static_assert(offsetof(T, sizes) == offsetof(struct batch_pfx, sizes), #T ".sizes"); \
	_Static_assert(offsetof(T, count) == offsetof(struct batch_pfx, count), #T ".count")
BATCH_PREFIX(cudaMemcpyBatchAsync_v13000_params);
BATCH_PREFIX(cudaMemcpyBatchAsync_ptsz_v13000_params);
BATCH_PREFIX(cuMemcpyBatchAsync_params);
BATCH_PREFIX(cuMemcpyBatchAsync_v2_params);
#define BATCH_MAX 65536

static uint64_t batch_bytes(const void *p)
{
	const struct batch_pfx *b = p;
	uint64_t n = 0;

	for (size_t i = 0; b->sizes && i < b->count && i < BATCH_MAX; i++)
		n += b->sizes[i];
	return n;
}

/* CUDA_MEMCPY2D: bytes and direction from the two memory types */
static uint64_t copy2d_bytes(const CUDA_MEMCPY2D *c, uint8_t *kind)
{
	int s, d;

	if (!c)
		return 0;
	s = c->srcMemoryType == CU_MEMORYTYPE_HOST;
	d = c->dstMemoryType == CU_MEMORYTYPE_HOST;
	*kind = s && d ? CM_COPY_HTOH : s ? CM_COPY_HTOD : d ? CM_COPY_DTOH
	      : c->srcMemoryType == CU_MEMORYTYPE_ARRAY || c->dstMemoryType == CU_MEMORYTYPE_ARRAY
		? CM_COPY_UNKNOWN : CM_COPY_DTOD;
	return (uint64_t)c->WidthInBytes * c->Height;
}

/* Size (and direction) of the call from its parameters. */
uint64_t cm_agent_api_bytes(CUpti_CallbackDomain d, CUpti_CallbackId cb, const void *p, uint8_t *kind)
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
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyPeer_v4000:
			*kind = CM_COPY_PTOP;
			return ((const cudaMemcpyPeer_v4000_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyPeerAsync_v4000:
			*kind = CM_COPY_PTOP;
			return ((const cudaMemcpyPeerAsync_v4000_params *)p)->count;
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy2D_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy2D_ptds_v7000: {
			const cudaMemcpy2D_v3020_params *m = p;

			*kind = rt_kind(m->kind);
			return (uint64_t)m->width * m->height;
		}
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy2DAsync_v3020:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy2DAsync_ptsz_v7000: {
			const cudaMemcpy2DAsync_v3020_params *m = p;

			*kind = rt_kind(m->kind);
			return (uint64_t)m->width * m->height;
		}
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyBatchAsync_v12080:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyBatchAsync_ptsz_v12080:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyBatchAsync_v13000:
		case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyBatchAsync_ptsz_v13000:
			return batch_bytes(p);
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
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeer:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeer_ptds:
		*kind = CM_COPY_PTOP;
		return ((const cuMemcpyPeer_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeerAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeerAsync_ptsz:
		*kind = CM_COPY_PTOP;
		return ((const cuMemcpyPeerAsync_params *)p)->ByteCount;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2D_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2D_v2_ptds:
		return copy2d_bytes(((const cuMemcpy2D_v2_params *)p)->pCopy, kind);
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2DAsync_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2DAsync_v2_ptsz:
		return copy2d_bytes(((const cuMemcpy2DAsync_v2_params *)p)->pCopy, kind);
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyBatchAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyBatchAsync_ptsz:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyBatchAsync_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyBatchAsync_v2_ptsz:
		return batch_bytes(p);
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
