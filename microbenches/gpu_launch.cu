/* gpu_launch [LAUNCHES]: the CPU-side cost of launching an empty kernel.
 *
 *   async   LAUNCHES launches back to back, one cudaDeviceSynchronize at the
 *           end: ns per launch is the launch path alone (driver + queue)
 *   sync    LAUNCHES launches, each followed by cudaDeviceSynchronize: ns per
 *           launch+wait round trip (what a small-batch inference step pays)
 * One untimed warm-up launch first (module load, context set-up). Prints one
 * JSON line with the exact number of launches and syncs of each loop. Built
 * only where nvcc exists. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
	fprintf(stderr, "gpu_launch: %s: %s\n", #call, cudaGetErrorString(e_)); exit(100); } } while (0)

__global__ void empty_kernel(void) {}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	long long t0, t_async, t_sync;
	char name[256] = "";
	cudaDeviceProp prop;
	int d;

	if (n < 1 || argc > 2) {
		fprintf(stderr, "usage: gpu_launch [LAUNCHES]\n");
		return 2;
	}
	CK(cudaGetDevice(&d));
	CK(cudaGetDeviceProperties(&prop, d));
	strncpy(name, prop.name, sizeof(name) - 1);
	empty_kernel<<<1, 1>>>();	/* warm-up */
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());

	t0 = now_ns();
	for (long i = 0; i < n; i++)
		empty_kernel<<<1, 1>>>();
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());
	t_async = now_ns() - t0;

	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		empty_kernel<<<1, 1>>>();
		CK(cudaDeviceSynchronize());
	}
	CK(cudaGetLastError());
	t_sync = now_ns() - t0;

	printf("{\"bench\":\"gpu_launch\",\"pid\":%d,\"device\":\"%s\",\"launches_total\":%ld,"
	       "\"async\":{\"launches\":%ld,\"syncs\":1,\"elapsed_ns\":%lld,\"ns_per_launch\":%.1f},"
	       "\"sync\":{\"launches\":%ld,\"syncs\":%ld,\"elapsed_ns\":%lld,\"ns_per_launch\":%.1f}}\n",
	       getpid(), name, 2 * n + 1, n, t_async, (double)t_async / n, n, n, t_sync,
	       (double)t_sync / n);
	return 0;
}
