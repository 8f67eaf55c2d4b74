// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A fake CUDA driver for contactmap's GPU tests: built as libcuda.so.1 (that
 * SONAME) with the real prototypes of cuda.h, so that uprobes, the CUPTI agent
 * and test programs meet it exactly where they would meet NVIDIA's driver.
 *
 * "Device" memory is host memory; a synchronize call waits as the
 * environment says (read at cuInit):
 *   FAKE_CUDA_SPIN_US   busy-wait this long in every synchronize call (on CPU)
 *   FAKE_CUDA_BLOCK_US  then block this long in a futex wait (off CPU)
 *   FAKE_CUDA_IOCTL_DEV open this file at cuInit and ioctl() it once per launch
 *                       and per synchronize, as the real driver does /dev/nvidia*
 *   FAKE_CUDA_DRIVER_VERSION  what cuDriverGetVersion says (CUDA_VERSION, 13000)
 * cuInit loads $CUDA_INJECTION64_PATH and calls its InitializeInjection(), as
 * the real driver does. When a fake libcupti (fake_cupti.c) is loaded, every
 * call reports itself to it (fakecupti_api), which turns it into CUPTI
 * callbacks and activity records.
 *
 * The real libcudart.so.13 cannot run on this fake: after cuGetProcAddress it
 * needs the driver's private export tables (cuGetExportTable), which are not
 * documented. The fakert_* functions below stand in for the runtime where the
 * CUPTI tests need runtime callbacks around driver calls.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <cuda.h>
#include <cupti.h>

#define EXPORT __attribute__((visibility("default")))
#define FAKE_IOCTL 0x46414b45	/* 'FAKE' */

static long spin_us, block_us;
static int ioctl_fd = -1;
static int inited;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* the fake CUPTI's entry, when one is loaded */
typedef void (*fakecupti_api_fn)(int domain, unsigned cbid, const char *name,
				 const void *params, int site, int ret);
static fakecupti_api_fn cupti_api;

/* pinned host ranges */
static struct {
	const char *p;
	size_t n;
} pinned[64];

static long env_long(const char *name)
{
	const char *v = getenv(name);

	return v ? strtol(v, NULL, 0) : 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

struct call {
	int domain;
	unsigned cbid;
	const char *name;
	const void *params;
};

static struct call enter(int domain, unsigned cbid, const char *name, const void *params)
{
	struct call c = { domain, cbid, name, params };

	if (cupti_api)
		cupti_api(domain, cbid, name, params, CUPTI_API_ENTER, 0);
	return c;
}

static int leave(struct call *c, int ret)
{
	if (cupti_api)
		cupti_api(c->domain, c->cbid, c->name, c->params, CUPTI_API_EXIT, ret);
	return ret;
}

#define DRV(cbid, params) struct call call_ = enter(CUPTI_CB_DOMAIN_DRIVER_API, \
	CUPTI_DRIVER_TRACE_CBID_##cbid, #cbid, params)
#define RET(r) return leave(&call_, (r))

static void driver_ioctl(void)
{
	if (ioctl_fd >= 0)
		(void)ioctl(ioctl_fd, FAKE_IOCTL, 0);
}

/* A synchronize call: spin, then block, as configured. */
static void wait_for_device(void)
{
	driver_ioctl();
	if (spin_us > 0) {
		uint64_t end = now_ns() + (uint64_t)spin_us * 1000;

		while (now_ns() < end)
			__asm__ volatile("pause");
	}
	if (block_us > 0) {
		static int word;
		struct timespec ts = { block_us / 1000000, (block_us % 1000000) * 1000 };

		syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
	}
}

EXPORT int fakecuda_host_memory_kind(const void *p)
{
	int kind = 1;	/* CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE */

	pthread_mutex_lock(&lock);
	for (int i = 0; i < 64; i++)
		if (pinned[i].p && (const char *)p >= pinned[i].p &&
		    (const char *)p < pinned[i].p + pinned[i].n)
			kind = 2;	/* PINNED */
	pthread_mutex_unlock(&lock);
	return kind;
}

static void pin(const void *p, size_t n)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 64; i++) {
		if (!pinned[i].p) {
			pinned[i].p = p;
			pinned[i].n = n;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
}

static void unpin(const void *p)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 64; i++)
		if (pinned[i].p == p)
			pinned[i].p = NULL;
	pthread_mutex_unlock(&lock);
}

/* ---- initialization ------------------------------------------------------- */

CUresult CUDAAPI cuInit(unsigned int flags)
{
	const char *inj, *dev;

	pthread_mutex_lock(&lock);
	if (inited++) {
		pthread_mutex_unlock(&lock);
		return CUDA_SUCCESS;
	}
	spin_us = env_long("FAKE_CUDA_SPIN_US");
	block_us = env_long("FAKE_CUDA_BLOCK_US");
	dev = getenv("FAKE_CUDA_IOCTL_DEV");
	if (dev && *dev)
		ioctl_fd = open(dev, O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&lock);
	/* the injection library, as NVIDIA's driver loads it */
	inj = getenv("CUDA_INJECTION64_PATH");
	if (inj && *inj) {
		void *h = dlopen(inj, RTLD_NOW | RTLD_LOCAL);
		int (*init)(void) = h ? (int (*)(void))dlsym(h, "InitializeInjection") : NULL;

		if (!init)
			fprintf(stderr, "fake libcuda: cannot load injection %s: %s\n", inj, dlerror());
		else
			init();
	}
	/* the fake CUPTI the agent settled on (it may have tried another first) */
	static const char *const cuptis[] = { "libcupti.so.13", "libcupti.so.12" };
	for (int i = 0; i < 2 && !cupti_api; i++) {
		void *cupti = dlopen(cuptis[i], RTLD_NOLOAD | RTLD_LAZY);
		int (*active)(void) = cupti ? (int (*)(void))dlsym(cupti, "fakecupti_active") : NULL;

		if (active && active())
			cupti_api = (fakecupti_api_fn)dlsym(cupti, "fakecupti_api");
	}
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDriverGetVersion(int *v)
{
	const char *e = getenv("FAKE_CUDA_DRIVER_VERSION");

	*v = e && *e ? atoi(e) : CUDA_VERSION;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *n)
{
	*n = 1;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *d, int ordinal)
{
	*d = ordinal;
	return ordinal == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
	snprintf(name, len, "contactmap fake GPU");
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxCreate(CUcontext *pctx, CUctxCreateParams *p, unsigned int flags, CUdevice dev)
{
	*pctx = (CUcontext)(uintptr_t)0xc0de;
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamCreate(CUstream *s, unsigned int flags)
{
	static unsigned next = 13;

	*s = (CUstream)(uintptr_t)__atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventCreate(CUevent *e, unsigned int flags)
{
	*e = (CUevent)(uintptr_t)0xe7e7;
	return CUDA_SUCCESS;
}

/* ---- memory ------------------------------------------------------------- */

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize)
{
	cuMemAlloc_v2_params p = { dptr, bytesize };
	DRV(cuMemAlloc_v2, &p);
	void *m = calloc(1, bytesize ? bytesize : 1);

	*dptr = (CUdeviceptr)(uintptr_t)m;
	RET(m ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY);
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr)
{
	cuMemFree_v2_params p = { dptr };
	DRV(cuMemFree_v2, &p);
	free((void *)(uintptr_t)dptr);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemAllocHost(void **pp, size_t bytesize)
{
	cuMemAllocHost_v2_params p = { pp, bytesize };
	DRV(cuMemAllocHost_v2, &p);
	*pp = calloc(1, bytesize ? bytesize : 1);
	if (*pp)
		pin(*pp, bytesize);
	RET(*pp ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY);
}

CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytesize, unsigned int flags)
{
	cuMemHostAlloc_params p = { pp, bytesize, flags };
	DRV(cuMemHostAlloc, &p);
	*pp = calloc(1, bytesize ? bytesize : 1);
	if (*pp)
		pin(*pp, bytesize);
	RET(*pp ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY);
}

CUresult CUDAAPI cuMemFreeHost(void *ptr)
{
	cuMemFreeHost_params p = { ptr };
	DRV(cuMemFreeHost, &p);
	unpin(ptr);
	free(ptr);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemHostRegister(void *ptr, size_t bytesize, unsigned int flags)
{
	cuMemHostRegister_v2_params p = { ptr, bytesize, flags };
	DRV(cuMemHostRegister_v2, &p);
	pin(ptr, bytesize);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemHostUnregister(void *ptr)
{
	cuMemHostUnregister_params p = { ptr };
	DRV(cuMemHostUnregister, &p);
	unpin(ptr);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n)
{
	cuMemcpyHtoD_v2_params p = { dst, src, n };
	DRV(cuMemcpyHtoD_v2, &p);
	memcpy((void *)(uintptr_t)dst, src, n);
	driver_ioctl();
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n)
{
	cuMemcpyDtoH_v2_params p = { dst, src, n };
	DRV(cuMemcpyDtoH_v2, &p);
	memcpy(dst, (void *)(uintptr_t)src, n);
	driver_ioctl();
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	cuMemcpyDtoD_v2_params p = { dst, src, n };
	DRV(cuMemcpyDtoD_v2, &p);
	memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	cuMemcpyHtoDAsync_v2_params p = { dst, src, n, s };
	DRV(cuMemcpyHtoDAsync_v2, &p);
	memcpy((void *)(uintptr_t)dst, src, n);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	cuMemcpyDtoHAsync_v2_params p = { dst, src, n, s };
	DRV(cuMemcpyDtoHAsync_v2, &p);
	memcpy(dst, (void *)(uintptr_t)src, n);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemsetD8(CUdeviceptr dst, unsigned char uc, size_t n)
{
	cuMemsetD8_v2_params p = { dst, uc, n };
	DRV(cuMemsetD8_v2, &p);
	memset((void *)(uintptr_t)dst, uc, n);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemsetD32(CUdeviceptr dst, unsigned int ui, size_t n)
{
	cuMemsetD32_v2_params p = { dst, ui, n };
	DRV(cuMemsetD32_v2, &p);
	for (size_t i = 0; i < n; i++)
		((unsigned int *)(uintptr_t)dst)[i] = ui;
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr dptr, CUstream s)
{
	cuMemFreeAsync_params p = { dptr, s };
	DRV(cuMemFreeAsync, &p);
	free((void *)(uintptr_t)dptr);
	RET(CUDA_SUCCESS);
}

/* "Device" memory is host memory, so peers are too. */
CUresult CUDAAPI cuMemcpyPeer(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
	cuMemcpyPeer_params p = { dst, dctx, src, sctx, n };
	DRV(cuMemcpyPeer, &p);
	memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx,
				   size_t n, CUstream s)
{
	cuMemcpyPeerAsync_params p = { dst, dctx, src, sctx, n, s };
	DRV(cuMemcpyPeerAsync, &p);
	memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
	RET(CUDA_SUCCESS);
}

static void copy2d(const CUDA_MEMCPY2D *c)
{
	const char *src = c->srcMemoryType == CU_MEMORYTYPE_HOST ? c->srcHost
			  : (const char *)(uintptr_t)c->srcDevice;
	char *dst = c->dstMemoryType == CU_MEMORYTYPE_HOST ? c->dstHost : (char *)(uintptr_t)c->dstDevice;

	for (size_t y = 0; y < c->Height; y++)
		memmove(dst + (c->dstY + y) * c->dstPitch + c->dstXInBytes,
			src + (c->srcY + y) * c->srcPitch + c->srcXInBytes, c->WidthInBytes);
}

CUresult CUDAAPI cuMemcpy2D(const CUDA_MEMCPY2D *c)
{
	cuMemcpy2D_v2_params p = { c };
	DRV(cuMemcpy2D_v2, &p);
	copy2d(c);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpy2DAsync(const CUDA_MEMCPY2D *c, CUstream s)
{
	cuMemcpy2DAsync_v2_params p = { c, s };
	DRV(cuMemcpy2DAsync_v2, &p);
	copy2d(c);
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuMemcpyBatchAsync(CUdeviceptr *dsts, CUdeviceptr *srcs, size_t *sizes, size_t count,
				    CUmemcpyAttributes *attrs, size_t *attrsIdxs, size_t numAttrs,
				    CUstream s)
{
	cuMemcpyBatchAsync_v2_params p = { dsts, srcs, sizes, count, attrs, attrsIdxs, numAttrs, s };
	DRV(cuMemcpyBatchAsync_v2, &p);
	for (size_t i = 0; i < count; i++)
		memmove((void *)(uintptr_t)dsts[i], (void *)(uintptr_t)srcs[i], sizes[i]);
	RET(CUDA_SUCCESS);
}

/* ---- work and waits -------------------------------------------------------- */

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
				unsigned int bx, unsigned int by, unsigned int bz,
				unsigned int shmem, CUstream s, void **params, void **extra)
{
	cuLaunchKernel_params p = { f, gx, gy, gz, bx, by, bz, shmem, s, params, extra };
	DRV(cuLaunchKernel, &p);
	driver_ioctl();
	RET(CUDA_SUCCESS);
}

/* The fake's graphs: a CUgraphExec handle's value is its number of kernels. */
CUresult CUDAAPI cuGraphLaunch(CUgraphExec g, CUstream s)
{
	cuGraphLaunch_params p = { g, s };
	DRV(cuGraphLaunch, &p);
	driver_ioctl();
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuCtxSynchronize(void)
{
	DRV(cuCtxSynchronize, NULL);
	wait_for_device();
	RET(CUDA_SUCCESS);
}

/* The fake's events are never reached: a query finds them pending. */
CUresult CUDAAPI cuEventQuery(CUevent e)
{
	cuEventQuery_params p = { e };
	DRV(cuEventQuery, &p);
	RET(CUDA_ERROR_NOT_READY);
}

/* CUDA 13's synchronize of a given context */
CUresult CUDAAPI cuCtxSynchronize_v2(CUcontext ctx)
{
	cuCtxSynchronize_v2_params p = { ctx };
	DRV(cuCtxSynchronize_v2, &p);
	wait_for_device();
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuStreamSynchronize(CUstream s)
{
	cuStreamSynchronize_params p = { s };
	DRV(cuStreamSynchronize, &p);
	wait_for_device();
	RET(CUDA_SUCCESS);
}

CUresult CUDAAPI cuEventSynchronize(CUevent e)
{
	cuEventSynchronize_params p = { e };
	DRV(cuEventSynchronize, &p);
	wait_for_device();
	RET(CUDA_SUCCESS);
}

/* ---- stand-ins for the runtime (CUPTI runtime callbacks over driver calls) -- */

#define RT(cbid, params) struct call call_ = enter(CUPTI_CB_DOMAIN_RUNTIME_API, \
	CUPTI_RUNTIME_TRACE_CBID_##cbid, #cbid, params)

EXPORT int fakert_cudaMemcpy(void *dst, const void *src, size_t count, int kind)
{
	cudaMemcpy_v3020_params p = { dst, src, count, (enum cudaMemcpyKind)kind };
	RT(cudaMemcpy_v3020, &p);
	int r = kind == cudaMemcpyHostToDevice ? cuMemcpyHtoD((CUdeviceptr)(uintptr_t)dst, src, count)
		: kind == cudaMemcpyDeviceToHost ? cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, count)
		: cuMemcpyDtoD((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src, count);
	RET(r);
}

EXPORT int fakert_cudaLaunchKernel(unsigned gx, CUstream s)
{
	cudaLaunchKernel_v7000_params p = { NULL, { gx, 1, 1 }, { 32, 1, 1 }, NULL, 0, (cudaStream_t)s };
	RT(cudaLaunchKernel_v7000, &p);
	RET(cuLaunchKernel(NULL, gx, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
}

EXPORT int fakert_cudaDeviceSynchronize(void)
{
	RT(cudaDeviceSynchronize_v3020, NULL);
	RET(cuCtxSynchronize());
}

/* CUDA 13: what <<<...>>> calls */
EXPORT int fakert___cudaLaunchKernel(unsigned gx, CUstream s)
{
	/* the meta header has no struct of its own for it: the same arguments */
	cudaLaunchKernel_v7000_params p = { NULL, { gx, 1, 1 }, { 32, 1, 1 }, NULL, 0, (cudaStream_t)s };
	RT(__cudaLaunchKernel_v13000, &p);
	RET(cuLaunchKernel(NULL, gx, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
}

EXPORT int fakert_cudaMemcpyPeerAsync(void *dst, int ddev, const void *src, int sdev, size_t n,
				      CUstream s)
{
	cudaMemcpyPeerAsync_v4000_params p = { dst, ddev, src, sdev, n, (cudaStream_t)s };
	RT(cudaMemcpyPeerAsync_v4000, &p);
	RET(cuMemcpyPeerAsync((CUdeviceptr)(uintptr_t)dst, NULL, (CUdeviceptr)(uintptr_t)src, NULL, n, s));
}

/* device to device, width x height */
EXPORT int fakert_cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
				    size_t width, size_t height, CUstream s)
{
	cudaMemcpy2DAsync_v3020_params p = { dst, dpitch, src, spitch, width, height,
					     cudaMemcpyDeviceToDevice, (cudaStream_t)s };
	RT(cudaMemcpy2DAsync_v3020, &p);
	CUDA_MEMCPY2D c = { .srcMemoryType = CU_MEMORYTYPE_DEVICE, .srcDevice = (CUdeviceptr)(uintptr_t)src,
			    .srcPitch = spitch, .dstMemoryType = CU_MEMORYTYPE_DEVICE,
			    .dstDevice = (CUdeviceptr)(uintptr_t)dst, .dstPitch = dpitch,
			    .WidthInBytes = width, .Height = height };
	RET(cuMemcpy2DAsync(&c, s));
}

EXPORT int fakert_cudaMemcpyBatchAsync(void **dsts, void **srcs, size_t *sizes, size_t count, CUstream s)
{
	cudaMemcpyBatchAsync_v13000_params p = { dsts, (const void *const *)srcs, sizes, count, NULL, NULL, 0,
						 (cudaStream_t)s };
	RT(cudaMemcpyBatchAsync_v13000, &p);
	RET(cuMemcpyBatchAsync((CUdeviceptr *)dsts, (CUdeviceptr *)srcs, sizes, count, NULL, NULL, 0, s));
}

EXPORT int fakert_cudaFreeAsync(void *ptr, CUstream s)
{
	cudaFreeAsync_v11020_params p = { ptr, (cudaStream_t)s };
	RT(cudaFreeAsync_v11020, &p);
	RET(cuMemFreeAsync((CUdeviceptr)(uintptr_t)ptr, s));
}

/* Runtime calls contactmap does not time, made of driver calls it does: the
 * driver calls are theirs, not the program's. */
EXPORT int fakert_cudaMemcpyToSymbol(void *symbol_dev, const void *src, size_t n)
{
	cudaMemcpyToSymbol_v3020_params p = { symbol_dev, src, n, 0, cudaMemcpyHostToDevice };
	RT(cudaMemcpyToSymbol_v3020, &p);
	RET(cuMemcpyHtoD((CUdeviceptr)(uintptr_t)symbol_dev, src, n));
}

/* and one that waits for the GPU inside (GPU wait, but no API row) */
EXPORT int fakert_cudaStreamDestroy(CUstream s)
{
	cudaStreamDestroy_v5050_params p = { (cudaStream_t)s };
	RT(cudaStreamDestroy_v5050, &p);
	RET(cuStreamSynchronize(s));
}
