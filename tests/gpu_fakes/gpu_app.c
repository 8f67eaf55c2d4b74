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
 *   --graph-gap N        N more cuLaunchKernel after each graph launch (graph
 *                        kernels whose launches are far apart in correlation ids)
 *   --peer N             N x cuMemcpyPeer and N x cuMemcpyPeerAsync of B bytes
 *   --ctx-sync2 N        N x cuCtxSynchronize_v2 (CUDA 13)
 *   --event-queries N    N x cuEventQuery of an event still pending
 *   --rt-launch13 N --rt-peer N --rt-2d N --rt-batch N --rt-free-async N
 *                        runtime stand-ins: __cudaLaunchKernel (CUDA 13's
 *                        <<<>>>), cudaMemcpyPeerAsync, cudaMemcpy2DAsync (B/4 x
 *                        4), cudaMemcpyBatchAsync (4 copies of B/4), cudaFreeAsync
 *   --rt-symbol N --rt-stream-destroy N  runtime calls contactmap does not
 *                        time: cudaMemcpyToSymbol (a cuMemcpyHtoD inside) and
 *                        cudaStreamDestroy (a cuStreamSynchronize inside)
 *   --fork               after the copies, fork a child that makes one CUDA call
 *                        and exit()s; the parent waits for it
 *   --tls-dtor           a thread that launches once, and once more from a TLS
 *                        destructor that runs after the agent's
 *   --profiler K         after the plan, a kineto-like client (torch.profiler):
 *                        registers its own CUPTI buffers, enables kernels, runs
 *                        K launches and 3 cuCtxSynchronize, flushes, disables
 *   --after-launches N --after-syncs N  then more work
 *   --linger-ms MS       sleep before exiting; --quick-exit: _exit (no atexit)
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
#include <sys/wait.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cupti.h>

int fakert_cudaMemcpy(void *dst, const void *src, size_t count, int kind);
int fakert_cudaLaunchKernel(unsigned gx, CUstream s);
int fakert_cudaDeviceSynchronize(void);

int fakert___cudaLaunchKernel(unsigned gx, CUstream s);
int fakert_cudaMemcpyPeerAsync(void *dst, int ddev, const void *src, int sdev, size_t n, CUstream s);
int fakert_cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
			     size_t height, CUstream s);
int fakert_cudaMemcpyBatchAsync(void **dsts, void **srcs, size_t *sizes, size_t count, CUstream s);
int fakert_cudaFreeAsync(void *ptr, CUstream s);
int fakert_cudaMemcpyToSymbol(void *symbol_dev, const void *src, size_t n);
int fakert_cudaStreamDestroy(CUstream s);

static struct plan {
	long launches, grid, stream, copies, bytes, dtod, memsets, graphs, graph_kernels;
	long syncs, stream_syncs, rt_copies, rt_launches, rt_syncs, cudart, threads;
	long graph_gap, peer, ctx_sync2, rt_launch13, rt_peer, rt_2d, rt_batch, rt_free_async;
	long rt_symbol, rt_stream_destroy, profiler, after_launches, after_syncs, linger_ms;
	long event_queries;
	int wait_probes, wait_stdin, fork, tls_dtor, quick_exit;
} P = { .grid = 1, .bytes = 4096, .graph_kernels = 4, .threads = 1 };

static long cudart_errors, cudart_calls, profiler_records, child_pid, child_status = -1, child_ms;

static void die(const char *what, int r)
{
	fprintf(stderr, "gpu_app: %s failed: %d\n", what, r);
	exit(3);
}

#define CK(call) do { CUresult r_ = (call); if (r_ != CUDA_SUCCESS) die(#call, r_); } while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* A function of the libcupti the agent loaded (the program does not link one). */
static void *cupti_sym(const char *name)
{
	static void *h;

	if (!h)
		h = dlopen("libcupti.so.13", RTLD_NOLOAD | RTLD_NOW);
	if (!h)
		h = dlopen("libcupti.so.12", RTLD_NOLOAD | RTLD_NOW);
	return h ? dlsym(h, name) : NULL;
}

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
	if (P.fork) {
		/* records of the calls above may still sit in the agent's batches */
		uint64_t t0 = now_ns();
		pid_t c = fork();
		int st;

		if (c == 0) {
			cuLaunchKernel(NULL, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL);
			exit(0);
		}
		if (c > 0 && waitpid(c, &st, 0) == c) {
			child_pid = c;
			child_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			child_ms = (long)((now_ns() - t0) / 1000000);
		}
	}
	for (long i = 0; i < P.dtod; i++)
		CK(cuMemcpyDtoD(d2, d, B));
	for (long i = 0; i < P.memsets; i++)
		CK(cuMemsetD8(d, 0, B));
	for (long i = 0; i < P.graphs; i++) {
		CK(cuGraphLaunch((CUgraphExec)(uintptr_t)P.graph_kernels, s));
		for (long k = 0; k < P.graph_gap; k++)
			CK(cuLaunchKernel(NULL, (unsigned)P.grid, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
	}
	for (long i = 0; i < P.peer; i++) {
		CK(cuMemcpyPeer(d2, NULL, d, NULL, B));
		CK(cuMemcpyPeerAsync(d2, NULL, d, NULL, B, s));
	}
	for (long i = 0; i < P.ctx_sync2; i++)
		CK(cuCtxSynchronize_v2(NULL));
	for (long i = 0; i < P.event_queries; i++)
		if (cuEventQuery((CUevent)(uintptr_t)0xe7e7) != CUDA_ERROR_NOT_READY)
			die("cuEventQuery", -1);
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
	for (long i = 0; i < P.rt_launch13; i++)
		if (fakert___cudaLaunchKernel((unsigned)P.grid, s))
			die("fakert___cudaLaunchKernel", -1);
	for (long i = 0; i < P.rt_peer; i++)
		if (fakert_cudaMemcpyPeerAsync((void *)(uintptr_t)d2, 1, (void *)(uintptr_t)d, 0, B, s))
			die("fakert_cudaMemcpyPeerAsync", -1);
	for (long i = 0; i < P.rt_2d; i++)
		if (fakert_cudaMemcpy2DAsync((void *)(uintptr_t)d2, B / 4, (void *)(uintptr_t)d, B / 4, B / 4, 4, s))
			die("fakert_cudaMemcpy2DAsync", -1);
	for (long i = 0; i < P.rt_batch; i++) {
		void *dsts[4], *srcs[4];
		size_t sizes[4];

		for (int k = 0; k < 4; k++) {
			dsts[k] = (char *)(uintptr_t)d2 + k * (B / 4);
			srcs[k] = (char *)(uintptr_t)d + k * (B / 4);
			sizes[k] = B / 4;
		}
		if (fakert_cudaMemcpyBatchAsync(dsts, srcs, sizes, 4, s))
			die("fakert_cudaMemcpyBatchAsync", -1);
	}
	for (long i = 0; i < P.rt_free_async; i++) {
		CUdeviceptr x;

		CK(cuMemAlloc(&x, B));
		if (fakert_cudaFreeAsync((void *)(uintptr_t)x, s))
			die("fakert_cudaFreeAsync", -1);
	}
	for (long i = 0; i < P.rt_symbol; i++)
		if (fakert_cudaMemcpyToSymbol((void *)(uintptr_t)d, pinned, B))
			die("fakert_cudaMemcpyToSymbol", -1);
	for (long i = 0; i < P.rt_stream_destroy; i++)
		if (fakert_cudaStreamDestroy(s))
			die("fakert_cudaStreamDestroy", -1);
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

/* ---- a kineto-like CUPTI client (what torch.profiler does) ------------------ */

#define PROF_BUF (64 << 10)
static uint8_t *prof_bufs[256];
static unsigned nprof_bufs;
static long prof_unknown;

static void CUPTIAPI prof_request(uint8_t **buf, size_t *size, size_t *max)
{
	*buf = nprof_bufs < 256 ? aligned_alloc(8, PROF_BUF) : NULL;
	*size = *buf ? PROF_BUF : 0;
	*max = 0;
	if (*buf)
		prof_bufs[nprof_bufs++] = *buf;
}

static void CUPTIAPI prof_complete(CUcontext ctx, uint32_t sid, uint8_t *buf, size_t size, size_t valid)
{
	CUptiResult (*next)(uint8_t *, size_t, CUpti_Activity **) = cupti_sym("cuptiActivityGetNextRecord");
	CUpti_Activity *a = NULL;
	unsigned i;

	for (i = 0; i < nprof_bufs && prof_bufs[i] != buf; i++)
		;
	if (i == nprof_bufs) {
		/* kineto: "bufferCompleted called with unknown buffer", and keeps out of it */
		__atomic_fetch_add(&prof_unknown, 1, __ATOMIC_RELAXED);
		return;
	}
	while (next && valid && next(buf, valid, &a) == CUPTI_SUCCESS)
		if (a->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
			__atomic_fetch_add(&profiler_records, 1, __ATOMIC_RELAXED);
}

static void CUPTIAPI prof_callback(void *ud, CUpti_CallbackDomain d, CUpti_CallbackId cb, const void *data)
{
}

/* CuptiActivityApi::enableCuptiActivities, then disableCuptiActivities */
static void profiler_block(void)
{
	static const CUpti_ActivityKind kinds[] = {
		CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
		CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, CUPTI_ACTIVITY_KIND_RUNTIME,
		CUPTI_ACTIVITY_KIND_DRIVER, CUPTI_ACTIVITY_KIND_OVERHEAD,
	};
	CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *) =
		cupti_sym("cuptiSubscribe");
	CUptiResult (*reg)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc) =
		cupti_sym("cuptiActivityRegisterCallbacks");
	CUptiResult (*enable)(CUpti_ActivityKind) = cupti_sym("cuptiActivityEnable");
	CUptiResult (*disable)(CUpti_ActivityKind) = cupti_sym("cuptiActivityDisable");
	CUptiResult (*flush)(uint32_t) = cupti_sym("cuptiActivityFlushAll");
	CUpti_SubscriberHandle sub;

	if (!subscribe || !reg || !enable || !disable || !flush)
		die("finding libcupti for --profiler", -1);
	/* CuptiCallbackApi::initCallbackApi: fails while the agent subscribes */
	subscribe(&sub, prof_callback, NULL);
	reg(prof_request, prof_complete);
	flush(0);	/* clearActivities */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		enable(kinds[i]);
	for (long i = 0; i < P.profiler; i++)
		CK(cuLaunchKernel(NULL, (unsigned)P.grid, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
	for (int i = 0; i < 3; i++)
		CK(cuCtxSynchronize());
	flush(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		disable(kinds[i]);
}

/* ---- a CUDA call from a TLS destructor that runs after the agent's ------------ */

static pthread_key_t tls_key;

static void tls_dtor(void *arg)
{
	cuLaunchKernel(NULL, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
}

static void *tls_thread(void *arg)
{
	pthread_setspecific(tls_key, (void *)1);
	CK(cuLaunchKernel(NULL, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
	return NULL;
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
		{ "--graph-gap", &P.graph_gap }, { "--peer", &P.peer }, { "--ctx-sync2", &P.ctx_sync2 },
		{ "--rt-launch13", &P.rt_launch13 }, { "--rt-peer", &P.rt_peer }, { "--rt-2d", &P.rt_2d },
		{ "--rt-batch", &P.rt_batch }, { "--rt-free-async", &P.rt_free_async },
		{ "--rt-symbol", &P.rt_symbol }, { "--rt-stream-destroy", &P.rt_stream_destroy },
		{ "--profiler", &P.profiler }, { "--after-launches", &P.after_launches },
		{ "--after-syncs", &P.after_syncs }, { "--linger-ms", &P.linger_ms },
		{ "--event-queries", &P.event_queries },
	};
	static const struct { const char *name; int *v; } flags[] = {
		{ "--wait-probes", &P.wait_probes }, { "--wait-stdin", &P.wait_stdin },
		{ "--fork", &P.fork }, { "--tls-dtor", &P.tls_dtor }, { "--quick-exit", &P.quick_exit },
	};
	pthread_t th[64];

	for (int i = 1; i < argc; i++) {
		size_t k, f;

		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
			if (!strcmp(argv[i], flags[f].name)) {
				*flags[f].v = 1;
				break;
			}
		if (f < sizeof(flags) / sizeof(flags[0]))
			continue;
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
	if (P.tls_dtor) {
		/* created after cuInit, so after the agent's key: its destructor runs later */
		pthread_key_create(&tls_key, tls_dtor);
		pthread_create(&th[0], NULL, tls_thread, NULL);
		pthread_join(th[0], NULL);
	}
	if (P.profiler)
		profiler_block();
	for (long i = 0; i < P.after_launches; i++)
		CK(cuLaunchKernel(NULL, (unsigned)P.grid, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
	for (long i = 0; i < P.after_syncs; i++)
		CK(cuCtxSynchronize());
	printf("{\"pid\": %d, \"tid\": %ld, \"threads\": %ld, \"launches\": %ld, \"grid\": %ld, "
	       "\"copies\": %ld, \"bytes\": %ld, \"dtod\": %ld, \"memsets\": %ld, \"graphs\": %ld, "
	       "\"graph_kernels\": %ld, \"syncs\": %ld, \"stream_syncs\": %ld, \"rt_copies\": %ld, "
	       "\"rt_launches\": %ld, \"rt_syncs\": %ld, \"cudart\": %ld, \"cudart_calls\": %ld, "
	       "\"cudart_errors\": %ld, \"child_pid\": %ld, \"child_status\": %ld, \"child_ms\": %ld, "
	       "\"profiler\": %ld, \"profiler_records\": %ld, \"profiler_unknown_buffers\": %ld}\n",
	       getpid(), (long)syscall(SYS_gettid), P.threads, P.launches, P.grid, P.copies, P.bytes,
	       P.dtod, P.memsets, P.graphs, P.graph_kernels, P.syncs, P.stream_syncs, P.rt_copies,
	       P.rt_launches, P.rt_syncs, P.cudart, cudart_calls, cudart_errors, child_pid,
	       child_status, child_ms, P.profiler, profiler_records, prof_unknown);
	fflush(stdout);
	if (P.linger_ms)
		usleep((useconds_t)P.linger_ms * 1000);
	if (P.quick_exit)
		_exit(0);
	return 0;
}
