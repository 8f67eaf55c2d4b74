// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The timeline: Chrome Trace Event JSON (what Perfetto's UI and
 * chrome://tracing open), streamed as slices arrive into an output that
 * outfile.c renames into place when complete. One track per thread for its states (running,
 * runnable, blocked with its cause), one per thread for syscalls above the
 * threshold (they span several state slices, so they cannot share a track
 * without overlapping), and async slices per process for block requests.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"
#include "contactmap.h"
#include "timeline.h"

/* Syscall tracks: a tid no real thread has (pid_max is at most 2^22). */
#define SYSCALL_TRACK(tid) (1000000000u + (tid))
/* Request tracks: requests on a thread may nest and overlap its syscalls. */
#define REQUEST_TRACK(tid) (1100000000u + (tid))
/* GPU tracks per device and stream: kernels, and copies (copy engines run
 * beside compute, so they get their own track). */
#define GPU_KERNEL_TRACK(dev, stream) (2000000000u + ((dev) & 0x3f) * 1000000u + (stream) % 1000000u)
#define GPU_COPY_TRACK(dev, stream) (2070000000u + ((dev) & 0x3f) * 1000000u + (stream) % 1000000u)
#define MAX_GPU_TRACKS 256

struct seqent {
	uint32_t tid, seq;
	uint32_t pid, final;	/* the thread's last number, once it has ended */
	uint64_t final_ts;
	char comm[CM_COMM_LEN];	/* an ended thread's name, for its track */
};

struct cm_timeline {
	FILE *fp;
	uint64_t base, max_bytes, bytes;
	uint64_t written, dropped_cap, gaps, gap_events;
	uint64_t async_id;
	struct seqent *seqs;	/* open addressing by tid */
	size_t seqcap, nseq;
	bool first;
	struct { uint32_t pid, tid, dev, stream; bool copy; } gpu[MAX_GPU_TRACKS];
	int ngpu;
};

struct cm_timeline *cm_timeline_open(FILE *fp, uint64_t base_ns, uint64_t max_bytes)
{
	struct cm_timeline *tl = calloc(1, sizeof(*tl));

	if (!tl)
		goto fail;
	tl->seqcap = 4096;
	tl->seqs = calloc(tl->seqcap, sizeof(*tl->seqs));
	if (!tl->seqs)
		goto fail;
	tl->fp = fp;
	tl->base = base_ns;
	tl->max_bytes = max_bytes;
	tl->first = true;
	fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", tl->fp);
	return tl;
fail:
	cm_err("out of memory for the timeline");
	if (tl)
		free(tl->seqs);
	free(tl);
	return NULL;
}

static void emit(struct cm_timeline *tl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct cm_timeline *tl, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (tl->max_bytes && tl->bytes >= tl->max_bytes) {
		tl->dropped_cap++;
		return;
	}
	if (!tl->first)
		fputs(",\n", tl->fp);
	tl->first = false;
	va_start(ap, fmt);
	n = vfprintf(tl->fp, fmt, ap);
	va_end(ap);
	if (n > 0)
		tl->bytes += (uint64_t)n + 2;
	tl->written++;
}

/* Microseconds since the window start, to the nanosecond. */
static double us(const struct cm_timeline *tl, uint64_t ns)
{
	return ns >= tl->base ? (double)(ns - tl->base) / 1000.0 : 0.0;
}

static struct seqent *seq_slot(struct seqent *tab, size_t cap, uint32_t tid)
{
	size_t i = (tid * 2654435761u) & (cap - 1);

	while (tab[i].tid && tab[i].tid != tid)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static void emit(struct cm_timeline *tl, const char *fmt, ...);
static double us(const struct cm_timeline *tl, uint64_t ns);
static void json_str(FILE *fp, const char *s);

/* An ended thread whose events after the last one that arrived were dropped:
 * a gap at its track's end. */
static void settle_final(struct cm_timeline *tl, struct seqent *ent)
{
	uint32_t missed;

	if (ent->final > ent->seq) {
		missed = ent->final - ent->seq;
		tl->gaps++;
		tl->gap_events += missed;
		emit(tl, "{\"name\":\"gap: %u events dropped\",\"cat\":\"gap\",\"ph\":\"i\",\"s\":\"t\","
		     "\"ts\":%.3f,\"pid\":%u,\"tid\":%u}", missed, us(tl, ent->final_ts), ent->pid, ent->tid);
	}
	ent->final = 0;
}

/* Per-thread sequence numbers: a jump means the kernel dropped events. */
static uint32_t seq_jump(struct cm_timeline *tl, uint32_t tid, uint32_t seq)
{
	struct seqent *ent;
	uint32_t missed;

	if ((tl->nseq + 1) * 2 > tl->seqcap) {
		size_t ncap = tl->seqcap * 2;
		struct seqent *nt = calloc(ncap, sizeof(*nt));

		if (!nt)
			return 0;
		for (size_t k = 0; k < tl->seqcap; k++)
			if (tl->seqs[k].tid)
				*seq_slot(nt, ncap, tl->seqs[k].tid) = tl->seqs[k];
		free(tl->seqs);
		tl->seqs = nt;
		tl->seqcap = ncap;
	}
	ent = seq_slot(tl->seqs, tl->seqcap, tid);
	if (!ent->tid) {
		ent->tid = tid;
		ent->seq = seq;
		tl->nseq++;
		return 0;
	}
	/* numbers start again: a new thread with the ended one's id */
	if (ent->final && seq <= ent->seq) {
		settle_final(tl, ent);
		ent->seq = seq;
		return 0;
	}
	missed = seq > ent->seq + 1 ? seq - ent->seq - 1 : 0;
	if (seq > ent->seq)
		ent->seq = seq;
	return missed;
}


static const char *cause_of(const struct cm_slice_event *e, char *buf, size_t sz)
{
	if (e->cause == CM_CAUSE_SYSCALL)
		snprintf(buf, sz, "syscall:%s", cm_syscall_name(e->nr));
	else if (e->cause == CM_CAUSE_FAULT)
		snprintf(buf, sz, "page_fault");
	else if (e->cause == CM_CAUSE_GPU_SYNC)
		snprintf(buf, sz, "gpu_sync");
	else
		snprintf(buf, sz, "other");
	return buf;
}

static void gpu_track(struct cm_timeline *tl, uint32_t pid, uint32_t tid, uint32_t dev,
		      uint32_t stream, bool copy)
{
	for (int i = 0; i < tl->ngpu; i++)
		if (tl->gpu[i].pid == pid && tl->gpu[i].tid == tid)
			return;
	if (tl->ngpu < MAX_GPU_TRACKS) {
		tl->gpu[tl->ngpu].pid = pid;
		tl->gpu[tl->ngpu].tid = tid;
		tl->gpu[tl->ngpu].dev = dev;
		tl->gpu[tl->ngpu].stream = stream;
		tl->gpu[tl->ngpu++].copy = copy;
	}
}

int cm_timeline_event(struct cm_timeline *tl, const void *data, size_t len)
{
	/* CM_COPY_* order (contactmap_gpu.h) */
	static const char *kinds[] = { "copy", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD",
				       "DtoA", "DtoD", "HtoH", "PtoP" };
	static const char *ops[] = { "read", "write", "flush", "discard", "other" };
	const struct cm_slice_event *e = data;
	double ts, dur;
	char cause[96];
	uint32_t missed;
	unsigned kind;
	const char *est;

	if (len < sizeof(*e) || e->type != CM_EV_SLICE || e->end < e->start)
		return 0;
	kind = e->kind & ~CM_SL_ESTIMATED;
	/* an edge the kernel never reported, estimated from its exec-time counter */
	est = e->kind & CM_SL_ESTIMATED ? ",\"args\":{\"edge\":\"estimated\"}" : "";
	ts = us(tl, e->start);
	dur = (double)(e->end - e->start) / 1000.0;
	if (kind < CM_SL_BLOCK_IO && e->seq && (missed = seq_jump(tl, e->tid, e->seq))) {
		tl->gaps++;
		tl->gap_events += missed;
		emit(tl, "{\"name\":\"gap: %u events dropped\",\"cat\":\"gap\",\"ph\":\"i\",\"s\":\"t\","
		     "\"ts\":%.3f,\"pid\":%u,\"tid\":%u}", missed, ts, e->pid, e->tid);
	}
	switch (kind) {
	case CM_SL_RUN:
		emit(tl, "{\"name\":\"running\",\"cat\":\"cpu\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u%s}", ts, dur, e->pid, e->tid, est);
		break;
	case CM_SL_RUNQ:
		emit(tl, "{\"name\":\"runnable\",\"cat\":\"runq\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u%s}", ts, dur, e->pid, e->tid, est);
		break;
	case CM_SL_BLOCKED:
		emit(tl, "{\"name\":\"%s\",\"cat\":\"blocked\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u%s}", cause_of(e, cause, sizeof(cause)), ts, dur, e->pid, e->tid,
		     est);
		break;
	case CM_SL_SYSCALL:
		emit(tl, "{\"name\":\"%s\",\"cat\":\"syscall\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u}", cm_syscall_name(e->nr), ts, dur, e->pid,
		     SYSCALL_TRACK(e->tid));
		break;
	case CM_SL_GPU_KERNEL: {
		uint32_t track = GPU_KERNEL_TRACK(e->nr, e->tid);

		gpu_track(tl, e->pid, track, e->nr, e->tid, false);
		emit(tl, "{\"name\":\"%s\",\"cat\":\"gpu\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u}", e->cause ? "kernel (graph)" : "kernel", ts, dur, e->pid, track);
		break;
	}
	case CM_SL_GPU_COPY: {
		uint32_t dev = e->nr & 0xff, kind = (e->nr >> 8) & 0xff, track = GPU_COPY_TRACK(dev, e->tid);

		gpu_track(tl, e->pid, track, dev, e->tid, true);
		emit(tl, "{\"name\":\"%s\",\"cat\":\"gpu\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,"
		     "\"pid\":%u,\"tid\":%u,\"args\":{\"bytes\":%llu}}",
		     (e->nr >> 16) & 1 ? "memset" : kinds[kind < 11 ? kind : 0], ts, dur, e->pid, track,
		     (unsigned long long)e->bytes);
		break;
	}
	case CM_SL_BLOCK_IO:
		/* requests overlap: async slices, paired by id */
		tl->async_id++;
		emit(tl, "{\"name\":\"%s\",\"cat\":\"block_io\",\"ph\":\"b\",\"id\":%" PRIu64 ",\"ts\":%.3f,"
		     "\"pid\":%u,\"tid\":%u,\"args\":{\"bytes\":%llu}}", ops[e->nr <= 4 ? e->nr : 4],
		     tl->async_id, ts, e->pid, e->tid, (unsigned long long)e->bytes);
		emit(tl, "{\"name\":\"%s\",\"cat\":\"block_io\",\"ph\":\"e\",\"id\":%" PRIu64 ",\"ts\":%.3f,"
		     "\"pid\":%u,\"tid\":%u}", ops[e->nr <= 4 ? e->nr : 4], tl->async_id, us(tl, e->end),
		     e->pid, e->tid);
		break;
	}
	return 0;
}

void cm_timeline_request(struct cm_timeline *tl, uint32_t pid, uint32_t tid, uint64_t id,
			 uint64_t start, uint64_t end)
{
	if (!tl)
		return;
	emit(tl, "{\"name\":\"request %" PRIu64 "\",\"cat\":\"request\",\"ph\":\"X\",\"ts\":%.3f,"
	     "\"dur\":%.3f,\"pid\":%u,\"tid\":%u,\"args\":{\"id\":%" PRIu64 ",\"thread\":%u}}", id,
	     us(tl, start), (double)(end - start) / 1000.0, pid, REQUEST_TRACK(tid), id, tid);
}

void cm_timeline_set_base(struct cm_timeline *tl, uint64_t base_ns)
{
	if (tl)
		tl->base = base_ns;
}

void cm_timeline_final_seq(struct cm_timeline *tl, uint32_t pid, uint32_t tid, uint32_t seq,
			   uint64_t ts, const char *comm)
{
	struct seqent *ent;

	if (!tl || !seq)
		return;
	/* its last events may still wait in the ring: settled at the next
	 * thread with its id, or at the close */
	if (!seq_slot(tl->seqs, tl->seqcap, tid)->tid)
		seq_jump(tl, tid, 0);
	ent = seq_slot(tl->seqs, tl->seqcap, tid);
	if (!ent->tid)
		return;
	if (ent->final)
		settle_final(tl, ent);
	ent->pid = pid;
	ent->final = seq;
	ent->final_ts = ts;
	if (comm)
		memcpy(ent->comm, comm, CM_COMM_LEN);
}

void cm_timeline_abort(struct cm_timeline *tl)
{
	if (!tl)
		return;
	free(tl->seqs);
	free(tl);
}

static void json_str(FILE *fp, const char *s)
{
	/* names come from the report, already sanitized; escape what JSON needs */
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

int cm_timeline_close(struct cm_timeline *tl, json_object *report, uint64_t kernel_dropped)
{
	json_object *procs, *lost;
	int rc = 0;

	if (!tl)
		return 0;
	/* ended threads: drops after their last event, and their tracks' names
	 * (a thread folded into a row of its comm has no row of its own) */
	for (size_t k = 0; k < tl->seqcap; k++) {
		struct seqent *ent = &tl->seqs[k];
		char comm[4 * CM_COMM_LEN + 1];

		if (!ent->tid)
			continue;
		if (ent->final)
			settle_final(tl, ent);
		if (!ent->comm[0])
			continue;
		cm_sanitize_comm(ent->comm, CM_COMM_LEN, comm, sizeof(comm));
		fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%u,\"args\":{\"name\":",
			ent->pid, ent->tid);
		json_str(tl->fp, comm);
		fputs("}}", tl->fp);
	}
	/* track names, written whatever the size cap */
	if (json_object_object_get_ex(report, "processes", &procs)) {
		for (size_t i = 0; i < json_object_array_length(procs); i++) {
			json_object *p = json_object_array_get_idx(procs, i), *th, *v;
			int pid = json_object_object_get_ex(p, "pid", &v) ? json_object_get_int(v) : 0;
			const char *comm = json_object_object_get_ex(p, "comm", &v) ? json_object_get_string(v) : "?";

			fprintf(tl->fp, ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":", pid);
			json_str(tl->fp, comm);
			fputs("}}", tl->fp);
			if (!json_object_object_get_ex(p, "threads", &th))
				continue;
			for (size_t k = 0; k < json_object_array_length(th); k++) {
				json_object *t = json_object_array_get_idx(th, k);
				int tid = json_object_object_get_ex(t, "tid", &v) ? json_object_get_int(v) : 0;
				const char *tc = json_object_object_get_ex(t, "comm", &v) ? json_object_get_string(v) : "?";

				fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", pid, tid);
				json_str(tl->fp, tc);
				fprintf(tl->fp, "}},\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":\"%d syscalls\"}}",
					pid, SYSCALL_TRACK((unsigned)tid), tid);
				fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"name\":\"%d requests\"}}",
					pid, REQUEST_TRACK((unsigned)tid), tid);
				fprintf(tl->fp, ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"sort_index\":%d}}",
					pid, tid, 2 * tid);
				fprintf(tl->fp, ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"args\":{\"sort_index\":%d}}",
					pid, SYSCALL_TRACK((unsigned)tid), 2 * tid + 1);
			}
		}
	}
	for (int i = 0; i < tl->ngpu; i++)
		fprintf(tl->fp, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%u,"
			"\"args\":{\"name\":\"GPU %u stream %u %s\"}}", tl->gpu[i].pid, tl->gpu[i].tid,
			tl->gpu[i].dev, tl->gpu[i].stream, tl->gpu[i].copy ? "copies" : "kernels");
	fprintf(tl->fp, "\n],\"otherData\":{\"tool\":\"contactmap %s\",\"zero_ns\":%" PRIu64
		",\"events\":%" PRIu64
		",\"dropped_in_kernel\":%" PRIu64 ",\"dropped_size_cap\":%" PRIu64
		",\"gaps\":%" PRIu64 ",\"gap_events\":%" PRIu64 "}}\n",
		CM_VERSION, tl->base, tl->written, kernel_dropped, tl->dropped_cap, tl->gaps, tl->gap_events);
	if (json_object_object_get_ex(report, "lost", &lost)) {
		json_object_object_add(lost, "timeline_size_cap", json_object_new_int64((int64_t)tl->dropped_cap));
		json_object_object_add(lost, "timeline_gaps", json_object_new_int64((int64_t)tl->gaps));
	}
	free(tl->seqs);
	free(tl);
	return rc;
}
