// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The per-event cost of contactmap's GPU transports, measured from inside a
 * traced program: N calls of the agent's contactmap_gpu_hook() with 1 and
 * with 64 records, and N calls of the (fake) driver's cuLaunchKernel and
 * cuCtxSynchronize. Run it bare, then under contactmap; the differences are
 * what the hook's uprobe and the driver's uprobes cost. Prints one JSON line.
 *
 *   hookbench N    (CUDA_INJECTION64_PATH names the agent, as contactmap sets it)
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cuda.h>
#include "contactmap_gpu.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	const char *agent = getenv("CUDA_INJECTION64_PATH");
	void (*hook)(const struct cm_gpu_rec *, unsigned) = NULL;
	static struct cm_gpu_rec recs[CM_GPU_BATCH];
	uint64_t t0, hook1 = 0, hook64 = 0, launch, sync;
	void *h;

	if (cuInit(0) != CUDA_SUCCESS)
		return 3;
	h = agent ? dlopen(agent, RTLD_NOLOAD | RTLD_NOW) : NULL;
	if (h)
		hook = (void (*)(const struct cm_gpu_rec *, unsigned))dlsym(h, "contactmap_gpu_hook");
	for (int i = 0; i < CM_GPU_BATCH; i++) {
		recs[i].type = CM_GPU_REC_API;
		recs[i].api = CM_GA_cuLaunchKernel;
		recs[i].start_ns = 1000;
		recs[i].end_ns = 1000 + 100 * i;
	}
	if (hook) {
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			hook(recs, 1);
		hook1 = now_ns() - t0;
		t0 = now_ns();
		for (long i = 0; i < n / 64 + 1; i++)
			hook(recs, CM_GPU_BATCH);
		hook64 = now_ns() - t0;
	}
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		cuLaunchKernel(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
	launch = now_ns() - t0;
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		cuCtxSynchronize();
	sync = now_ns() - t0;
	printf("{\"pid\": %d, \"n\": %ld, \"hook\": %s, \"hook_call_1_ns\": %.1f, \"hook_call_64_ns\": %.1f, "
	       "\"hook_per_record_64_ns\": %.1f, \"cuLaunchKernel_ns\": %.1f, \"cuCtxSynchronize_ns\": %.1f, "
	       "\"hook_calls_64\": %ld}\n",
	       (int)getpid(), n, hook ? "true" : "false", hook ? (double)hook1 / n : 0,
	       hook ? (double)hook64 / (n / 64 + 1) : 0, hook ? (double)hook64 / (n / 64 + 1) / 64 : 0,
	       (double)launch / n, (double)sync / n, n / 64 + 1);
	return 0;
}
