// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libcontactmap-cupti.so: contactmap's CUPTI agent.
 *
 * contactmap sets CUDA_INJECTION64_PATH to this library when it wraps a
 * command; the CUDA driver loads it in cuInit and calls InitializeInjection().
 * The agent loads libcupti with dlopen (no link-time dependency; a copy the
 * program already mapped is reused, else the major version of the program's
 * runtime or of the driver is tried first), puts CUPTI's timestamps on
 * CLOCK_MONOTONIC, subscribes to the runtime and driver calls that matter
 * and enables activity records for kernels, copies (peer-to-peer too),
 * memsets, synchronization and CUPTI's own overhead. Everything it learns
 * goes out as struct cm_gpu_rec batches through contactmap_gpu_hook(), a
 * function that does nothing: contactmap reads its arguments with a BPF
 * uprobe, so GPU events share the maps, the clock and the host pid/tid of
 * all the rest.
 *
 * Batching: API records collect per thread (up to CM_GPU_BATCH) and go out
 * when the batch is full, at every synchronize call, every flush period, at
 * thread exit and at process exit; activity records go out as CUPTI
 * delivers its buffers, which the flush thread asks for every period (full
 * or not: CUPTI's own periodic flush returns only full ones). A synchronize
 * call is announced at its start, at once, so that the scheduler's view of
 * the thread during the call becomes GPU wait.
 *
 * What the agent watches for, because a real driver does it:
 *  - another CUPTI client taking the activity records over (torch.profiler's
 *    kineto registers its own buffer callbacks, and disables the kinds when
 *    it stops): synchronize calls go on but their records stop coming; the
 *    agent says so (status taken_over) instead of reporting silence;
 *  - the timestamp callback in place but not used: CUPTI's synchronization
 *    records, which must lie inside their calls' spans, say whether the
 *    clocks agree;
 *  - fork: a child of a CUDA process cannot use CUDA, and must neither flush
 *    CUPTI (it may hang) nor resend the parent's records: its agent is idle.
 *
 * When CUPTI cannot be used (not found, or another profiler holds it) the
 * agent says so, asks contactmap for the uprobe tier and waits (bounded)
 * until the driver carries the uprobes, then lets the program go on.
 *
 * Environment: CONTACTMAP_GPU (set by contactmap: "cupti" or "uprobes"; without
 * it the agent stays idle),
 * CONTACTMAP_CUPTI_LIB (a libcupti to load), CONTACTMAP_GPU_WAIT_MS (how long
 * to wait for uprobes, 2000), CONTACTMAP_CUPTI_FLUSH_MS (200),
 * CONTACTMAP_CUPTI_BUFFER_KB (1024), CONTACTMAP_AGENT_DEBUG.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cupti.h>
#include "agent.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- the hook ----------------------------------------------------------------- */

/*
 * contactmap's uprobe sits on this function's first instruction and reads
 * (recs, n) from the argument registers. noinline and the asm keep the call
 * and the arguments real; the function itself costs a call and a return.
 * It starts with a 5-byte nop, as USDT probes do: the kernel emulates a
 * probed nop (and from 6.17 on x86 can turn a nop5 probe into a call,
 * without a trap), where the bare `ret` the compiler would emit has to be
 * single-stepped out of line, a second trap.
 */
EXPORT __attribute__((noinline, used)) void contactmap_gpu_hook(const struct cm_gpu_rec *recs,
								 unsigned n)
{
#if defined(__x86_64__)
	__asm__ volatile(".byte 0x0f, 0x1f, 0x44, 0x00, 0x00" : : "r"(recs), "r"(n) : "memory");
#else
	__asm__ volatile("nop" : : "r"(recs), "r"(n) : "memory");
#endif
}

/*
 * Never called: when the agent asked for the uprobe tier, contactmap places a
 * uprobe here after the CUDA libraries' ones, and its int3 tells the agent
 * that they are all in place.
 */
EXPORT __attribute__((noinline, used)) void contactmap_gpu_ready(void)
{
	__asm__ volatile("" : : : "memory");
}

/* ---- CUPTI, loaded at run time ------------------------------------------------------- */

static struct {
	void *lib;
	CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
	CUptiResult (*unsubscribe)(CUpti_SubscriberHandle);
	CUptiResult (*enable_callback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
				       CUpti_CallbackId);
	CUptiResult (*activity_enable)(CUpti_ActivityKind);
	CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc,
					  CUpti_BuffersCallbackCompleteFunc);
	CUptiResult (*flush_all)(uint32_t);
	CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
	CUptiResult (*result_string)(CUptiResult, const char **);
	/* optional */
	CUptiResult (*enable_domain)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain);
	CUptiResult (*register_timestamp)(CUpti_TimestampCallbackFunc);
	CUptiResult (*get_timestamp)(uint64_t *);
	CUptiResult (*get_version)(uint32_t *);
	CUptiResult (*set_thread_id_type)(CUpti_ActivityThreadIdType);
	CUptiResult (*flush_period)(uint32_t);
	CUptiResult (*all_sync_records)(uint8_t);
	CUptiResult (*dropped)(CUcontext, uint32_t, size_t *);
} C;

static CUpti_SubscriberHandle subscriber;
static int64_t clock_offset;	/* added to CUPTI timestamps (never with the callback) */
static uint32_t info_flags;	/* CM_GPU_RF_CLOCK_* */
static uint32_t status = CM_GPU_ST_NONE;
static uint64_t status_ns;	/* when status last changed */
static int64_t clock_skew;	/* sync records vs their calls, when they disagree */
static uint32_t cupti_version, driver_version;
static int active;		/* callbacks at work; never in a forked child */
static pid_t agent_pid;
static int debug;
static size_t buffer_bytes = 1 << 20;
static uint64_t dropped_total;

#define dbg(...) do { if (debug) fprintf(stderr, "contactmap-cupti: " __VA_ARGS__); } while (0)

static const char *cupti_err(CUptiResult r)
{
	const char *s = NULL;

	if (C.result_string && C.result_string(r, &s) == CUPTI_SUCCESS && s)
		return s;
	return "unknown CUPTI error";
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t CUPTIAPI mono_cb(void)
{
	return mono_ns();
}

/* ---- per-thread state ------------------------------------------------------------------ */

struct tbatch {
	pthread_mutex_t lock;		/* the owner, the flush thread and exit take it */
	unsigned n;
	struct cm_gpu_rec recs[CM_GPU_BATCH];
	struct tbatch *next;
};

/* The outermost CUDA call in flight on this thread (runtime over driver). */
static __thread struct {
	int rt_depth, drv_depth;
	int nested_sync;	/* synchronize calls in flight inside the outermost call */
	uint16_t api;		/* the outermost call's id; 0 for a runtime call not timed */
	uint8_t kind;
	uint8_t dead;		/* its batch went at thread exit: records go out one by one */
	uint8_t api_seen;	/* it made CUDA calls: not one of CUPTI's threads */
	uint8_t observer;	/* announced as the agent's (or CUPTI's) own thread */
	uint8_t in_exit;	/* in at_exit: the buffers CUPTI hands back here are not a worker's */
	uint32_t tid;		/* gettid(), cached */
	uint64_t start, bytes;
	uint64_t nested_start;
	uint32_t corr;
	struct tbatch *b;
} T;

static uint32_t my_tid(void)
{
	if (!T.tid)
		T.tid = (uint32_t)syscall(SYS_gettid);
	return T.tid;
}

/* The calling thread is the agent's or CUPTI's own: its time is observer cost. */
static void announce_observer(void)
{
	struct cm_gpu_rec me = { .type = CM_GPU_REC_OBSERVER, .tid = my_tid() };

	T.observer = 1;
	contactmap_gpu_hook(&me, 1);
}

/* The threads of this process now, up to max. */
#define MAX_TASKS 512
static int list_tasks(uint32_t *tids, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && n < max && (e = readdir(d)))
		if (atoi(e->d_name) > 0)
			tids[n++] = (uint32_t)atoi(e->d_name);
	if (d)
		closedir(d);
	return n;
}

/*
 * Threads that appeared while the agent set CUPTI up are CUPTI's (its worker
 * thread waits in futex for the whole run, and may never hand a buffer back
 * to tell who it is): observer cost, announced by tid.
 */
static void announce_new_threads(const uint32_t *before, int nbefore)
{
	uint32_t now[MAX_TASKS];
	int n = list_tasks(now, MAX_TASKS);

	for (int i = 0; i < n; i++) {
		int old = 0;

		for (int k = 0; k < nbefore && !old; k++)
			old = now[i] == before[k];
		if (!old && now[i] != my_tid()) {
			struct cm_gpu_rec r = { .type = CM_GPU_REC_OBSERVER, .tid = now[i] };

			dbg("thread %u started with CUPTI: observer\n", now[i]);
			contactmap_gpu_hook(&r, 1);
		}
	}
}

/* ---- API ids from CUPTI callback ids ---------------------------------------------------- */

static unsigned char rt_api[CUPTI_RUNTIME_TRACE_CBID_SIZE];
static unsigned char drv_api[CUPTI_DRIVER_TRACE_CBID_SIZE];
_Static_assert(CM_GA_COUNT < 256, "API ids fit a byte");

static const unsigned char api_class[CM_GA_COUNT] = {
#define X(n, c, l) [CM_GA_##n] = CM_GPU_CLASS_##c,
	CM_GPU_APIS(X)
#undef X
};

/* ---- per-thread API batches ------------------------------------------------------------ */

static pthread_mutex_t batches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tbatch *batches;
static pthread_key_t batch_key;

static void flush_locked(struct tbatch *b)
{
	if (b->n)
		contactmap_gpu_hook(b->recs, b->n);
	b->n = 0;
}

/* pthread key destructor: the thread's last records, then its batch goes */
static void thread_exit(void *arg)
{
	struct tbatch *b = arg, **pp;

	pthread_mutex_lock(&batches_lock);
	for (pp = &batches; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = b->next;
	pthread_mutex_unlock(&batches_lock);
	flush_locked(b);
	pthread_mutex_destroy(&b->lock);
	free(b);
	/* a CUDA call from a TLS destructor that runs after this one must not
	 * find the freed batch */
	T.b = NULL;
	T.dead = 1;
}

static struct tbatch *my_batch(void)
{
	struct tbatch *b = T.b;

	if (b || T.dead)
		return b;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_lock(&batches_lock);
	b->next = batches;
	batches = b;
	pthread_mutex_unlock(&batches_lock);
	pthread_setspecific(batch_key, b);
	T.b = b;
	return b;
}

static void flush_all_batches(void)
{
	pthread_mutex_lock(&batches_lock);
	for (struct tbatch *b = batches; b; b = b->next) {
		pthread_mutex_lock(&b->lock);
		flush_locked(b);
		pthread_mutex_unlock(&b->lock);
	}
	pthread_mutex_unlock(&batches_lock);
}

/* Queues one API record; now = 1 sends the batch (and it) at once. */
static void emit_api(const struct cm_gpu_rec *r, int now)
{
	struct tbatch *b = my_batch();

	if (!b) {
		contactmap_gpu_hook(r, 1);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->recs[b->n++] = *r;
	if (now || b->n == CM_GPU_BATCH)
		flush_locked(b);
	pthread_mutex_unlock(&b->lock);
}

/* fork: the parent's batches are the parent's, and CUDA is unusable in the child */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&batches_lock);
	for (struct tbatch *b = batches; b; b = b->next)
		pthread_mutex_lock(&b->lock);
}

static void atfork_parent(void)
{
	for (struct tbatch *b = batches; b; b = b->next)
		pthread_mutex_unlock(&b->lock);
	pthread_mutex_unlock(&batches_lock);
}

static void atfork_child(void)
{
	struct tbatch *b = batches, *next;

	active = 0;
	for (; b; b = next) {
		next = b->next;
		free(b);	/* locked by atfork_prepare: nobody else is left to use it */
	}
	batches = NULL;
	T.b = NULL;
	T.tid = 0;
	pthread_setspecific(batch_key, NULL);
	pthread_mutex_unlock(&batches_lock);
}

/* ---- what the activity records must show ------------------------------------------------- */

/*
 * Spans of recent synchronize calls (CLOCK_MONOTONIC): every synchronization
 * record CUPTI makes lies inside its call's span when the clocks agree, and
 * decades away when CUPTI kept its own clock although the timestamp callback
 * was accepted.
 */
#define SPANS 64
#define SPAN_SLACK_NS 1000000ULL
#define SKEW_CLOCKS_NS 1000000000LL	/* farther than this: another clock */
static struct { uint64_t start, end; } spans[SPANS];
static unsigned spans_next;
static int clock_verdict;		/* 0 open, 1 agrees, -1 disagrees */
static unsigned clock_misses;

/* Synchronize calls that returned success, and activity records delivered:
 * the first going on without the second means someone else gets them. */
static uint64_t sync_calls, recs_in;
static int sync_records_on;		/* the SYNCHRONIZATION kind is enabled */
#define TAKEOVER_SYNCS 3

static void sync_span(uint64_t start, uint64_t end, uint32_t ret)
{
	unsigned i;

	if (ret)
		return;
	__atomic_fetch_add(&sync_calls, 1, __ATOMIC_RELAXED);
	if (clock_verdict)
		return;
	i = __atomic_fetch_add(&spans_next, 1, __ATOMIC_RELAXED) % SPANS;
	__atomic_store_n(&spans[i].start, start, __ATOMIC_RELAXED);
	__atomic_store_n(&spans[i].end, end, __ATOMIC_RELAXED);
}

/* ---- callbacks -------------------------------------------------------------------------------- */

static void api_begin(unsigned api, CUpti_CallbackDomain d, const CUpti_CallbackData *cd,
		      CUpti_CallbackId cb)
{
	T.api = (uint16_t)api;
	T.bytes = cm_agent_api_bytes(d, cb, cd->functionParams, &T.kind);
	T.corr = cd->correlationId;
	T.start = mono_ns();
	if (api_class[api] == CM_GPU_CLASS_SYNC) {
		/* announced at once: from here the thread waits for the GPU */
		struct cm_gpu_rec r = { .type = CM_GPU_REC_SYNC_BEGIN, .api = (uint16_t)api,
					.tid = my_tid(), .corr = T.corr, .start_ns = T.start };

		emit_api(&r, 1);
	}
}

static uint32_t ret_of(const CUpti_CallbackData *cd)
{
	return cd->functionReturnValue ? *(const uint32_t *)cd->functionReturnValue : 0;
}

static void api_end(const CUpti_CallbackData *cd)
{
	int sync = api_class[T.api] == CM_GPU_CLASS_SYNC;
	struct cm_gpu_rec r = {
		.type = CM_GPU_REC_API, .api = T.api, .flags = sync ? CM_GPU_RF_SYNC : 0,
		.tid = my_tid(), .corr = T.corr, .start_ns = T.start, .end_ns = mono_ns(),
		.bytes = api_class[T.api] == CM_GPU_CLASS_FREE ? 0 : T.bytes, .copy_kind = T.kind,
		.status = ret_of(cd),
	};

	T.api = 0;
	if (sync)
		sync_span(r.start_ns, r.end_ns, r.status);
	emit_api(&r, sync);
}

/*
 * A synchronize call inside another call (cudaFree, cudaMemcpy2D and others
 * the runtime implements with them): not a call the program made, so no row,
 * but its time is GPU wait all the same.
 */
static void nested_sync(int enter, const CUpti_CallbackData *cd)
{
	struct cm_gpu_rec r = { .tid = my_tid(), .corr = cd->correlationId };

	if (enter) {
		if (T.nested_sync++)
			return;
		r.type = CM_GPU_REC_SYNC_BEGIN;
		r.start_ns = T.nested_start = mono_ns();
	} else {
		if (!T.nested_sync || --T.nested_sync)
			return;
		r.type = CM_GPU_REC_SYNC_END;
		r.end_ns = mono_ns();
		sync_span(T.nested_start, r.end_ns, ret_of(cd));
	}
	emit_api(&r, 1);
}

/*
 * Every runtime call is followed (the whole domain is enabled where CUPTI
 * allows it) so that the driver calls a runtime call makes are its
 * internals: a runtime call the agent does not time hides its driver calls
 * as well, instead of having them counted as calls of the program.
 */
static void CUPTIAPI on_callback(void *userdata, CUpti_CallbackDomain d, CUpti_CallbackId cb,
				 const void *data)
{
	const CUpti_CallbackData *cd = data;
	int enter = cd->callbackSite == CUPTI_API_ENTER;
	unsigned api;

	if (!active)
		return;
	T.api_seen = 1;
	if (d == CUPTI_CB_DOMAIN_RUNTIME_API) {
		api = cb < CUPTI_RUNTIME_TRACE_CBID_SIZE ? rt_api[cb] : 0;
		if (enter) {
			if (T.rt_depth++ == 0 && T.drv_depth == 0) {
				if (api)
					api_begin(api, d, cd, cb);
				else
					T.api = 0;
			}
		} else if (T.rt_depth > 0 && --T.rt_depth == 0 && T.drv_depth == 0 && T.api) {
			api_end(cd);
		}
		return;
	}
	if (d != CUPTI_CB_DOMAIN_DRIVER_API)
		return;
	api = cb < CUPTI_DRIVER_TRACE_CBID_SIZE ? drv_api[cb] : 0;
	if (!api)
		return;
	if (T.rt_depth == 0) {
		if (enter && T.drv_depth++ == 0) {
			api_begin(api, d, cd, cb);
			return;
		}
		if (!enter) {
			if (T.drv_depth == 0)
				return;
			if (--T.drv_depth == 0) {
				api_end(cd);
				return;
			}
		}
	}
	/* inside another call: that call is the one counted */
	if (api_class[api] == CM_GPU_CLASS_SYNC && api_class[T.api] != CM_GPU_CLASS_SYNC)
		nested_sync(enter, cd);
}

/* ---- activity buffers --------------------------------------------------------------------------- */

static void CUPTIAPI buffer_requested(uint8_t **buf, size_t *size, size_t *max_records)
{
	*buf = aligned_alloc(8, buffer_bytes);
	*size = *buf ? buffer_bytes : 0;
	*max_records = 0;
}

static void send_info(uint32_t flags);

/* A synchronization record against the spans of the calls it can belong to. */
static void clock_check(uint64_t s, uint64_t e)
{
	unsigned n = __atomic_load_n(&spans_next, __ATOMIC_RELAXED);
	int64_t best = INT64_MAX, mid = (int64_t)(s + (e - s) / 2);

	if (!s || !e || e < s)
		return;
	for (unsigned i = 0; i < SPANS && i < n; i++) {
		uint64_t a = __atomic_load_n(&spans[i].start, __ATOMIC_RELAXED);
		uint64_t b = __atomic_load_n(&spans[i].end, __ATOMIC_RELAXED);
		int64_t d;

		if (!a || b < a)
			continue;
		if (s + SPAN_SLACK_NS >= a && e <= b + SPAN_SLACK_NS) {
			if (!__atomic_exchange_n(&clock_verdict, 1, __ATOMIC_ACQ_REL)) {
				__atomic_or_fetch(&info_flags, CM_GPU_RF_CLOCK_AGREES, __ATOMIC_RELAXED);
				send_info(0);
			}
			return;
		}
		d = mid - (int64_t)(a + (b - a) / 2);
		if (llabs(d) < llabs(best))
			best = d;
	}
	/* far from every call it could belong to, three times: another clock */
	if (best != INT64_MAX && llabs(best) > SKEW_CLOCKS_NS &&
	    __atomic_add_fetch(&clock_misses, 1, __ATOMIC_RELAXED) >= 3 &&
	    !__atomic_exchange_n(&clock_verdict, -1, __ATOMIC_ACQ_REL)) {
		clock_skew = best;
		__atomic_or_fetch(&info_flags, CM_GPU_RF_CLOCK_DISAGREES, __ATOMIC_RELAXED);
		send_info(0);
		fprintf(stderr, "contactmap-cupti: CUPTI's timestamps are %.3f s off the calls' own times "
			"(its clock is not CLOCK_MONOTONIC): the timeline's GPU tracks are shifted\n",
			(double)best / 1e9);
	}
}

static void send_dropped(uint64_t n)
{
	struct cm_gpu_rec r = { .type = CM_GPU_REC_DROPPED, .bytes = n };

	__atomic_fetch_add(&dropped_total, n, __ATOMIC_RELAXED);
	contactmap_gpu_hook(&r, 1);
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
				      size_t valid)
{
	struct cm_gpu_rec batch[CM_GPU_BATCH];
	CUpti_Activity *a = NULL;
	unsigned n = 0;
	uint64_t all = 0;
	size_t dropped = 0;

	if (!active) {
		free(buf);
		return;
	}
	/* CUPTI hands buffers back from a worker thread of its own: contactmap's
	 * cost, not the program's (a thread that made CUDA calls is the program's) */
	if (!T.observer && !T.api_seen && !T.in_exit && my_tid() != (uint32_t)agent_pid)
		announce_observer();
	while (valid && C.next_record(buf, valid, &a) == CUPTI_SUCCESS) {
		all++;
		if (!cm_agent_to_rec(a, &batch[n], clock_offset, cupti_version))
			continue;
		/* a call the agent timed waited for it (stream-wait-event waits on the GPU) */
		if (batch[n].type == CM_GPU_REC_SYNC && !clock_verdict &&
		    batch[n].sync_type != CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_UNKNOWN &&
		    batch[n].sync_type != CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT)
			clock_check(batch[n].start_ns, batch[n].end_ns);
		if (++n == CM_GPU_BATCH) {
			contactmap_gpu_hook(batch, n);
			n = 0;
		}
	}
	if (n)
		contactmap_gpu_hook(batch, n);
	if (all)
		__atomic_fetch_add(&recs_in, all, __ATOMIC_RELAXED);
	if (C.dropped && C.dropped(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped)
		send_dropped(dropped);
	free(buf);
}

/* ---- set-up ----------------------------------------------------------------------------------- */

static void send_info(uint32_t flags)
{
	struct cm_gpu_rec r = {
		.type = CM_GPU_REC_INFO,
		.flags = __atomic_load_n(&info_flags, __ATOMIC_RELAXED) | flags, .status = status,
		.start_ns = (uint64_t)clock_offset, .end_ns = status_ns,
		.bytes = (uint64_t)clock_skew, .device = CM_GPU_REC_VERSION,
		.corr = cupti_version, .stream = driver_version, .tid = my_tid(),
	};

	contactmap_gpu_hook(&r, 1);
}

/*
 * Taken over: synchronize calls went on (their callbacks still come here),
 * but the records CUPTI makes for them did not, even after a forced flush.
 * kineto (torch.profiler) does this: cuptiActivityRegisterCallbacks with its
 * own buffers when it starts, cuptiActivityDisable of the kinds when it
 * stops. Handing them back would take its records, so the agent only says so.
 */
static struct {
	pthread_mutex_t lock;		/* the flush thread and at_exit */
	uint64_t calls, recs, prev;	/* at the last record seen; calls at the last check */
} tk = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void check_takeover_locked(int at_exit)
{
	uint64_t calls = __atomic_load_n(&sync_calls, __ATOMIC_RELAXED);
	uint64_t recs = __atomic_load_n(&recs_in, __ATOMIC_RELAXED), due;

	if (!sync_records_on || status != CM_GPU_ST_CUPTI)
		return;
	if (recs != tk.recs) {
		tk.recs = recs;
		tk.calls = tk.prev = calls;
		return;
	}
	/* calls that ended a period ago have had a flush to bring their records */
	due = at_exit ? calls : tk.prev;
	tk.prev = calls;
	if (due - tk.calls < TAKEOVER_SYNCS)
		return;
	if (!at_exit) {
		/* a buffer held back by a record still in the making comes back too */
		C.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
		if (__atomic_load_n(&recs_in, __ATOMIC_RELAXED) != tk.recs)
			return;
	}
	status = CM_GPU_ST_TAKEN_OVER;
	status_ns = mono_ns();
	send_info(0);
	fprintf(stderr, "contactmap-cupti: another CUPTI client (torch.profiler?) has taken CUPTI's "
		"activity records over: %llu synchronize calls got no records; no device times from here on\n",
		(unsigned long long)(due - tk.calls));
}

static void check_takeover(int at_exit)
{
	pthread_mutex_lock(&tk.lock);
	check_takeover_locked(at_exit);
	pthread_mutex_unlock(&tk.lock);
}

static int find_lib(struct dl_phdr_info *info, size_t size, void *data)
{
	char *want = data;	/* in: a name prefix; out: the path */
	const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;

	base = base ? base + 1 : info->dlpi_name;
	if (base && !strncmp(base, want, strlen(want))) {
		snprintf(data, PATH_MAX, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

/* The path of a mapped library whose name starts with prefix, in out[PATH_MAX]. */
static int mapped(const char *prefix, char *out)
{
	snprintf(out, PATH_MAX, "%s", prefix);
	return dl_iterate_phdr(find_lib, out);
}

/* The CUDA major version CUPTI should match: the program's runtime, else the driver's. */
static int cuda_major(void)
{
	char path[PATH_MAX];
	const char *v;
	void *cuda;
	int (*get)(int *) = NULL, ver = 0;

	cuda = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
	if (cuda)
		*(void **)&get = dlsym(cuda, "cuDriverGetVersion");
	if (get && !get(&ver))
		driver_version = (uint32_t)ver;
	if (cuda)
		dlclose(cuda);
	if (mapped("libcudart.so.", path) && (v = strstr(strrchr(path, '/') ? strrchr(path, '/') : path,
							 ".so.")) && atoi(v + 4) > 0)
		return atoi(v + 4);
	return ver / 1000;
}

#define SYM(field, name, required)                                             \
	do {                                                                   \
		*(void **)&C.field = dlsym(C.lib, name);                        \
		if (!C.field && (required)) {                                  \
			dbg("libcupti has no %s\n", name);                      \
			return -1;                                             \
		}                                                              \
	} while (0)

static int bind_cupti(void)
{
	SYM(subscribe, "cuptiSubscribe", 1);
	SYM(unsubscribe, "cuptiUnsubscribe", 1);
	SYM(enable_callback, "cuptiEnableCallback", 1);
	SYM(activity_enable, "cuptiActivityEnable", 1);
	SYM(register_callbacks, "cuptiActivityRegisterCallbacks", 1);
	SYM(flush_all, "cuptiActivityFlushAll", 1);
	SYM(next_record, "cuptiActivityGetNextRecord", 1);
	SYM(result_string, "cuptiGetResultString", 0);
	SYM(enable_domain, "cuptiEnableDomain", 0);
	SYM(register_timestamp, "cuptiActivityRegisterTimestampCallback", 0);
	SYM(get_timestamp, "cuptiGetTimestamp", 0);
	SYM(get_version, "cuptiGetVersion", 0);
	SYM(set_thread_id_type, "cuptiSetThreadIdType", 0);
	SYM(flush_period, "cuptiActivityFlushPeriod", 0);
	SYM(all_sync_records, "cuptiActivityEnableAllSyncRecords", 0);
	SYM(dropped, "cuptiActivityGetNumDroppedRecords", 0);
	return 0;
}

/*
 * CUPTI's timestamps on CLOCK_MONOTONIC: through the timestamp callback, and
 * then never an offset on top (synchronization records check that CUPTI uses
 * it, see clock_check); without the callback (CUPTI's default clock is
 * CLOCK_REALTIME), an offset measured across the tightest of a few
 * cuptiGetTimestamp calls.
 */
static void set_clock(void)
{
	uint64_t c = 0, t0, t1, best = UINT64_MAX;

	clock_offset = 0;
	if (C.register_timestamp && C.register_timestamp(mono_cb) == CUPTI_SUCCESS) {
		info_flags = CM_GPU_RF_CLOCK_CB;
		return;
	}
	info_flags = 0;
	if (!C.get_timestamp)
		return;
	for (int i = 0; i < 7; i++) {
		t0 = mono_ns();
		if (C.get_timestamp(&c) != CUPTI_SUCCESS)
			return;
		t1 = mono_ns();
		if (t1 - t0 < best) {
			best = t1 - t0;
			clock_offset = (int64_t)(t0 + (t1 - t0) / 2) - (int64_t)c;
		}
	}
	info_flags = CM_GPU_RF_CLOCK_CAL;
	dbg("CUPTI clock calibrated: offset %lld ns (+-%llu)\n", (long long)clock_offset,
	    (unsigned long long)best / 2);
}

/*
 * Loads a libcupti and subscribes: CUPTI_SUCCESS, or why not. The program's
 * own copy first (two CUPTIs in one process do not mix), then
 * CONTACTMAP_CUPTI_LIB, then the libcupti of the CUDA major version in use
 * and the others; one that loads but cannot subscribe (a CUPTI newer than the
 * driver) gives way to the next.
 */
static CUptiResult load_cupti(int *loaded)
{
	char own[PATH_MAX], first[32], *names[8];
	const char *env = getenv("CONTACTMAP_CUPTI_LIB");
	int major = cuda_major(), n = 0;
	CUptiResult r = CUPTI_ERROR_NOT_INITIALIZED;

	*loaded = 0;

	if (mapped("libcupti.so", own)) {
		names[n++] = own;
	} else {
		if (env && *env)
			names[n++] = (char *)env;
		snprintf(first, sizeof(first), "libcupti.so.%d", major);
		if (major > 0 && major != 12 && major != 13)
			names[n++] = first;
		names[n++] = major == 12 ? "libcupti.so.12" : "libcupti.so.13";
		names[n++] = major == 12 ? "libcupti.so.13" : "libcupti.so.12";
		names[n++] = "libcupti.so";
		names[n++] = "/usr/local/cuda/lib64/libcupti.so";
		names[n++] = "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so";
	}
	for (int i = 0; i < n; i++) {
		memset(&C, 0, sizeof(C));
		C.lib = dlopen(names[i], (i == 0 && names[i] == own ? RTLD_NOLOAD : 0) | RTLD_NOW | RTLD_LOCAL);
		if (!C.lib)
			continue;
		if (bind_cupti()) {
			dlclose(C.lib);
			C.lib = NULL;
			continue;
		}
		++*loaded;
		if (C.get_version && C.get_version(&cupti_version) != CUPTI_SUCCESS)
			cupti_version = 0;
		/* before any activity kind is enabled, as CUPTI requires */
		set_clock();
		if (C.set_thread_id_type)
			C.set_thread_id_type(CUPTI_ACTIVITY_THREAD_ID_TYPE_SYSTEM);
		r = C.subscribe(&subscriber, on_callback, NULL);
		dbg("%s (CUPTI %u, driver %u, CUDA %d): %s\n", names[i], cupti_version, driver_version,
		    major, cupti_err(r));
		if (r == CUPTI_SUCCESS || r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED ||
		    names[i] == own)
			return r;
		/* left loaded: a CUPTI that got as far as subscribing may have
		 * started threads that would run unmapped code */
	}
	memset(&C, 0, sizeof(C));
	return r;
}

static void *flush_thread(void *arg)
{
	long ms = (long)(intptr_t)arg;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	pthread_setname_np(pthread_self(), "cm-cupti-flush");
	/* contactmap's thread, not the program's: its time is observer cost */
	announce_observer();
	for (;;) {
		nanosleep(&ts, NULL);
		/* every buffer whose records are complete, full or not: -i and -d
		 * see device rows within a period, and an exit that skips atexit
		 * loses one period at most */
		if (status == CM_GPU_ST_CUPTI)
			C.flush_all(0);
		flush_all_batches();
		check_takeover(0);
	}
	return NULL;
}

static void at_exit(void)
{
	if (!active || getpid() != agent_pid)
		return;	/* a forked child: the parent's records are the parent's */
	T.in_exit = 1;
	if (status == CM_GPU_ST_CUPTI) {
		C.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
		check_takeover(1);
	}
	flush_all_batches();
	send_info(CM_GPU_RF_FINAL);
	if (dropped_total)
		fprintf(stderr, "contactmap-cupti: CUPTI dropped %llu activity records (its buffers were full)\n",
			(unsigned long long)dropped_total);
}

/* No CUPTI: ask contactmap for uprobes and wait until the driver has them. */
static void fall_back(uint32_t why, const char *reason)
{
	long wait_ms = getenv("CONTACTMAP_GPU_WAIT_MS") ? atol(getenv("CONTACTMAP_GPU_WAIT_MS")) : 2000;
	volatile unsigned char *probe = (volatile unsigned char *)(uintptr_t)&contactmap_gpu_ready;
	long waited = 0;

	status = why;
	status_ns = mono_ns();
	if (why != CM_GPU_ST_FORCED)
		fprintf(stderr, "contactmap-cupti: %s; GPU numbers come from uprobes (API spans, no device times)\n",
			reason);
	send_info(0);
	/* contactmap's last uprobe for this process goes on contactmap_gpu_ready */
	while (*probe != 0xcc && waited < wait_ms) {
		usleep(1000);
		waited++;
	}
	if (wait_ms && *probe != 0xcc)
		fprintf(stderr, "contactmap-cupti: no word from contactmap after %ld ms; CUDA calls may go untraced\n",
			wait_ms);
	dbg("uprobe tier after %ld ms\n", waited);
	atexit(at_exit);
}

static void enable_callbacks(void)
{
	CUptiResult r;
	int domain = C.enable_domain &&
		     C.enable_domain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API) == CUPTI_SUCCESS;

	if (!domain)
		dbg("runtime domain not enabled as a whole: driver calls inside untimed runtime calls count as the program's\n");
	for (size_t i = 0; i < cm_agent_ncbs; i++) {
		const struct cm_agent_cb *c = &cm_agent_cbs[i];

		if (c->domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
			rt_api[c->cbid] = (unsigned char)c->api;
			if (domain)
				continue;
		} else {
			drv_api[c->cbid] = (unsigned char)c->api;
		}
		if ((r = C.enable_callback(1, subscriber, c->domain, c->cbid)) != CUPTI_SUCCESS)
			dbg("callback %u/%u: %s\n", c->domain, c->cbid, cupti_err(r));
	}
}

static void enable_activity(void)
{
	static const CUpti_ActivityKind kinds[] = {
		CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
		CUPTI_ACTIVITY_KIND_MEMCPY2, CUPTI_ACTIVITY_KIND_MEMSET,
		CUPTI_ACTIVITY_KIND_SYNCHRONIZATION, CUPTI_ACTIVITY_KIND_OVERHEAD,
	};
	CUptiResult r;

	C.register_callbacks(buffer_requested, buffer_completed);
	/* event and stream queries that found work still pending (PyTorch's
	 * caching allocator makes them by the thousand) are not synchronization */
	if (C.all_sync_records)
		C.all_sync_records(0);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		r = C.activity_enable(kinds[i]);
		if (r != CUPTI_SUCCESS)
			dbg("activity kind %d: %s\n", kinds[i], cupti_err(r));
		else if (kinds[i] == CUPTI_ACTIVITY_KIND_SYNCHRONIZATION)
			sync_records_on = 1;
	}
}

EXPORT int InitializeInjection(void)
{
	static int done;
	const char *mode = getenv("CONTACTMAP_GPU"), *v;
	long flush_ms = 200;
	CUptiResult r;
	uint32_t tasks[MAX_TASKS];
	int loaded, ntasks;

	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return 1;
	debug = getenv("CONTACTMAP_AGENT_DEBUG") != NULL;
	if ((v = getenv("CONTACTMAP_CUPTI_FLUSH_MS")) && atol(v) > 0)
		flush_ms = atol(v);
	if ((v = getenv("CONTACTMAP_CUPTI_BUFFER_KB")) && atol(v) > 0)
		buffer_bytes = (size_t)atol(v) * 1024;
	/* injected by hand, without contactmap to read the hook: CUPTI would
	 * cost the program for nothing */
	if (!mode) {
		dbg("CONTACTMAP_GPU is not set (not started by contactmap): idle\n");
		return 1;
	}
	agent_pid = getpid();
	pthread_key_create(&batch_key, thread_exit);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	active = 1;
	if (!strcmp(mode, "uprobes")) {
		fall_back(CM_GPU_ST_FORCED, "uprobes asked for");
		return 1;
	}
	ntasks = list_tasks(tasks, MAX_TASKS);
	r = load_cupti(&loaded);
	if (C.lib)
		announce_new_threads(tasks, ntasks);
	if (!C.lib) {
		char why[200];

		if (!loaded)
			snprintf(why, sizeof(why), "libcupti not found (set CONTACTMAP_CUPTI_LIB to its path)");
		else
			snprintf(why, sizeof(why), "no libcupti of the %d tried would subscribe (the last: %d)",
				 loaded, (int)r);
		fall_back(loaded ? CM_GPU_ST_CUPTI_ERROR : CM_GPU_ST_NO_CUPTI, why);
		return 1;
	}
	if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
		fall_back(CM_GPU_ST_MULTISUB, "another profiler already holds CUPTI (CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)");
		return 1;
	}
	if (r != CUPTI_SUCCESS) {
		char why[160];

		snprintf(why, sizeof(why), "cuptiSubscribe failed: %s", cupti_err(r));
		fall_back(CM_GPU_ST_CUPTI_ERROR, why);
		return 1;
	}
	enable_callbacks();
	enable_activity();
	if (C.flush_period)
		C.flush_period((uint32_t)flush_ms);
	announce_new_threads(tasks, ntasks);
	/* API batches and CUPTI's buffers, every period */
	pthread_t th;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, flush_thread, (void *)(intptr_t)flush_ms))
		dbg("no flush thread\n");
	pthread_attr_destroy(&attr);
	status = CM_GPU_ST_CUPTI;
	status_ns = mono_ns();
	send_info(0);
	atexit(at_exit);
	dbg("CUPTI tier on (clock %s, offset %lld)\n",
	    info_flags & CM_GPU_RF_CLOCK_CB ? "monotonic" : "calibrated", (long long)clock_offset);
	return 1;
}
