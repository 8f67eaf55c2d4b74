// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// A real CUDA program with a known plan, for tests/gpu/run.sh (needs a GPU).
// Options (all counts):
//   --launches N --kernel-us U   N kernels that each spin U microseconds on the GPU
//   --copies N --bytes B         N x (HtoD + DtoH) from pinned memory, N x from pageable
//   --graphs N --graph-kernels K a CUDA graph of K kernels (captured), launched N times
//   --syncs N                    cudaDeviceSynchronize after every launch batch
//   --blocking                   cudaDeviceScheduleBlockingSync (waits block, not spin)
//   --wait-stdin                 print "ready", wait for a line on stdin first
// Prints one JSON line of ground truth last.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>
#include <unistd.h>
#include <sys/syscall.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
	fprintf(stderr, "real_app: %s: %s\n", #x, cudaGetErrorString(e_)); exit(3); } } while (0)

__global__ void spin_kernel(long long cycles, int *out)
{
	long long start = clock64();
	while (clock64() - start < cycles)
		;
	if (threadIdx.x == 0 && out)
		out[blockIdx.x] = 1;
}

int main(int argc, char **argv)
{
	long launches = 20, kernel_us = 200, copies = 4, bytes = 16 << 20, graphs = 3, gk = 10,
	     syncs = 5;
	int blocking = 0, wait_stdin = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		long *v = !strcmp(a, "--launches") ? &launches : !strcmp(a, "--kernel-us") ? &kernel_us
			: !strcmp(a, "--copies") ? &copies : !strcmp(a, "--bytes") ? &bytes
			: !strcmp(a, "--graphs") ? &graphs : !strcmp(a, "--graph-kernels") ? &gk
			: !strcmp(a, "--syncs") ? &syncs : NULL;
		if (v && i + 1 < argc)
			*v = atol(argv[++i]);
		else if (!strcmp(a, "--blocking"))
			blocking = 1;
		else if (!strcmp(a, "--wait-stdin"))
			wait_stdin = 1;
		else {
			fprintf(stderr, "real_app: bad option %s\n", a);
			return 2;
		}
	}
	if (wait_stdin) {
		char line[16];
		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 5;
	}
	if (blocking)
		CK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));
	int clock_khz = 0, dev = 0;
	CK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
	long long cycles = (long long)clock_khz * kernel_us / 1000;

	int *d_out, *d_buf, *d_buf2;
	void *pinned, *pageable;
	CK(cudaMalloc(&d_out, 1024 * sizeof(int)));
	CK(cudaMalloc(&d_buf, bytes));
	CK(cudaMalloc(&d_buf2, bytes));
	CK(cudaMallocHost(&pinned, bytes));
	pageable = malloc(bytes);
	memset(pageable, 1, bytes);
	memset(pinned, 1, bytes);

	long per_sync = syncs ? (launches + syncs - 1) / syncs : launches, done = 0, nsync = 0;
	for (long i = 0; i < launches; i++) {
		spin_kernel<<<1, 32>>>(cycles, d_out);
		CK(cudaGetLastError());
		if (syncs && (++done % per_sync == 0 || i == launches - 1)) {
			CK(cudaDeviceSynchronize());
			nsync++;
		}
	}
	for (long i = 0; i < copies; i++) {
		CK(cudaMemcpy(d_buf, pinned, bytes, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(pinned, d_buf, bytes, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(d_buf, pageable, bytes, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(pageable, d_buf, bytes, cudaMemcpyDeviceToHost));
	}
	CK(cudaMemcpy(d_buf2, d_buf, bytes, cudaMemcpyDeviceToDevice));

	cudaStream_t s;
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	CK(cudaStreamCreate(&s));
	if (graphs) {
		CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
		for (long k = 0; k < gk; k++)
			spin_kernel<<<1, 32, 0, s>>>(cycles / 10, d_out);
		CK(cudaStreamEndCapture(s, &graph));
		CK(cudaGraphInstantiate(&exec, graph, 0));
		for (long i = 0; i < graphs; i++)
			CK(cudaGraphLaunch(exec, s));
		CK(cudaStreamSynchronize(s));
		CK(cudaGraphExecDestroy(exec));
		CK(cudaGraphDestroy(graph));
	}
	CK(cudaStreamDestroy(s));
	CK(cudaFreeHost(pinned));
	CK(cudaFree(d_buf));
	CK(cudaFree(d_buf2));
	CK(cudaFree(d_out));
	free(pageable);
	printf("{\"pid\": %d, \"launches\": %ld, \"kernel_us\": %ld, \"copies\": %ld, \"bytes\": %ld, "
	       "\"graphs\": %ld, \"graph_kernels\": %ld, \"device_syncs\": %ld, \"stream_syncs\": %d, "
	       "\"blocking\": %d}\n",
	       getpid(), launches, kernel_us, copies, bytes, graphs, gk, nsync, graphs ? 1 : 0, blocking);
	return 0;
}
