/* gpu_copy [MIB] [ITERS]: host<->device copy bandwidth, pinned vs pageable.
 *
 * For each of {pinned (cudaMallocHost), pageable (malloc)} x {H2D, D2H}: one
 * untimed warm-up copy, then ITERS synchronous cudaMemcpy calls of MIB MiB,
 * timed on the host (CLOCK_MONOTONIC, as contactmap's clock) and by CUDA
 * events. Pageable copies are staged by the driver through its own pinned
 * buffers (extra host memcpy, page faults on first touch); pinned ones DMA
 * straight from the buffer. Prints one JSON line: the exact number of copies
 * of each kind, bytes, and GB/s. Built only where nvcc exists. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
	fprintf(stderr, "gpu_copy: %s: %s\n", #call, cudaGetErrorString(e_)); exit(100); } } while (0)

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct result {
	long long host_ns;
	float event_ms;
};

static struct result run(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, long iters)
{
	cudaEvent_t a, b;
	struct result r;
	long long t0;

	CK(cudaMemcpy(dst, src, bytes, kind));	/* warm-up, untimed */
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	t0 = now_ns();
	CK(cudaEventRecord(a, 0));
	for (long i = 0; i < iters; i++)
		CK(cudaMemcpy(dst, src, bytes, kind));
	CK(cudaEventRecord(b, 0));
	CK(cudaEventSynchronize(b));
	r.host_ns = now_ns() - t0;
	CK(cudaEventElapsedTime(&r.event_ms, a, b));
	CK(cudaEventDestroy(a));
	CK(cudaEventDestroy(b));
	return r;
}

static void print(const char *name, struct result r, size_t bytes, long iters, const char *sep)
{
	double total = (double)bytes * iters;

	printf("\"%s\":{\"copies\":%ld,\"bytes\":%.0f,\"host_ns\":%lld,\"event_ms\":%.3f,"
	       "\"gb_per_s\":%.2f,\"gb_per_s_events\":%.2f}%s",
	       name, iters + 1, total + bytes, r.host_ns, r.event_ms,
	       r.host_ns > 0 ? total / r.host_ns : 0.0,
	       r.event_ms > 0 ? total / (r.event_ms * 1e6) : 0.0, sep);
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64, iters = argc > 2 ? atol(argv[2]) : 20;
	size_t bytes = (size_t)mib << 20;
	void *pinned, *pageable, *dev;
	struct result ph, pd, gh, gd;
	char name[256] = "";
	cudaDeviceProp prop;
	int d;

	if (mib < 1 || iters < 1 || argc > 3) {
		fprintf(stderr, "usage: gpu_copy [MIB] [ITERS]\n");
		return 2;
	}
	CK(cudaGetDevice(&d));
	CK(cudaGetDeviceProperties(&prop, d));
	strncpy(name, prop.name, sizeof(name) - 1);
	CK(cudaMalloc(&dev, bytes));
	CK(cudaMallocHost(&pinned, bytes));
	pageable = malloc(bytes);
	if (!pageable) {
		perror("gpu_copy: malloc");
		return 100;
	}
	memset(pinned, 1, bytes);
	memset(pageable, 1, bytes);
	ph = run(dev, pinned, bytes, cudaMemcpyHostToDevice, iters);
	pd = run(pinned, dev, bytes, cudaMemcpyDeviceToHost, iters);
	gh = run(dev, pageable, bytes, cudaMemcpyHostToDevice, iters);
	gd = run(pageable, dev, bytes, cudaMemcpyDeviceToHost, iters);
	printf("{\"bench\":\"gpu_copy\",\"pid\":%d,\"device\":\"%s\",\"mib\":%ld,\"iters\":%ld,",
	       getpid(), name, mib, iters);
	print("pinned_h2d", ph, bytes, iters, ",");
	print("pinned_d2h", pd, bytes, iters, ",");
	print("pageable_h2d", gh, bytes, iters, ",");
	print("pageable_d2h", gd, bytes, iters, "}\n");
	CK(cudaFreeHost(pinned));
	CK(cudaFree(dev));
	free(pageable);
	return 0;
}
