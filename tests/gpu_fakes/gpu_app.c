// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A CUDA program with known GPU work, for contactmap's GPU tests. Linked
 * against the fake driver (libcuda.so.1 from fake_cuda.c) and the real
 * libcudart.so.13. Options give the plan; the last stdout line is the ground
 * truth as JSON (the plan, pid and tid, and what the runtime returned).
 *
 *   --wait-probes        first wait (<= 10 s) until cuCtxSynchronize carries a
 *                        uprobe (int3): contactmap -p has attached
 *   --wait-stdin         first print "ready" and wait for a line on stdin
 *   --launches N --grid G  cuLaunchKernel N times with gridDimX G
 *   --stream S           launches and async copies on a new stream (else NULL)
 *   --copies N --bytes B N x (HtoD + DtoH) of B bytes from pinned memory
 *                        (cuMemAllocHost) and N x from pageable (malloc)
 *   --dtod N --memsets N
 *   --graphs N --graph-kernels K  cuGraphLaunch N times, K kernels each
 *   --syncs N            cuCtxSynchronize N times (waits: FAKE_CUDA_SPIN_US,
 *                        FAKE_CUDA_BLOCK_US); --stream-syncs N cuStreamSynchronize
 *   --rt-copies N --rt-launches N --rt-syncs N   the fakert_* stand-ins of the
 *                        runtime: runtime callbacks around driver calls
 *   --cudart N           the real libcudart.so.13: cudaMalloc, then N x
 *                        cudaMemcpy HtoD of B bytes, N x cudaLaunchKernel, N x
 *                        cudaDeviceSynchronize (errors tolerated and counted)
 *   --threads T          run the whole plan in T threads at once
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cuda.h>
#include <cuda_runtime_api.h>

int fakert_cudaMemcpy(void *dst, const void *src, size_t count, int kind);
int fakert_cudaLaunchKernel(unsigned gx, CUstream s);
int fakert_cudaDeviceSynchronize(void);

static struct plan {
	long launches, grid, stream, copies, bytes, dtod, memsets, graphs, graph_kernels;
	long syncs, stream_syncs, rt_copies, rt_launches, rt_syncs, cudart, threads;
	int wait_probes, wait_stdin;
} P = { .grid = 1, .bytes = 4096, .graph_kernels = 4, .threads = 1 };

static long cudart_errors, cudart_calls;

static void die(const char *what, int r)
{
	fprintf(stderr, "gpu_app: %s failed: %d\n", what, r);
	exit(3);
}

#define CK(call) do { CUresult r_ = (call); if (r_ != CUDA_SUCCESS) die(#call, r_); } while (0)

static void wait_probes(void)
{
	/* dlsym: the function itself, not a PLT entry of this executable */
	volatile unsigned char *f = dlsym(RTLD_DEFAULT, "cuCtxSynchronize");

	for (int i = 0; i < 10000; i++) {
		if (*f == 0xcc)	/* int3: a uprobe is installed in this process */
			return;
		usleep(1000);
	}
	fprintf(stderr, "gpu_app: no uprobe on cuCtxSynchronize after 10 s\n");
	exit(4);
}

static void *run(void *arg)
{
	CUstream s = NULL;
	CUdeviceptr d, d2;
	void *pinned, *pageable;
	size_t B = (size_t)P.bytes;

	if (P.stream)
		CK(cuStreamCreate(&s, 0));
	CK(cuMemAlloc(&d, B));
	CK(cuMemAlloc(&d2, B));
	CK(cuMemAllocHost(&pinned, B));
	pageable = malloc(B);
	memset(pageable, 0x5a, B);
	for (long i = 0; i < P.launches; i++)
		CK(cuLaunchKernel(NULL, (unsigned)P.grid, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
	for (long i = 0; i < P.copies; i++) {
		CK(cuMemcpyHtoD(d, pinned, B));
		CK(cuMemcpyDtoH(pinned, d, B));
		CK(cuMemcpyHtoD(d, pageable, B));
		CK(cuMemcpyDtoH(pageable, d, B));
	}
	for (long i = 0; i < P.dtod; i++)
		CK(cuMemcpyDtoD(d2, d, B));
	for (long i = 0; i < P.memsets; i++)
		CK(cuMemsetD8(d, 0, B));
	for (long i = 0; i < P.graphs; i++)
		CK(cuGraphLaunch((CUgraphExec)(uintptr_t)P.graph_kernels, s));
	for (long i = 0; i < P.syncs; i++)
		CK(cuCtxSynchronize());
	for (long i = 0; i < P.stream_syncs; i++)
		CK(cuStreamSynchronize(s));
	for (long i = 0; i < P.rt_copies; i++)
		if (fakert_cudaMemcpy((void *)(uintptr_t)d, pinned, B, cudaMemcpyHostToDevice))
			die("fakert_cudaMemcpy", -1);
	for (long i = 0; i < P.rt_launches; i++)
		if (fakert_cudaLaunchKernel((unsigned)P.grid, s))
			die("fakert_cudaLaunchKernel", -1);
	for (long i = 0; i < P.rt_syncs; i++)
		if (fakert_cudaDeviceSynchronize())
			die("fakert_cudaDeviceSynchronize", -1);
	if (P.cudart) {
		void *dp = NULL;
		cudaError_t e;

		/* the real runtime refuses this fake driver (cudaErrorInsufficientDriver):
		 * its entry points are still called, with known sizes */
		e = cudaMalloc(&dp, B);
		__atomic_fetch_add(&cudart_calls, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&cudart_errors, e != cudaSuccess, __ATOMIC_RELAXED);
		for (long i = 0; i < P.cudart; i++) {
			e = cudaMemcpy(dp ? dp : (void *)(uintptr_t)d, pinned, B, cudaMemcpyHostToDevice);
			__atomic_fetch_add(&cudart_errors, e != cudaSuccess, __ATOMIC_RELAXED);
			e = cudaLaunchKernel((const void *)run, (dim3){ 1, 1, 1 }, (dim3){ 1, 1, 1 }, NULL, 0, NULL);
			__atomic_fetch_add(&cudart_errors, e != cudaSuccess, __ATOMIC_RELAXED);
			e = cudaDeviceSynchronize();
			__atomic_fetch_add(&cudart_errors, e != cudaSuccess, __ATOMIC_RELAXED);
			__atomic_fetch_add(&cudart_calls, 3, __ATOMIC_RELAXED);
		}
	}
	CK(cuMemFreeHost(pinned));
	CK(cuMemFree(d));
	CK(cuMemFree(d2));
	free(pageable);
	return arg;
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 0);

	if (*end || v < 0) {
		fprintf(stderr, "gpu_app: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; long *v; } opts[] = {
		{ "--launches", &P.launches }, { "--grid", &P.grid }, { "--stream", &P.stream },
		{ "--copies", &P.copies }, { "--bytes", &P.bytes }, { "--dtod", &P.dtod },
		{ "--memsets", &P.memsets }, { "--graphs", &P.graphs },
		{ "--graph-kernels", &P.graph_kernels }, { "--syncs", &P.syncs },
		{ "--stream-syncs", &P.stream_syncs }, { "--rt-copies", &P.rt_copies },
		{ "--rt-launches", &P.rt_launches }, { "--rt-syncs", &P.rt_syncs },
		{ "--cudart", &P.cudart }, { "--threads", &P.threads },
	};
	pthread_t th[64];

	for (int i = 1; i < argc; i++) {
		size_t k;

		if (!strcmp(argv[i], "--wait-probes")) {
			P.wait_probes = 1;
			continue;
		}
		if (!strcmp(argv[i], "--wait-stdin")) {
			P.wait_stdin = 1;
			continue;
		}
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (!strcmp(argv[i], opts[k].name) && i + 1 < argc) {
				*opts[k].v = num(argv[++i]);
				break;
			}
		if (k == sizeof(opts) / sizeof(opts[0])) {
			fprintf(stderr, "gpu_app: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (P.threads < 1 || P.threads > 64)
		P.threads = 1;
	if (P.wait_probes)
		wait_probes();
	if (P.wait_stdin) {
		char line[64];

		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 5;
	}
	CK(cuInit(0));
	if (P.threads == 1) {
		run(NULL);
	} else {
		for (long t = 0; t < P.threads; t++)
			pthread_create(&th[t], NULL, run, NULL);
		for (long t = 0; t < P.threads; t++)
			pthread_join(th[t], NULL);
	}
	printf("{\"pid\": %d, \"tid\": %ld, \"threads\": %ld, \"launches\": %ld, \"grid\": %ld, "
	       "\"copies\": %ld, \"bytes\": %ld, \"dtod\": %ld, \"memsets\": %ld, \"graphs\": %ld, "
	       "\"graph_kernels\": %ld, \"syncs\": %ld, \"stream_syncs\": %ld, \"rt_copies\": %ld, "
	       "\"rt_launches\": %ld, \"rt_syncs\": %ld, \"cudart\": %ld, \"cudart_calls\": %ld, "
	       "\"cudart_errors\": %ld}\n",
	       getpid(), (long)syscall(SYS_gettid), P.threads, P.launches, P.grid, P.copies, P.bytes,
	       P.dtod, P.memsets, P.graphs, P.graph_kernels, P.syncs, P.stream_syncs, P.rt_copies,
	       P.rt_launches, P.rt_syncs, P.cudart, cudart_calls, cudart_errors);
	return 0;
}
