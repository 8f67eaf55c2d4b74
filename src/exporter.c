// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --serve: a Prometheus exporter. The run loop publishes the cumulative
 * contactmap/1 report every second; this file turns it into the text
 * exposition format (version 0.0.4) and OpenMetrics 1.0 (the same samples;
 * the scraper's Accept header chooses), and libmicrohttpd serves them from a
 * thread of its own. Everything here reads the report's JSON: no BPF, no maps.
 *
 * Every series is a counter that only grows while contactmap runs, so
 * rate() and increase() work. That shapes the "other" rows: the syscalls,
 * causes and CUDA calls a process gets series of its own are chosen once, the
 * first ones seen (heaviest first), and never change; later ones are summed
 * under "other", which so only grows too. Re-choosing the heaviest at every
 * scrape would move counts between series and make them fall.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include "cm.h"
#include "exporter.h"

/* ---- series choice that never changes ------------------------------------ */

struct choice {
	char **names;
	size_t n;
};

struct pstate {
	char key[160];		/* "123", or "folded/COMM" for a group of folded processes */
	struct choice sys, cause, gpuapi;
};

struct mstate {
	struct pstate *p;
	size_t n, cap;
};

static bool chosen(const struct choice *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->names[i], name))
			return true;
	return false;
}

/* Gives NAME a series of its own while there is room; true if it has one. */
static bool choose(struct choice *c, const char *name, size_t max)
{
	char **nn;

	if (chosen(c, name))
		return true;
	if (c->n >= max || !strcmp(name, "other"))
		return false;
	nn = realloc(c->names, (c->n + 1) * sizeof(*nn));
	if (!nn)
		return false;
	c->names = nn;
	c->names[c->n] = strdup(name);
	if (!c->names[c->n])
		return false;
	c->n++;
	return true;
}

static void choice_free(struct choice *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->names[i]);
	free(c->names);
}

static struct pstate *pstate_of(struct mstate *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->p[i].key, key))
			return &m->p[i];
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 16;
		struct pstate *np = realloc(m->p, nc * sizeof(*np));

		if (!np)
			return NULL;
		m->p = np;
		m->cap = nc;
	}
	m->p[m->n] = (struct pstate){ 0 };
	snprintf(m->p[m->n].key, sizeof(m->p[m->n].key), "%s", key);
	return &m->p[m->n++];
}

static void mstate_free(struct mstate *m)
{
	for (size_t i = 0; i < m->n; i++) {
		choice_free(&m->p[i].sys);
		choice_free(&m->p[i].cause);
		choice_free(&m->p[i].gpuapi);
	}
	free(m->p);
	m->p = NULL;
	m->n = m->cap = 0;
}

/* ---- metric families --------------------------------------------------------- */

enum {
	F_INFO, F_WINDOW, F_PROCS, F_THREADS, F_WALL, F_LEDGER, F_THREADSEC, F_OFFCPU, F_IOWAIT,
	F_SYSCALLS, F_SYSERR, F_SYSLAT, F_SWITCHES, F_MIGR, F_WAKEUPS, F_RUNQ, F_FAULTS,
	F_BLKREQ, F_BLKBYTES, F_BLKLAT, F_GPUAPI, F_GPUAPISEC, F_GPUSYNC, F_GPUSYNCS, F_GPUKERN,
	F_GPUKERNSEC, F_GPUCOPY, F_GPUCOPYB, F_REQS, F_REQLAT, F_LOST, F_ANOM, F_OBS, F_COUNT
};

static const struct famdef {
	const char *name, *type, *help;
} famdefs[F_COUNT] = {
	[F_INFO] = { "contactmap_info", "gauge", "contactmap's version and target mode; always 1" },
	[F_WINDOW] = { "contactmap_window_seconds_total", "counter", "Time traced so far" },
	[F_PROCS] = { "contactmap_processes", "gauge", "Processes with series of their own (ended ones included, until folded)" },
	[F_THREADS] = { "contactmap_process_threads", "gauge", "Threads of the process with rows of their own in the report" },
	[F_WALL] = { "contactmap_wall_seconds_total", "counter", "Wall time of the process's threads added up (thread-seconds)" },
	[F_LEDGER] = { "contactmap_ledger_seconds_total", "counter",
		       "The ledger in thread-seconds by part: oncpu_user, oncpu_syscall, oncpu_kernel, oncpu_gpu_wait, runq_wakeup, runq_preempt, offcpu, unattributed; the parts add up to contactmap_wall_seconds_total" },
	[F_THREADSEC] = { "contactmap_thread_seconds_total", "counter",
			  "Thread-seconds by subsystem of the contact map; the subsystems add up to contactmap_wall_seconds_total" },
	[F_OFFCPU] = { "contactmap_offcpu_seconds_total", "counter",
		       "Blocked thread-seconds by cause (the first causes seen, the rest under other); they add up to the ledger's offcpu part" },
	[F_IOWAIT] = { "contactmap_iowait_seconds_total", "counter", "Blocked thread-seconds in io_schedule() (part of offcpu)" },
	[F_SYSCALLS] = { "contactmap_syscalls_total", "counter", "Completed syscalls (the first syscalls seen, the rest under other)" },
	[F_SYSERR] = { "contactmap_syscall_errors_total", "counter", "Syscalls that returned an error" },
	[F_SYSLAT] = { "contactmap_syscall_duration_seconds", "histogram", "Syscall latency, entry to exit (log2 buckets)" },
	[F_SWITCHES] = { "contactmap_context_switches_total", "counter", "Context switches by kind: voluntary (blocked) or involuntary (preempted)" },
	[F_MIGR] = { "contactmap_migrations_total", "counter", "CPU migrations" },
	[F_WAKEUPS] = { "contactmap_wakeups_total", "counter", "Wake-ups received" },
	[F_RUNQ] = { "contactmap_runq_wait_seconds", "histogram", "Run-queue waits: runnable until on a CPU (log2 buckets)" },
	[F_FAULTS] = { "contactmap_page_faults_total", "counter", "Page faults by kind, from the kernel's per-task counters" },
	[F_BLKREQ] = { "contactmap_block_io_requests_total", "counter", "Block requests the process submitted, by device and operation" },
	[F_BLKBYTES] = { "contactmap_block_io_bytes_total", "counter", "Bytes of the completed block requests" },
	[F_BLKLAT] = { "contactmap_block_io_duration_seconds", "histogram", "Block request latency, issue to completion (completions seen)" },
	[F_GPUAPI] = { "contactmap_gpu_api_calls_total", "counter", "CUDA API calls (the first calls seen, the rest under other)" },
	[F_GPUAPISEC] = { "contactmap_gpu_api_seconds_total", "counter", "Time in CUDA API calls" },
	[F_GPUSYNC] = { "contactmap_gpu_sync_wait_seconds_total", "counter", "Thread-seconds waiting for the GPU in synchronize calls: spin (on CPU) or blocked" },
	[F_GPUSYNCS] = { "contactmap_gpu_syncs_total", "counter", "GPU synchronize calls completed" },
	[F_GPUKERN] = { "contactmap_gpu_kernels_total", "counter", "GPU kernels by device" },
	[F_GPUKERNSEC] = { "contactmap_gpu_kernel_seconds_total", "counter", "GPU kernel device time by device (CUPTI tier only)" },
	[F_GPUCOPY] = { "contactmap_gpu_copies_total", "counter", "GPU copies by direction and host memory kind" },
	[F_GPUCOPYB] = { "contactmap_gpu_copy_bytes_total", "counter", "Bytes of GPU copies by direction and host memory kind" },
	[F_REQS] = { "contactmap_request_latency_seconds", "summary",
		     "Latency of the requests marked with contactmap_request_begin/end, quantiles over the whole run so far" },
	[F_REQLAT] = { "contactmap_request_latency_max_seconds", "gauge", "The slowest request so far" },
	[F_LOST] = { "contactmap_lost_events_total", "counter", "Events contactmap could not record, by reason (all 0 when nothing was lost)" },
	[F_ANOM] = { "contactmap_anomalies_total", "counter", "Kernel events out of the expected order, counted and handled (nothing lost)" },
	[F_OBS] = { "contactmap_observer_cpu_seconds_total", "counter", "CPU time of contactmap's own BPF programs on the whole machine (estimated when sampled)" },
};

struct fam {
	char *buf;
	size_t len;
	FILE *fp;
};

struct out {
	struct fam f[F_COUNT];
};

/* The family's buffer; out of memory, a sink (the family is then missing). */
static FILE *F(struct out *o, int i)
{
	static FILE *sink;

	if (!o->f[i].fp)
		o->f[i].fp = open_memstream(&o->f[i].buf, &o->f[i].len);
	if (o->f[i].fp)
		return o->f[i].fp;
	if (!sink)
		sink = fopen("/dev/null", "we");
	return sink;
}

/* ---- values ------------------------------------------------------------- */

static uint64_t u64(json_object *o, const char *key)
{
	json_object *v = cm_json_get(o, key);
	int64_t x = v ? json_object_get_int64(v) : 0;

	return x > 0 ? (uint64_t)x : 0;
}

/* Nanoseconds as exact decimal seconds, no trailing zeros: "1.5", "0.000001024". */
static const char *secs(uint64_t ns, char *buf, size_t sz)
{
	int n = snprintf(buf, sz, "%" PRIu64 ".%09" PRIu64, ns / 1000000000, ns % 1000000000);

	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = 0;
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = 0;
	return buf;
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void esc(char *out, size_t sz, const char *s)
{
	size_t j = 0;

	for (; s && *s && j + 3 < sz; s++) {
		if (*s == '\\' || *s == '"') {
			out[j++] = '\\';
			out[j++] = *s;
		} else if (*s == '\n') {
			out[j++] = '\\';
			out[j++] = 'n';
		} else {
			out[j++] = *s;
		}
	}
	out[j] = 0;
}

/* Cumulative log2 buckets: le = 2^k ns for k in [HIST_LO, HIST_HI], then +Inf.
 * Slot i of the report counts [2^i, 2^(i+1)) ns, so bucket 2^k holds slots < k. */
#define HIST_LO 10	/* 1.024 us */
#define HIST_HI 34	/* 17.2 s */

static void hist(FILE *f, const char *name, const char *labels, json_object *h, uint64_t sum_ns)
{
	uint64_t cum = 0, total = 0;
	size_t n = json_object_get_type(h) == json_type_array ? json_object_array_length(h) : 0;
	char b[48];
	int slot = 0;

	for (size_t i = 0; i < n; i++)
		total += (uint64_t)json_object_get_int64(json_object_array_get_idx(h, i));
	for (int k = HIST_LO; k <= HIST_HI; k++) {
		for (; slot < k && (size_t)slot < n; slot++)
			cum += (uint64_t)json_object_get_int64(json_object_array_get_idx(h, slot));
		fprintf(f, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", name, labels,
			secs(1ULL << k, b, sizeof(b)), cum);
	}
	fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, labels, total);
	fprintf(f, "%s_sum{%s} %s\n", name, labels, secs(sum_ns, b, sizeof(b)));
	fprintf(f, "%s_count{%s} %" PRIu64 "\n", name, labels, total);
}

/* ---- one process ------------------------------------------------------------ */

struct sysrow {
	const char *name;
	uint64_t count, errors, total_ns;
	json_object *hist;
};

static int cmp_sysrow(const void *a, const void *b)
{
	const struct sysrow *x = a, *y = b;

	return x->total_ns > y->total_ns ? -1 : x->total_ns < y->total_ns;
}

static void syscalls(struct out *o, struct pstate *ps, const char *pl, json_object *arr)
{
	size_t n = json_object_get_type(arr) == json_type_array ? json_object_array_length(arr) : 0;
	struct sysrow *r = calloc(n + 1, sizeof(*r));
	uint64_t oc = 0, oe = 0, ot = 0, oh[CM_NSLOTS] = { 0 };
	bool other = false;
	char lab[1024], sc[160];

	if (!r)
		return;
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(arr, i);

		r[i] = (struct sysrow){ cm_json_str(s, "name"), u64(s, "count"), u64(s, "errors"),
					u64(s, "total_ns"), cm_json_get(s, "hist_log2_ns") };
		if (!r[i].name)
			r[i].name = "unknown";
	}
	qsort(r, n, sizeof(*r), cmp_sysrow);
	for (size_t i = 0; i < n; i++) {
		if (!choose(&ps->sys, r[i].name, CM_EXPORT_TOP_SYSCALLS)) {
			other = true;
			oc += r[i].count;
			oe += r[i].errors;
			ot += r[i].total_ns;
			for (size_t k = 0; k < CM_NSLOTS && r[i].hist &&
					   k < json_object_array_length(r[i].hist); k++)
				oh[k] += (uint64_t)json_object_get_int64(json_object_array_get_idx(r[i].hist, k));
			continue;
		}
		esc(sc, sizeof(sc), r[i].name);
		snprintf(lab, sizeof(lab), "%s,syscall=\"%s\"", pl, sc);
		fprintf(F(o, F_SYSCALLS), "contactmap_syscalls_total{%s} %" PRIu64 "\n", lab, r[i].count);
		fprintf(F(o, F_SYSERR), "contactmap_syscall_errors_total{%s} %" PRIu64 "\n", lab, r[i].errors);
		hist(F(o, F_SYSLAT), "contactmap_syscall_duration_seconds", lab, r[i].hist, r[i].total_ns);
	}
	if (other) {
		json_object *h = json_object_new_array();

		for (size_t k = 0; k < CM_NSLOTS; k++)
			json_object_array_add(h, json_object_new_int64((int64_t)oh[k]));
		snprintf(lab, sizeof(lab), "%s,syscall=\"other\"", pl);
		fprintf(F(o, F_SYSCALLS), "contactmap_syscalls_total{%s} %" PRIu64 "\n", lab, oc);
		fprintf(F(o, F_SYSERR), "contactmap_syscall_errors_total{%s} %" PRIu64 "\n", lab, oe);
		hist(F(o, F_SYSLAT), "contactmap_syscall_duration_seconds", lab, h, ot);
		json_object_put(h);
	}
	free(r);
}

struct kv {
	const char *k;
	uint64_t v;
};

static int cmp_kv(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;

	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return strcmp(x->k, y->k);
}

static void causes(struct out *o, struct pstate *ps, const char *pl, json_object *by)
{
	size_t n = 0, m = 0;
	struct kv *kv;
	uint64_t other = 0;
	bool any_other = false;
	char c[160], b[48];

	if (json_object_get_type(by) != json_type_object)
		return;
	json_object_object_foreach(by, k0, v0) {
		(void)k0;
		(void)v0;
		n++;
	}
	kv = calloc(n + 1, sizeof(*kv));
	if (!kv)
		return;
	json_object_object_foreach(by, k, v) {
		int64_t x = json_object_get_int64(v);

		kv[m++] = (struct kv){ k, x > 0 ? (uint64_t)x : 0 };
	}
	qsort(kv, m, sizeof(*kv), cmp_kv);
	for (size_t i = 0; i < m; i++) {
		if (!choose(&ps->cause, kv[i].k, CM_EXPORT_TOP_CAUSES)) {
			other += kv[i].v;
			any_other = true;
			continue;
		}
		esc(c, sizeof(c), kv[i].k);
		fprintf(F(o, F_OFFCPU), "contactmap_offcpu_seconds_total{%s,cause=\"%s\"} %s\n", pl, c,
			secs(kv[i].v, b, sizeof(b)));
	}
	if (any_other)
		fprintf(F(o, F_OFFCPU), "contactmap_offcpu_seconds_total{%s,cause=\"other\"} %s\n", pl,
			secs(other, b, sizeof(b)));
	free(kv);
}

static void gpu(struct out *o, struct pstate *ps, const char *pl, json_object *g)
{
	json_object *api = cm_json_get_type(g, "api", json_type_array);
	json_object *kern = cm_json_get_type(g, "kernels", json_type_array);
	json_object *cp = cm_json_get_type(g, "copies", json_type_array);
	json_object *sync = cm_json_get(g, "sync");
	size_t n = api ? json_object_array_length(api) : 0;
	uint64_t oc = 0, ot = 0;
	bool other = false;
	char lab[1024], e1[160], e2[160], b[48];

	/* the report lists calls by total time, largest first */
	for (size_t i = 0; i < n; i++) {
		json_object *a = json_object_array_get_idx(api, i);
		const char *name = cm_json_str(a, "name");

		if (!name || !choose(&ps->gpuapi, name, CM_EXPORT_TOP_GPU_API)) {
			other = true;
			oc += u64(a, "count");
			ot += u64(a, "total_ns");
			continue;
		}
		esc(e1, sizeof(e1), name);
		fprintf(F(o, F_GPUAPI), "contactmap_gpu_api_calls_total{%s,api=\"%s\"} %" PRIu64 "\n",
			pl, e1, u64(a, "count"));
		fprintf(F(o, F_GPUAPISEC), "contactmap_gpu_api_seconds_total{%s,api=\"%s\"} %s\n",
			pl, e1, secs(u64(a, "total_ns"), b, sizeof(b)));
	}
	if (other) {
		fprintf(F(o, F_GPUAPI), "contactmap_gpu_api_calls_total{%s,api=\"other\"} %" PRIu64 "\n", pl, oc);
		fprintf(F(o, F_GPUAPISEC), "contactmap_gpu_api_seconds_total{%s,api=\"other\"} %s\n", pl,
			secs(ot, b, sizeof(b)));
	}
	if (sync) {
		fprintf(F(o, F_GPUSYNC), "contactmap_gpu_sync_wait_seconds_total{%s,part=\"spin\"} %s\n", pl,
			secs(u64(sync, "spin_ns"), b, sizeof(b)));
		fprintf(F(o, F_GPUSYNC), "contactmap_gpu_sync_wait_seconds_total{%s,part=\"blocked\"} %s\n", pl,
			secs(u64(sync, "blocked_ns"), b, sizeof(b)));
		fprintf(F(o, F_GPUSYNCS), "contactmap_gpu_syncs_total{%s} %" PRIu64 "\n", pl, u64(sync, "count"));
	}
	/* kernels: summed over streams, per device (a handful of series) */
	for (size_t i = 0; kern && i < json_object_array_length(kern); i++) {
		json_object *k = json_object_array_get_idx(kern, i);
		uint64_t dev = u64(k, "device"), cnt = 0, ns = 0;
		bool first = true;

		for (size_t j = 0; j < json_object_array_length(kern); j++) {
			json_object *k2 = json_object_array_get_idx(kern, j);

			if (u64(k2, "device") != dev)
				continue;
			if (j < i)
				first = false;
			cnt += u64(k2, "count");
			ns += u64(k2, "total_ns");
		}
		if (!first)
			continue;
		snprintf(lab, sizeof(lab), "%s,device=\"%" PRIu64 "\"", pl, dev);
		fprintf(F(o, F_GPUKERN), "contactmap_gpu_kernels_total{%s} %" PRIu64 "\n", lab, cnt);
		fprintf(F(o, F_GPUKERNSEC), "contactmap_gpu_kernel_seconds_total{%s} %s\n", lab,
			secs(ns, b, sizeof(b)));
	}
	for (size_t i = 0; cp && i < json_object_array_length(cp); i++) {
		json_object *c = json_object_array_get_idx(cp, i);
		const char *kind = cm_json_str(c, "kind"), *mem = cm_json_str(c, "memory");

		esc(e1, sizeof(e1), kind ? kind : "unknown");
		esc(e2, sizeof(e2), mem ? mem : "unknown");
		snprintf(lab, sizeof(lab), "%s,kind=\"%s\",memory=\"%s\"", pl, e1, e2);
		fprintf(F(o, F_GPUCOPY), "contactmap_gpu_copies_total{%s} %" PRIu64 "\n", lab, u64(c, "count"));
		fprintf(F(o, F_GPUCOPYB), "contactmap_gpu_copy_bytes_total{%s} %" PRIu64 "\n", lab, u64(c, "bytes"));
	}
}

static const char *const ledger_parts[][2] = {
	{ "oncpu_user", "oncpu_user_ns" }, { "oncpu_syscall", "oncpu_syscall_ns" },
	{ "oncpu_kernel", "oncpu_kernel_ns" }, { "oncpu_gpu_wait", "oncpu_gpu_wait_ns" }, { "runq_wakeup", "runq_wakeup_ns" },
	{ "runq_preempt", "runq_preempt_ns" }, { "offcpu", "offcpu_ns" },
	{ "unattributed", "unattributed_ns" },
};

/* One process; folded (the report's folded_processes: ended processes the
 * books folded by comm, past the number kept) with pid="folded". */
static void process(struct out *o, struct mstate *m, json_object *p, bool folded)
{
	int64_t pid = (int64_t)u64(p, "pid");
	char key[160], pidl[24];
	struct pstate *ps;
	json_object *L = cm_json_get(p, "ledger"), *cmap = cm_json_get_type(p, "contact_map", json_type_array);
	json_object *sched = cm_json_get(p, "sched"), *faults = cm_json_get(p, "faults");
	json_object *blk = cm_json_get_type(p, "block_io", json_type_array);
	json_object *threads = cm_json_get_type(p, "threads", json_type_array);
	char comm[128], pl[256], lab[512], b[48];

	esc(comm, sizeof(comm), cm_json_str(p, "comm"));
	if (folded)
		snprintf(pidl, sizeof(pidl), "folded");
	else
		snprintf(pidl, sizeof(pidl), "%" PRId64, pid);
	snprintf(key, sizeof(key), "%s/%s", pidl, folded ? comm : "");
	ps = pstate_of(m, key);
	if (!ps)
		return;
	snprintf(pl, sizeof(pl), "pid=\"%s\",comm=\"%s\"", pidl, comm);

	fprintf(F(o, F_THREADS), "contactmap_process_threads{%s} %zu\n", pl,
		threads ? json_object_array_length(threads) : 0);
	fprintf(F(o, F_WALL), "contactmap_wall_seconds_total{%s} %s\n", pl, secs(u64(L, "wall_ns"), b, sizeof(b)));
	for (size_t i = 0; i < sizeof(ledger_parts) / sizeof(ledger_parts[0]); i++)
		fprintf(F(o, F_LEDGER), "contactmap_ledger_seconds_total{%s,part=\"%s\"} %s\n", pl,
			ledger_parts[i][0], secs(u64(L, ledger_parts[i][1]), b, sizeof(b)));
	fprintf(F(o, F_IOWAIT), "contactmap_iowait_seconds_total{%s} %s\n", pl, secs(u64(L, "iowait_ns"), b, sizeof(b)));
	/* every subsystem, zero or not: the set of series stays the same */
	for (int s = 0; s < CM_SS_COUNT; s++) {
		uint64_t ns = 0;

		for (size_t i = 0; cmap && i < json_object_array_length(cmap); i++) {
			json_object *row = json_object_array_get_idx(cmap, i);
			const char *key = cm_json_str(row, "subsystem");

			if (key && !strcmp(key, cm_subsys_key(s)))
				ns += u64(row, "time_ns");
		}
		fprintf(F(o, F_THREADSEC), "contactmap_thread_seconds_total{%s,subsystem=\"%s\"} %s\n", pl,
			cm_subsys_key(s), secs(ns, b, sizeof(b)));
	}
	causes(o, ps, pl, cm_json_get(L, "offcpu_by_cause"));
	syscalls(o, ps, pl, cm_json_get(p, "syscalls"));
	if (sched) {
		fprintf(F(o, F_SWITCHES), "contactmap_context_switches_total{%s,kind=\"voluntary\"} %" PRIu64 "\n",
			pl, u64(sched, "voluntary_switches"));
		fprintf(F(o, F_SWITCHES), "contactmap_context_switches_total{%s,kind=\"involuntary\"} %" PRIu64 "\n",
			pl, u64(sched, "involuntary_switches"));
		fprintf(F(o, F_MIGR), "contactmap_migrations_total{%s} %" PRIu64 "\n", pl, u64(sched, "migrations"));
		fprintf(F(o, F_WAKEUPS), "contactmap_wakeups_total{%s} %" PRIu64 "\n", pl, u64(sched, "wakeups"));
		hist(F(o, F_RUNQ), "contactmap_runq_wait_seconds", pl, cm_json_get(sched, "runq_hist_log2_ns"),
		     u64(L, "runq_ns"));
	}
	if (faults) {
		fprintf(F(o, F_FAULTS), "contactmap_page_faults_total{%s,kind=\"minor\"} %" PRIu64 "\n", pl,
			u64(faults, "minor"));
		fprintf(F(o, F_FAULTS), "contactmap_page_faults_total{%s,kind=\"major\"} %" PRIu64 "\n", pl,
			u64(faults, "major"));
	}
	for (size_t i = 0; blk && i < json_object_array_length(blk); i++) {
		json_object *r = json_object_array_get_idx(blk, i);
		char dev[64], op[32];

		esc(dev, sizeof(dev), cm_json_str(r, "device"));
		esc(op, sizeof(op), cm_json_str(r, "op"));
		snprintf(lab, sizeof(lab), "%s,device=\"%s\",op=\"%s\"", pl, dev, op);
		fprintf(F(o, F_BLKREQ), "contactmap_block_io_requests_total{%s} %" PRIu64 "\n", lab, u64(r, "submitted"));
		fprintf(F(o, F_BLKBYTES), "contactmap_block_io_bytes_total{%s} %" PRIu64 "\n", lab, u64(r, "bytes"));
		hist(F(o, F_BLKLAT), "contactmap_block_io_duration_seconds", lab, cm_json_get(r, "hist_log2_ns"),
		     u64(r, "total_ns"));
	}
	if (cm_json_get(p, "gpu"))
		gpu(o, ps, pl, cm_json_get(p, "gpu"));
}

static void counters(FILE *f, const char *name, const char *label, json_object *obj)
{
	if (json_object_get_type(obj) != json_type_object)
		return;
	json_object_object_foreach(obj, k, v) {
		char e[128];
		int64_t x = json_object_get_int64(v);

		esc(e, sizeof(e), k);
		fprintf(f, "%s{%s=\"%s\"} %" PRId64 "\n", name, label, e, x > 0 ? x : 0);
	}
}

/* The family's header in OpenMetrics: a counter family is named without the
 * _total its samples carry, and contactmap_info is an info family. */
static void om_header(FILE *f, const struct famdef *d)
{
	size_t n = strlen(d->name);
	bool counter = !strcmp(d->type, "counter") && n > 6 && !strcmp(d->name + n - 6, "_total");
	bool info = n > 5 && !strcmp(d->name + n - 5, "_info");
	int len = counter ? (int)n - 6 : info ? (int)n - 5 : (int)n;

	fprintf(f, "# HELP %.*s %s\n# TYPE %.*s %s\n", len, d->name, d->help, len, d->name,
		info ? "info" : d->type);
}

/* The whole exposition of one report, as Prometheus text (returned) and as
 * OpenMetrics (*om), malloc'ed; NULL when out of memory. */
static char *metrics_text(struct mstate *m, json_object *r, size_t *lenp, char **om, size_t *omlen)
{
	struct out o = { 0 };
	json_object *procs = cm_json_get_type(r, "processes", json_type_array);
	json_object *folded = cm_json_get_type(r, "folded_processes", json_type_array);
	json_object *req = cm_json_get(r, "requests"), *obs = cm_json_get(r, "observer");
	char mode[64], b[48], *text = NULL;
	size_t len = 0;
	FILE *all, *omf;

	esc(mode, sizeof(mode), cm_json_str(cm_json_get(r, "target"), "mode"));
	fprintf(F(&o, F_INFO), "contactmap_info{version=\"%s\",mode=\"%s\"} 1\n", CM_VERSION, mode);
	fprintf(F(&o, F_WINDOW), "contactmap_window_seconds_total %s\n",
		secs(u64(cm_json_get(r, "window"), "duration_ns"), b, sizeof(b)));
	fprintf(F(&o, F_PROCS), "contactmap_processes %zu\n", procs ? json_object_array_length(procs) : 0);
	for (size_t i = 0; procs && i < json_object_array_length(procs); i++)
		process(&o, m, json_object_array_get_idx(procs, i), false);
	for (size_t i = 0; folded && i < json_object_array_length(folded); i++)
		process(&o, m, json_object_array_get_idx(folded, i), true);
	if (req) {
		json_object *lat = cm_json_get(req, "latency_ns");
		static const char *const q[][2] = { { "0.5", "p50" }, { "0.9", "p90" }, { "0.99", "p99" } };

		/* the report has no latency sum: the summary has quantiles and a count */
		for (size_t i = 0; lat && i < sizeof(q) / sizeof(q[0]); i++)
			fprintf(F(&o, F_REQS), "contactmap_request_latency_seconds{quantile=\"%s\"} %s\n",
				q[i][0], secs(u64(lat, q[i][1]), b, sizeof(b)));
		fprintf(F(&o, F_REQS), "contactmap_request_latency_seconds_count %" PRIu64 "\n", u64(req, "count"));
		if (lat)
			fprintf(F(&o, F_REQLAT), "contactmap_request_latency_max_seconds %s\n",
				secs(u64(lat, "max"), b, sizeof(b)));
	}
	counters(F(&o, F_LOST), "contactmap_lost_events_total", "reason", cm_json_get(r, "lost"));
	counters(F(&o, F_ANOM), "contactmap_anomalies_total", "kind", cm_json_get(r, "anomalies"));
	if (obs && cm_json_get(obs, "est_run_time_ns"))
		fprintf(F(&o, F_OBS), "contactmap_observer_cpu_seconds_total %s\n",
			secs(u64(obs, "est_run_time_ns"), b, sizeof(b)));

	all = open_memstream(&text, &len);
	omf = om ? open_memstream(om, omlen) : NULL;
	for (int i = 0; i < F_COUNT; i++) {
		if (!o.f[i].fp)
			continue;
		fclose(o.f[i].fp);
		if (all && o.f[i].len) {
			fprintf(all, "# HELP %s %s\n# TYPE %s %s\n", famdefs[i].name, famdefs[i].help,
				famdefs[i].name, famdefs[i].type);
			fwrite(o.f[i].buf, 1, o.f[i].len, all);
		}
		if (omf && o.f[i].len) {
			om_header(omf, &famdefs[i]);
			fwrite(o.f[i].buf, 1, o.f[i].len, omf);
		}
		free(o.f[i].buf);
	}
	if (omf) {
		fputs("# EOF\n", omf);
		if (fclose(omf)) {
			free(*om);
			*om = NULL;
		}
	}
	if (!all || fclose(all) || (om && !omf) || (om && !*om)) {
		if (all)
			free(text);
		if (om && omf)
			free(*om);
		return NULL;
	}
	*lenp = len;
	return text;
}

/* ---- the server ------------------------------------------------------------ */

/*
 * libmicrohttpd is opened when --serve asks for it, not linked: it brings in
 * GnuTLS and eight more libraries, which every other run would map for
 * nothing (and a tight ulimit -v would then refuse before contactmap could
 * say why). The prototypes are the header's own.
 */
#define MHD_SONAME "libmicrohttpd.so.12"
static struct {
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
} mhd;

static int load_mhd(void)
{
	void *h = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		cm_err("--serve needs libmicrohttpd (Debian's libmicrohttpd12): %s", dlerror());
		return -1;
	}
	*(void **)&mhd.start_daemon = dlsym(h, "MHD_start_daemon");
	*(void **)&mhd.stop_daemon = dlsym(h, "MHD_stop_daemon");
	*(void **)&mhd.create_response_from_buffer = dlsym(h, "MHD_create_response_from_buffer");
	*(void **)&mhd.add_response_header = dlsym(h, "MHD_add_response_header");
	*(void **)&mhd.queue_response = dlsym(h, "MHD_queue_response");
	*(void **)&mhd.destroy_response = dlsym(h, "MHD_destroy_response");
	*(void **)&mhd.lookup_connection_value = dlsym(h, "MHD_lookup_connection_value");
	if (!mhd.start_daemon || !mhd.stop_daemon || !mhd.create_response_from_buffer ||
	    !mhd.add_response_header || !mhd.queue_response || !mhd.destroy_response ||
	    !mhd.lookup_connection_value) {
		cm_err("--serve: %s lacks a function contactmap needs (%s)", MHD_SONAME, dlerror());
		dlclose(h);
		return -1;
	}
	return 0;
}

struct cm_exporter {
	struct MHD_Daemon *mhd;
	int fd;
	pthread_mutex_t lock;
	char *text;		/* what /metrics serves; NULL until the first report */
	size_t len;
	char *om;		/* the same in OpenMetrics, for scrapers that ask for it */
	size_t omlen;
	struct mstate m;	/* the run loop's alone */
	char url[128];
	bool announced;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     const char *body, size_t len)
{
	struct MHD_Response *r = mhd.create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	rc = mhd.queue_response(c, status, r);
	mhd.destroy_response(r);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_size, void **state)
{
	static const char plain[] = "text/plain; charset=utf-8";
	struct cm_exporter *e = cls;
	const char *accept;
	enum MHD_Result rc;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, plain, "GET only\n", 9);
	if (!strcmp(url, "/"))
		return reply(c, MHD_HTTP_OK, plain, "contactmap: metrics at /metrics\n", 32);
	if (strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, plain, "not found: see /metrics\n", 24);
	/* OpenMetrics to a scraper that asks for it (Prometheus does, first) */
	accept = mhd.lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	pthread_mutex_lock(&e->lock);
	if (e->om && accept && strstr(accept, "application/openmetrics-text"))
		rc = reply(c, MHD_HTTP_OK, "application/openmetrics-text; version=1.0.0; charset=utf-8",
			   e->om, e->omlen);
	else if (e->text)
		rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", e->text, e->len);
	else
		rc = reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, plain, "no report yet\n", 14);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

void cm_exporter_publish(struct cm_exporter *e, json_object *report)
{
	size_t len = 0, omlen = 0;
	char *om = NULL, *text = metrics_text(&e->m, report, &len, &om, &omlen), *old, *oldom;

	if (!text) {
		cm_warn("out of memory building the metrics: /metrics keeps the last ones");
		return;
	}
	pthread_mutex_lock(&e->lock);
	old = e->text;
	oldom = e->om;
	e->text = text;
	e->len = len;
	e->om = om;
	e->omlen = omlen;
	pthread_mutex_unlock(&e->lock);
	free(old);
	free(oldom);
	/* always said, not only with -v (with port 0 it is the only way to know
	 * the port), and only once tracing runs: a start that fails says one line */
	if (!e->announced) {
		fprintf(stderr, "contactmap: serving metrics on %s\n", e->url);
		e->announced = true;
	}
}

/* "PORT", ":PORT", "HOST:PORT", "[V6]:PORT" into host and port. */
static int parse_spec(const char *spec, char *host, size_t hsz, char *port, size_t psz)
{
	const char *colon = strrchr(spec, ':');
	const char *p = colon ? colon + 1 : spec;
	size_t hl = colon ? (size_t)(colon - spec) : 0;
	char *end;
	long v;

	errno = 0;
	v = strtol(p, &end, 10);
	if (!*p || *end || errno || v < 0 || v > 65535)
		return -1;
	snprintf(port, psz, "%ld", v);
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']')
		spec++, hl -= 2;
	if (!hl) {
		snprintf(host, hsz, "127.0.0.1");
		return 0;
	}
	if (hl >= hsz)
		return -1;
	memcpy(host, spec, hl);
	host[hl] = 0;
	return 0;
}

static int listen_on(const char *spec, char *url, size_t usz)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_PASSIVE }, *ai = NULL;
	char host[256], port[16], ip[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, err, one = 1;

	if (parse_spec(spec, host, sizeof(host), port, sizeof(port))) {
		cm_err("bad --serve '%s': give [HOST:]PORT, e.g. 127.0.0.1:9464 (the host is 127.0.0.1 unless given)",
		       spec);
		return -1;
	}
	err = getaddrinfo(host, port, &hints, &ai);
	if (err) {
		cm_err("bad --serve '%s': %s: give an address of this machine, e.g. 127.0.0.1",
		       spec, gai_strerror(err));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		err = errno;
		cm_err("cannot listen on %s:%s for --serve: %s%s", host, port, strerror(err),
		       err == EADDRINUSE ? " (something else listens there: choose another port)"
		       : err == EADDRNOTAVAIL ? " (not an address of this machine)" : "");
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
		snprintf(url, usz, "http://[%s]:%u/metrics", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
		snprintf(url, usz, "http://%s:%u/metrics", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
	return fd;
}

struct cm_exporter *cm_exporter_open(const char *spec)
{
	struct cm_exporter *e = calloc(1, sizeof(*e));
	sigset_t all, old;

	if (!e) {
		cm_err("out of memory");
		return NULL;
	}
	if (!mhd.start_daemon && load_mhd()) {
		free(e);
		return NULL;
	}
	pthread_mutex_init(&e->lock, NULL);
	e->fd = listen_on(spec, e->url, sizeof(e->url));
	if (e->fd < 0) {
		free(e);
		return NULL;
	}
	/* the server's threads must leave SIGINT/SIGTERM to the run loop's signalfd */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	e->mhd = mhd.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
				  handle, e, MHD_OPTION_LISTEN_SOCKET, e->fd,
				  MHD_OPTION_CONNECTION_LIMIT, 32U, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
				  MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!e->mhd) {
		cm_err("cannot start the metrics server on %s (libmicrohttpd refused)", e->url);
		close(e->fd);
		free(e);
		return NULL;
	}
	return e;
}

void cm_exporter_close(struct cm_exporter *e)
{
	if (!e)
		return;
	mhd.stop_daemon(e->mhd);
	close(e->fd);
	pthread_mutex_destroy(&e->lock);
	free(e->text);
	free(e->om);
	mstate_free(&e->m);
	free(e);
}

int cm_metrics_main(int argc, char **argv)
{
	struct mstate m = { 0 };
	json_object *r;
	size_t len = 0;
	char *text;
	int rc = 0;

	if (argc != 2 || argv[1][0] == '-') {
		cm_err("metrics needs one report: contactmap metrics REPORT.json");
		return 2;
	}
	r = cm_read_json(argv[1]);
	if (!r)
		return 1;
	text = metrics_text(&m, r, &len, NULL, NULL);
	if (!text || fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
		cm_err("cannot write the metrics: %s", text ? strerror(errno) : "out of memory");
		rc = 1;
	}
	free(text);
	mstate_free(&m);
	json_object_put(r);
	return rc;
}
