// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// A real CUDA program with a known plan, for tests/gpu/run.sh (needs a GPU).
// Options (all counts):
//   --launches N --kernel-us U   N kernels that each spin U microseconds on the GPU
//   --copies N --bytes B         N x (HtoD + DtoH) from pinned memory, N x from pageable
//   --graphs N --graph-kernels K a CUDA graph of K kernels (captured: K more
//                                cudaLaunchKernel calls that run nothing), launched N times
//   --syncs N                    cudaDeviceSynchronize after every launch batch
//   --blocking                   cudaDeviceScheduleBlockingSync (waits block, not spin)
//   --seconds S                  instead: batches of 10 launches and a sync for S seconds
//   --fork                       then fork a child that exit()s; the parent waits (20 s at most)
//   --wait-stdin                 set CUDA up (both libraries mapped), print "ready",
//                                wait for a line on stdin first
// Prints one JSON line of ground truth last: the plan, what was done, and the
// CUDA-event time of the plain launches (from the first launch to the last sync).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cuda_runtime.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

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

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long launches = 20, kernel_us = 200, copies = 4, bytes = 16 << 20, graphs = 3, gk = 10,
	     syncs = 5, seconds = 0;
	int blocking = 0, wait_stdin = 0, do_fork = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		long *v = !strcmp(a, "--launches") ? &launches : !strcmp(a, "--kernel-us") ? &kernel_us
			: !strcmp(a, "--copies") ? &copies : !strcmp(a, "--bytes") ? &bytes
			: !strcmp(a, "--graphs") ? &graphs : !strcmp(a, "--graph-kernels") ? &gk
			: !strcmp(a, "--syncs") ? &syncs : !strcmp(a, "--seconds") ? &seconds : NULL;
		if (v && i + 1 < argc)
			*v = atol(argv[++i]);
		else if (!strcmp(a, "--blocking"))
			blocking = 1;
		else if (!strcmp(a, "--wait-stdin"))
			wait_stdin = 1;
		else if (!strcmp(a, "--fork"))
			do_fork = 1;
		else {
			fprintf(stderr, "real_app: bad option %s\n", a);
			return 2;
		}
	}
	if (blocking)
		CK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));
	if (wait_stdin) {
		char line[16];

		/* the runtime opens libcuda at its first call: before contactmap -p
		 * looks, so that both libraries are there to probe */
		CK(cudaFree(0));
		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 5;
	}
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

	cudaEvent_t ev0, ev1;
	float event_ms = 0;
	long nsync = 0, done = 0;
	CK(cudaEventCreate(&ev0));
	CK(cudaEventCreate(&ev1));
	CK(cudaEventRecord(ev0, 0));
	if (seconds > 0) {
		double end = mono_s() + seconds;

		launches = 0;
		while (mono_s() < end) {
			for (int k = 0; k < 10; k++, launches++)
				spin_kernel<<<1, 32>>>(cycles, d_out);
			CK(cudaGetLastError());
			CK(cudaDeviceSynchronize());
			nsync++;
		}
	} else {
		long per_sync = syncs ? (launches + syncs - 1) / syncs : launches;

		for (long i = 0; i < launches; i++) {
			spin_kernel<<<1, 32>>>(cycles, d_out);
			CK(cudaGetLastError());
			if (syncs && (++done % per_sync == 0 || i == launches - 1)) {
				CK(cudaDeviceSynchronize());
				nsync++;
			}
		}
	}
	CK(cudaEventRecord(ev1, 0));
	CK(cudaEventSynchronize(ev1));
	CK(cudaEventElapsedTime(&event_ms, ev0, ev1));
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

	/* a child of a CUDA process: it must not hang on its way out */
	long child_pid = 0, child_status = -1;
	double child_ms = 0;
	if (do_fork) {
		double t0 = mono_s();
		pid_t c = fork();
		int st = 0;

		if (c == 0)
			exit(0);
		child_pid = c;
		while (c > 0 && mono_s() - t0 < 20) {
			if (waitpid(c, &st, WNOHANG) == c) {
				child_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
				break;
			}
			usleep(1000);
		}
		child_ms = (mono_s() - t0) * 1000;
		if (child_status < 0) {
			kill(c, SIGKILL);
			waitpid(c, &st, 0);
		}
	}
	CK(cudaFreeHost(pinned));
	CK(cudaFree(d_buf));
	CK(cudaFree(d_buf2));
	CK(cudaFree(d_out));
	free(pageable);
	printf("{\"pid\": %d, \"launches\": %ld, \"kernel_us\": %ld, \"copies\": %ld, \"bytes\": %ld, "
	       "\"graphs\": %ld, \"graph_kernels\": %ld, \"captured_launches\": %ld, "
	       "\"device_syncs\": %ld, \"stream_syncs\": %d, \"blocking\": %d, \"seconds\": %ld, "
	       "\"event_ms\": %.4f, \"child_pid\": %ld, \"child_status\": %ld, \"child_ms\": %.1f}\n",
	       getpid(), launches, kernel_us, copies, bytes, graphs, gk, graphs ? gk : 0L, nsync,
	       graphs ? 1 : 0, blocking, seconds, event_ms, child_pid, child_status, child_ms);
	return 0;
}
