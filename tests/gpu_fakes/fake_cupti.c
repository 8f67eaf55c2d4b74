// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A fake libcupti for contactmap's GPU tests, built twice: libcupti.so.13
 * (CUDA 13 record layouts) and, with -DFAKE_CUPTI_MAJOR=12, libcupti.so.12
 * (CUDA 12 layouts). It exports the cupti* functions the agent (and a
 * kineto-like client in gpu_app) use, with CUPTI's documented semantics, and
 * drives them as CUPTI would: the fake driver (fake_cuda.c) reports each call
 * through fakecupti_api(); enabled calls become callbacks with real
 * CUpti_CallbackData, and on exit the work they did becomes activity records
 * written into the client's buffers.
 *
 * Buffers behave as the real CUPTI's do, which is what the agent must cope
 * with: a full buffer is handed back from CUPTI's own worker thread
 * ("cupti-worker"); cuptiActivityFlushPeriod wakes that thread but returns
 * only full buffers; cuptiActivityFlushAll returns every buffer, full or not,
 * on the caller's thread; buffers go to whichever callbacks are registered
 * when they are handed back (kineto registering its own takes them over);
 * in a forked child cuptiActivityFlushAll finds no worker and hangs (here: a
 * bounded sleep, FAKE_CUPTI_FORK_HANG_MS, 3000, and a message); CUPTI 13
 * refuses a driver older than 13.0 (cuptiSubscribe: CUPTI_ERROR_NOT_INITIALIZED).
 *
 * Device times are a deterministic function of the call, so tests can know
 * them exactly:
 *   kernel               gridDimX x 1000 ns
 *   graph launch         (uintptr_t)hGraphExec kernels of 2000 ns each, all
 *                        under the launch's correlation id, graphId the same
 *                        number (nonzero), graphNodeId 1..K
 *   copy HtoD/DtoH       bytes / 10 ns from pinned memory, bytes / 4 from
 *                        pageable (fakecuda_host_memory_kind); DtoD bytes / 100
 *   peer-to-peer copy    a MEMCPY2 record (CUpti_ActivityMemcpyPtoP4), bytes / 50
 *   2D copy              one MEMCPY record of width x height bytes
 *   batched copy         one MEMCPY record with copyCount = the batch's count
 *                        (CUDA 13; CUDA 12 records have no copyCount)
 *   memset               bytes / 50 ns
 *   synchronize          a SYNCHRONIZATION record spanning the call; also an
 *                        event query that finds the event pending (cuEventQuery
 *                        in the fake always does), unless
 *                        cuptiActivityEnableAllSyncRecords(0)
 *   overhead             one 5000 ns CUPTI_ACTIVITY_OVERHEAD_CUPTI_RESOURCE
 *
 * FAKE_CUPTI, a comma-separated list, picks a scenario:
 *   multisub      cuptiSubscribe fails: another profiler holds CUPTI
 *   noclockcb     no timestamp callback: CUPTI's own clock (CLOCK_REALTIME)
 *   tsnocb        the callback times the records, but cuptiGetTimestamp
 *                 keeps CUPTI's own clock
 *   cbignored     the callback is accepted and never used: records keep
 *                 CUPTI's own clock
 *   nodomain      cuptiEnableDomain is not supported
 *   corrbase=N    correlation ids start at N (N near 2^32: they wrap)
 *   zerots=N      every Nth kernel record has no timestamps (start = end = 0)
 *   dropped=N     the first completed buffer reports N dropped records
 *   noperiod      cuptiActivityFlushPeriod is not supported
 */
#include <pthread.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cuda.h>
#include <cupti.h>

#define EXPORT __attribute__((visibility("default")))

#ifndef FAKE_CUPTI_MAJOR
#define FAKE_CUPTI_MAJOR 13
#endif
#if FAKE_CUPTI_MAJOR == 12
typedef CUpti_ActivityKernel9 kernel_rec;
typedef CUpti_ActivityMemcpy5 memcpy_rec;
typedef CUpti_ActivitySynchronization sync_rec_t;
#define FAKE_CUPTI_VERSION 28	/* CUDA 12.9 Update 1 */
#else
typedef CUpti_ActivityKernel10 kernel_rec;
typedef CUpti_ActivityMemcpy6 memcpy_rec;
typedef CUpti_ActivitySynchronization2 sync_rec_t;
#define FAKE_CUPTI_VERSION CUPTI_API_VERSION
#endif

static struct {
	int multisub, noclockcb, tsnocb, cbignored, nodomain, noperiod;
	uint64_t zerots, dropped;
	uint32_t corrbase;
	long fork_hang_ms;
} S;

static pid_t my_pid;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static CUpti_CallbackFunc subscriber_cb;
static void *subscriber_data;
static int subscribed;
static unsigned char enabled[CUPTI_CB_DOMAIN_SIZE][4096];
static unsigned char activity[64];
static CUpti_BuffersCallbackRequestFunc buf_request;
static CUpti_BuffersCallbackCompleteFunc buf_complete;
static CUpti_TimestampCallbackFunc ts_cb;
static uint8_t *cur;
static size_t cur_size, cur_used;
static uint32_t corr_next;
static uint64_t kernels_seen;
static int dropped_reported, overhead_done, worker_started, worker_busy;
static unsigned period_ms;

/* full buffers waiting for the worker thread */
#define QUEUE 64
static struct full { uint8_t *buf; size_t size, used; } queue[QUEUE];
static unsigned nqueue;

static void scenario(void)
{
	static int done;
	const char *s = getenv("FAKE_CUPTI"), *h = getenv("FAKE_CUPTI_FORK_HANG_MS");
	char buf[256], *tok, *save = NULL;

	if (done++)
		return;
	S.corrbase = 1;
	S.fork_hang_ms = h ? atol(h) : 3000;
	if (!s)
		return;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "multisub"))
			S.multisub = 1;
		else if (!strcmp(tok, "noclockcb"))
			S.noclockcb = 1;
		else if (!strcmp(tok, "tsnocb"))
			S.tsnocb = 1;
		else if (!strcmp(tok, "cbignored"))
			S.cbignored = 1;
		else if (!strcmp(tok, "nodomain"))
			S.nodomain = 1;
		else if (!strcmp(tok, "noperiod"))
			S.noperiod = 1;
		else if (!strncmp(tok, "corrbase=", 9))
			S.corrbase = (uint32_t)strtoull(tok + 9, NULL, 0);
		else if (!strncmp(tok, "zerots=", 7))
			S.zerots = strtoull(tok + 7, NULL, 0);
		else if (!strncmp(tok, "dropped=", 8))
			S.dropped = strtoull(tok + 8, NULL, 0);
		else
			fprintf(stderr, "fake libcupti: unknown FAKE_CUPTI item '%s'\n", tok);
	}
}

__attribute__((constructor)) static void init(void)
{
	scenario();
	corr_next = S.corrbase;
	my_pid = getpid();
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

/* The records' clock: the client's callback if registered (and used), else
 * CUPTI's own, CLOCK_REALTIME */
static uint64_t now(void)
{
	return ts_cb && !S.cbignored ? ts_cb() : clock_ns(CLOCK_REALTIME);
}

/* ---- the API -------------------------------------------------------------- */

EXPORT CUptiResult cuptiGetResultString(CUptiResult r, const char **str)
{
	switch (r) {
	case CUPTI_SUCCESS: *str = "CUPTI_SUCCESS"; break;
	case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
		*str = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"; break;
	case CUPTI_ERROR_NOT_SUPPORTED: *str = "CUPTI_ERROR_NOT_SUPPORTED"; break;
	case CUPTI_ERROR_NOT_INITIALIZED: *str = "CUPTI_ERROR_NOT_INITIALIZED"; break;
	default: *str = "CUPTI_ERROR_UNKNOWN (fake)";
	}
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiGetVersion(uint32_t *v)
{
	*v = FAKE_CUPTI_VERSION;
	return CUPTI_SUCCESS;
}

static int driver_version(void)
{
	void *cuda = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
	CUresult (*get)(int *) = cuda ? (CUresult (*)(int *))dlsym(cuda, "cuDriverGetVersion") : NULL;
	int v = 0;

	if (get)
		get(&v);
	if (cuda)
		dlclose(cuda);
	return v;
}

EXPORT CUptiResult cuptiSubscribe(CUpti_SubscriberHandle *sub, CUpti_CallbackFunc cb, void *data)
{
	if (S.multisub || subscribed)
		return CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
	/* a CUPTI newer than the driver cannot talk to it */
	if (driver_version() / 1000 < FAKE_CUPTI_MAJOR)
		return CUPTI_ERROR_NOT_INITIALIZED;
	subscribed = 1;
	subscriber_cb = cb;
	subscriber_data = data;
	*sub = (CUpti_SubscriberHandle)(uintptr_t)0x5b5b;
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiUnsubscribe(CUpti_SubscriberHandle sub)
{
	subscribed = 0;
	subscriber_cb = NULL;
	return CUPTI_SUCCESS;
}

/* Whether this copy of the fake has a subscriber: the fake driver reports to it. */
EXPORT int fakecupti_active(void)
{
	return subscribed || buf_complete;
}

EXPORT CUptiResult cuptiEnableCallback(uint32_t enable, CUpti_SubscriberHandle sub,
				       CUpti_CallbackDomain d, CUpti_CallbackId cbid)
{
	if (d <= 0 || d >= CUPTI_CB_DOMAIN_SIZE || cbid >= 4096)
		return CUPTI_ERROR_INVALID_PARAMETER;
	enabled[d][cbid] = !!enable;
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiEnableDomain(uint32_t enable, CUpti_SubscriberHandle sub, CUpti_CallbackDomain d)
{
	if (S.nodomain)
		return CUPTI_ERROR_NOT_SUPPORTED;
	if (d <= 0 || d >= CUPTI_CB_DOMAIN_SIZE)
		return CUPTI_ERROR_INVALID_PARAMETER;
	memset(enabled[d], !!enable, sizeof(enabled[d]));
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiActivityEnable(CUpti_ActivityKind k)
{
	if ((unsigned)k >= sizeof(activity))
		return CUPTI_ERROR_NOT_SUPPORTED;
	activity[k] = 1;
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiActivityDisable(CUpti_ActivityKind k)
{
	if ((unsigned)k < sizeof(activity))
		activity[k] = 0;
	return CUPTI_SUCCESS;
}

/* Event and stream queries that found work pending make records unless this is off. */
static int all_sync_records = 1;

EXPORT CUptiResult cuptiActivityEnableAllSyncRecords(uint8_t enable)
{
	all_sync_records = enable;
	return CUPTI_SUCCESS;
}

/* Process-wide: a later caller's callbacks replace the earlier ones, buffers
 * already handed out included. */
EXPORT CUptiResult cuptiActivityRegisterCallbacks(CUpti_BuffersCallbackRequestFunc req,
						  CUpti_BuffersCallbackCompleteFunc comp)
{
	pthread_mutex_lock(&lock);
	buf_request = req;
	buf_complete = comp;
	pthread_mutex_unlock(&lock);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiActivityRegisterTimestampCallback(CUpti_TimestampCallbackFunc f)
{
	if (S.noclockcb)
		return CUPTI_ERROR_NOT_SUPPORTED;
	if (!f)
		return CUPTI_ERROR_INVALID_PARAMETER;
	ts_cb = f;
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiGetTimestamp(uint64_t *t)
{
	*t = S.tsnocb ? clock_ns(CLOCK_REALTIME) : now();
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiSetThreadIdType(CUpti_ActivityThreadIdType t)
{
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiActivityGetNumDroppedRecords(CUcontext ctx, uint32_t stream, size_t *n)
{
	*n = 0;
	if (S.dropped && !__atomic_exchange_n(&dropped_reported, 1, __ATOMIC_ACQ_REL))
		*n = S.dropped;
	return CUPTI_SUCCESS;
}

static size_t record_size(CUpti_ActivityKind k)
{
	switch (k) {
	case CUPTI_ACTIVITY_KIND_KERNEL:
	case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: return sizeof(kernel_rec);
	case CUPTI_ACTIVITY_KIND_MEMCPY: return sizeof(memcpy_rec);
	case CUPTI_ACTIVITY_KIND_MEMCPY2: return sizeof(CUpti_ActivityMemcpyPtoP4);
	case CUPTI_ACTIVITY_KIND_MEMSET: return sizeof(CUpti_ActivityMemset4);
	case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: return sizeof(sync_rec_t);
	case CUPTI_ACTIVITY_KIND_OVERHEAD: return sizeof(CUpti_ActivityOverhead3);
	default: return 0;
	}
}

EXPORT CUptiResult cuptiActivityGetNextRecord(uint8_t *buf, size_t valid, CUpti_Activity **rec)
{
	size_t off = 0;

	if (*rec) {
		size_t sz = record_size((*rec)->kind);

		if (!sz)
			return CUPTI_ERROR_INVALID_KIND;
		off = (size_t)((uint8_t *)*rec - buf) + sz;
	}
	if (off >= valid)
		return CUPTI_ERROR_MAX_LIMIT_REACHED;
	*rec = (CUpti_Activity *)(buf + off);
	return CUPTI_SUCCESS;
}

/* ---- buffers ------------------------------------------------------------------ */

/* Hands one buffer back to the callbacks registered now (outside the lock:
 * the client reads it and calls back into CUPTI). */
static void deliver(uint8_t *b, size_t size, size_t used)
{
	CUpti_BuffersCallbackCompleteFunc f;

	pthread_mutex_lock(&lock);
	f = buf_complete;
	pthread_mutex_unlock(&lock);
	if (b && f)
		f(NULL, 0, b, size, used);
}

/* CUPTI's worker: full buffers, and a wake-up every flush period that
 * still returns full buffers only. */
static void *worker(void *arg)
{
	pthread_setname_np(pthread_self(), "cupti-worker");
	pthread_mutex_lock(&lock);
	for (;;) {
		struct full f;

		if (!nqueue) {
			if (period_ms) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += (long)(period_ms % 1000) * 1000000L;
				ts.tv_sec += period_ms / 1000 + ts.tv_nsec / 1000000000L;
				ts.tv_nsec %= 1000000000L;
				pthread_cond_timedwait(&wake, &lock, &ts);
			} else {
				pthread_cond_wait(&wake, &lock);
			}
			continue;
		}
		f = queue[--nqueue];
		worker_busy++;
		pthread_mutex_unlock(&lock);
		deliver(f.buf, f.size, f.used);
		pthread_mutex_lock(&lock);
		worker_busy--;
		pthread_cond_broadcast(&wake);
	}
	return NULL;
}

/* Called with the lock held. */
static void start_worker(void)
{
	pthread_t th;

	if (worker_started++)
		return;
	if (!pthread_create(&th, NULL, worker, NULL))
		pthread_detach(th);
}

/* The current buffer is full: off to the worker (called with the lock held). */
static void queue_current(void)
{
	if (!cur)
		return;
	if (nqueue == QUEUE) {
		/* the worker is far behind: the records are lost, as CUPTI drops them */
		free(cur);
	} else {
		queue[nqueue++] = (struct full){ cur, cur_size, cur_used };
	}
	cur = NULL;
	cur_size = cur_used = 0;
	start_worker();
	pthread_cond_broadcast(&wake);
}

EXPORT CUptiResult cuptiActivityFlushAll(uint32_t flag)
{
	uint8_t *b;
	size_t size, used;

	if (getpid() != my_pid) {
		/* fork copied CUPTI's state, but not its worker thread, and maybe a
		 * lock some other thread held: the buffer goes out unlocked */
		fprintf(stderr, "fake libcupti: cuptiActivityFlushAll in a forked child: CUPTI waits "
			"for a worker that is not there (hangs; the fake gives up after %ld ms)\n",
			S.fork_hang_ms);
		usleep((useconds_t)S.fork_hang_ms * 1000);
		b = cur;
		cur = NULL;
		if (b && buf_complete)
			buf_complete(NULL, 0, b, cur_size, cur_used);
		return CUPTI_SUCCESS;
	}
	pthread_mutex_lock(&lock);
	/* the worker's pending buffers first, then the one being filled */
	while (nqueue) {
		struct full f = queue[--nqueue];

		pthread_mutex_unlock(&lock);
		deliver(f.buf, f.size, f.used);
		pthread_mutex_lock(&lock);
	}
	while (worker_busy)
		pthread_cond_wait(&wake, &lock);
	b = cur;
	size = cur_size;
	used = cur_used;
	cur = NULL;
	cur_size = cur_used = 0;
	pthread_mutex_unlock(&lock);
	deliver(b, size, used);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiActivityFlushPeriod(uint32_t ms)
{
	if (S.noperiod)
		return CUPTI_ERROR_NOT_SUPPORTED;
	pthread_mutex_lock(&lock);
	period_ms = ms;
	start_worker();
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&lock);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult cuptiFinalize(void)
{
	cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
	subscribed = 0;
	subscriber_cb = NULL;
	return CUPTI_SUCCESS;
}

/* ---- activity records ----------------------------------------------------------- */

/* Copies one record into the client's buffer, queueing a full one first. */
static void put(const void *rec, size_t sz)
{
	pthread_mutex_lock(&lock);
	for (int tries = 0; tries < 2; tries++) {
		if (!cur && buf_request) {
			size_t max = 0;

			buf_request(&cur, &cur_size, &max);
			cur_used = 0;
		}
		if (cur && cur_used + sz <= cur_size) {
			memcpy(cur + cur_used, rec, sz);
			cur_used += sz;
			break;
		}
		queue_current();
	}
	pthread_mutex_unlock(&lock);
}

static void kernel_record(uint32_t corr, uint32_t stream, uint64_t start, uint64_t dur,
			  uint32_t graph, uint64_t node)
{
	kernel_rec k;

	memset(&k, 0, sizeof(k));
	k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
	k.registersPerThread = 32;
	k.start = start;
	k.end = start + dur;
	k.completed = k.end;
	k.deviceId = 0;
	k.contextId = 1;
	k.streamId = stream;
	k.gridX = (int32_t)(dur / 1000);
	k.gridY = k.gridZ = 1;
	k.blockX = 32;
	k.blockY = k.blockZ = 1;
	k.correlationId = corr;
	k.name = "fake_kernel";
	k.graphId = graph;
	k.graphNodeId = node;
	if (S.zerots && ++kernels_seen % S.zerots == 0)
		k.start = k.end = k.completed = 0;
	put(&k, sizeof(k));
}

static uint32_t stream_id(CUstream s)
{
	return s ? (uint32_t)(uintptr_t)s : 7;	/* CUPTI's id of the legacy default stream */
}

static int host_kind(const void *p)
{
	static int (*kind)(const void *);

	if (!kind)
		kind = (int (*)(const void *))dlsym(RTLD_DEFAULT, "fakecuda_host_memory_kind");
	return kind ? kind(p) : CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE;
}

static void memcpy_record(uint32_t corr, CUpti_ActivityMemcpyKind kind, const void *host,
			  uint64_t bytes, CUstream s, uint64_t copies)
{
	memcpy_rec m;
	int hk = host ? host_kind(host) : CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
	uint64_t dur = kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOD ? bytes / 100
		       : hk == CUPTI_ACTIVITY_MEMORY_KIND_PINNED ? bytes / 10 : bytes / 4;

	memset(&m, 0, sizeof(m));
	m.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
	m.copyKind = (uint8_t)kind;
	m.srcKind = kind == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD ? (uint8_t)hk : CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
	m.dstKind = kind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH ? (uint8_t)hk : CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
	m.bytes = bytes;
	m.start = now();
	m.end = m.start + dur;
	m.deviceId = 0;
	m.contextId = 1;
	m.streamId = stream_id(s);
	m.correlationId = corr;
#if FAKE_CUPTI_MAJOR >= 13
	m.copyCount = copies;
#endif
	put(&m, sizeof(m));
}

static void ptop_record(uint32_t corr, uint64_t bytes, CUstream s)
{
	CUpti_ActivityMemcpyPtoP4 m;

	memset(&m, 0, sizeof(m));
	m.kind = CUPTI_ACTIVITY_KIND_MEMCPY2;
	m.copyKind = CUPTI_ACTIVITY_MEMCPY_KIND_PTOP;
	m.srcKind = m.dstKind = CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
	m.bytes = bytes;
	m.start = now();
	m.end = m.start + bytes / 50;
	m.deviceId = 0;
	m.contextId = 1;
	m.streamId = stream_id(s);
	m.srcDeviceId = 1;
	m.dstDeviceId = 0;
	m.correlationId = corr;
	put(&m, sizeof(m));
}

static void memset_record(uint32_t corr, uint64_t bytes)
{
	CUpti_ActivityMemset4 m;

	memset(&m, 0, sizeof(m));
	m.kind = CUPTI_ACTIVITY_KIND_MEMSET;
	m.bytes = bytes;
	m.start = now();
	m.end = m.start + bytes / 50;
	m.streamId = 7;
	m.contextId = 1;
	m.correlationId = corr;
	m.memoryKind = CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
	put(&m, sizeof(m));
}

static void sync_record(uint32_t corr, CUpti_ActivitySynchronizationType t, uint64_t start, CUstream s)
{
	sync_rec_t r;

	memset(&r, 0, sizeof(r));
	r.kind = CUPTI_ACTIVITY_KIND_SYNCHRONIZATION;
	r.type = t;
	r.start = start;
	r.end = now();
	r.correlationId = corr;
	r.contextId = 1;
	r.streamId = stream_id(s);
	put(&r, sizeof(r));
}

static void overhead_record(void)
{
	CUpti_ActivityOverhead3 o;

	memset(&o, 0, sizeof(o));
	o.kind = CUPTI_ACTIVITY_KIND_OVERHEAD;
	o.overheadKind = CUPTI_ACTIVITY_OVERHEAD_CUPTI_RESOURCE;
	o.objectKind = CUPTI_ACTIVITY_OBJECT_PROCESS;
	o.start = now();
	o.end = o.start + 5000;
	put(&o, sizeof(o));
}

static CUpti_ActivityMemcpyKind kind_2d(const CUDA_MEMCPY2D *c)
{
	int s = c->srcMemoryType == CU_MEMORYTYPE_HOST, d = c->dstMemoryType == CU_MEMORYTYPE_HOST;

	return s && d ? CUPTI_ACTIVITY_MEMCPY_KIND_HTOH : s ? CUPTI_ACTIVITY_MEMCPY_KIND_HTOD
	       : d ? CUPTI_ACTIVITY_MEMCPY_KIND_DTOH : CUPTI_ACTIVITY_MEMCPY_KIND_DTOD;
}

static void copy_2d(uint32_t corr, const CUDA_MEMCPY2D *c, CUstream s)
{
	CUpti_ActivityMemcpyKind k = kind_2d(c);
	const void *host = k == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD ? c->srcHost
			   : k == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH ? c->dstHost : NULL;

	memcpy_record(corr, k, host, (uint64_t)c->WidthInBytes * c->Height, s, 1);
}

/* The work a finished driver call did, as activity records. */
static void driver_activity(unsigned cbid, const void *p, uint32_t corr, uint64_t enter_ts)
{
	int kern = activity[CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL] || activity[CUPTI_ACTIVITY_KIND_KERNEL];
	int cpy = activity[CUPTI_ACTIVITY_KIND_MEMCPY], set = activity[CUPTI_ACTIVITY_KIND_MEMSET];
	int syn = activity[CUPTI_ACTIVITY_KIND_SYNCHRONIZATION], p2p = activity[CUPTI_ACTIVITY_KIND_MEMCPY2];

	if (activity[CUPTI_ACTIVITY_KIND_OVERHEAD] && !__atomic_exchange_n(&overhead_done, 1, __ATOMIC_ACQ_REL))
		overhead_record();
	switch (cbid) {
	case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel: {
		const cuLaunchKernel_params *k = p;

		if (kern)
			kernel_record(corr, stream_id(k->hStream), now(), (uint64_t)k->gridDimX * 1000, 0, 0);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch: {
		const cuGraphLaunch_params *g = p;
		uint64_t t = now();

		for (uintptr_t i = 0; kern && i < (uintptr_t)g->hGraph; i++, t += 2000)
			kernel_record(corr, stream_id(g->hStream), t, 2000, (uint32_t)(uintptr_t)g->hGraph,
				      i + 1);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2:
		if (cpy)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_HTOD,
				      ((const cuMemcpyHtoD_v2_params *)p)->srcHost,
				      ((const cuMemcpyHtoD_v2_params *)p)->ByteCount, NULL, 1);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2:
		if (cpy)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_HTOD,
				      ((const cuMemcpyHtoDAsync_v2_params *)p)->srcHost,
				      ((const cuMemcpyHtoDAsync_v2_params *)p)->ByteCount,
				      ((const cuMemcpyHtoDAsync_v2_params *)p)->hStream, 1);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2:
		if (cpy)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_DTOH,
				      ((const cuMemcpyDtoH_v2_params *)p)->dstHost,
				      ((const cuMemcpyDtoH_v2_params *)p)->ByteCount, NULL, 1);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2:
		if (cpy)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_DTOH,
				      ((const cuMemcpyDtoHAsync_v2_params *)p)->dstHost,
				      ((const cuMemcpyDtoHAsync_v2_params *)p)->ByteCount,
				      ((const cuMemcpyDtoHAsync_v2_params *)p)->hStream, 1);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2:
		if (cpy)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_DTOD, NULL,
				      ((const cuMemcpyDtoD_v2_params *)p)->ByteCount, NULL, 1);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeer:
		if (p2p)
			ptop_record(corr, ((const cuMemcpyPeer_params *)p)->ByteCount, NULL);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyPeerAsync:
		if (p2p)
			ptop_record(corr, ((const cuMemcpyPeerAsync_params *)p)->ByteCount,
				    ((const cuMemcpyPeerAsync_params *)p)->hStream);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2D_v2:
		if (cpy)
			copy_2d(corr, ((const cuMemcpy2D_v2_params *)p)->pCopy, NULL);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpy2DAsync_v2:
		if (cpy)
			copy_2d(corr, ((const cuMemcpy2DAsync_v2_params *)p)->pCopy,
				((const cuMemcpy2DAsync_v2_params *)p)->hStream);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemcpyBatchAsync_v2: {
		const cuMemcpyBatchAsync_v2_params *b = p;
		uint64_t bytes = 0;

		for (size_t i = 0; i < b->count; i++)
			bytes += b->sizes[i];
		/* CUDA 13 folds a batch into one record; CUDA 12 has no copyCount */
		if (cpy && FAKE_CUPTI_MAJOR >= 13)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_DTOD, NULL, bytes, b->hStream, b->count);
		for (size_t i = 0; cpy && FAKE_CUPTI_MAJOR < 13 && i < b->count; i++)
			memcpy_record(corr, CUPTI_ACTIVITY_MEMCPY_KIND_DTOD, NULL, b->sizes[i], b->hStream, 1);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2:
		if (set)
			memset_record(corr, ((const cuMemsetD8_v2_params *)p)->N);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2:
		if (set)
			memset_record(corr, ((const cuMemsetD32_v2_params *)p)->N * 4);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize:
	case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize_v2:
		if (syn)
			sync_record(corr, CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE, enter_ts, NULL);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize:
		if (syn)
			sync_record(corr, CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE, enter_ts,
				    ((const cuStreamSynchronize_params *)p)->hStream);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuEventSynchronize:
		if (syn)
			sync_record(corr, CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE, enter_ts, NULL);
		break;
	}
}

/* ---- the fake driver's entry --------------------------------------------------- */

static __thread struct {
	uint32_t corr[8];
	uint64_t ts[8];
	int depth;
} T;

EXPORT void fakecupti_api(int domain, unsigned cbid, const char *name, const void *params, int site,
			  int ret)
{
	CUpti_CallbackData cd;
	uint64_t corr_data = 0;
	int d;

	if (site == CUPTI_API_ENTER) {
		d = T.depth < 8 ? T.depth : 7;
		T.depth++;
		/* a 32-bit counter: it wraps, and 0 is then an id like the others */
		T.corr[d] = __atomic_fetch_add(&corr_next, 1, __ATOMIC_RELAXED);
		T.ts[d] = now();
	} else {
		T.depth = T.depth > 0 ? T.depth - 1 : 0;
		d = T.depth < 8 ? T.depth : 7;
	}
	if (subscriber_cb && domain > 0 && domain < CUPTI_CB_DOMAIN_SIZE && cbid < 4096 &&
	    enabled[domain][cbid]) {
		memset(&cd, 0, sizeof(cd));
		cd.callbackSite = site;
		cd.functionName = name;
		cd.functionParams = params;
		cd.functionReturnValue = &ret;
		cd.context = (CUcontext)(uintptr_t)0xc0de;
		cd.contextUid = 1;
		cd.correlationData = &corr_data;
		cd.correlationId = T.corr[d];
		subscriber_cb(subscriber_data, domain, cbid, &cd);
	}
	/* a forked child's CUDA does no work (and another thread may have held
	 * the buffer lock when it forked) */
	if (getpid() != my_pid)
		return;
	if (site == CUPTI_API_EXIT && domain == CUPTI_CB_DOMAIN_DRIVER_API && ret == 0)
		driver_activity(cbid, params, T.corr[d], T.ts[d]);
	/* a query that found the event not yet reached: a record by default */
	if (site == CUPTI_API_EXIT && domain == CUPTI_CB_DOMAIN_DRIVER_API &&
	    cbid == CUPTI_DRIVER_TRACE_CBID_cuEventQuery && ret == CUDA_ERROR_NOT_READY &&
	    all_sync_records && activity[CUPTI_ACTIVITY_KIND_SYNCHRONIZATION])
		sync_record(T.corr[d], CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE, T.ts[d], NULL);
}
