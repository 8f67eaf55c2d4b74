// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The report's per-process "gpu" object, from the GPU maps read back
 * (src/gpu.c runs the tiers that fill them), and the GPU drops under "lost".
 */
#include <stdlib.h>
#include <string.h>
#include "cm.h"
#include "tracer.h"
#include "gpu.h"
#include "contactmap_gpu.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define J_STR(o, k, v) json_object_object_add(o, k, json_object_new_string(v))

static const char *const class_names[] = {
	[CM_GPU_CLASS_OTHER] = "other", [CM_GPU_CLASS_LAUNCH] = "launch",
	[CM_GPU_CLASS_GRAPH] = "graph", [CM_GPU_CLASS_COPY] = "copy",
	[CM_GPU_CLASS_MEMSET] = "memset", [CM_GPU_CLASS_SYNC] = "sync",
	[CM_GPU_CLASS_ALLOC] = "alloc", [CM_GPU_CLASS_FREE] = "free",
};

const char *cm_gpu_tier_name(unsigned t)
{
	return t == CM_GPU_TIER_CUPTI ? "cupti" : t == CM_GPU_TIER_UPROBES ? "uprobes" : "none";
}

const char *cm_gpu_status_name(unsigned s)
{
	switch (s) {
	case CM_GPU_ST_CUPTI: return "cupti";
	case CM_GPU_ST_MULTISUB: return "multiple_subscribers";
	case CM_GPU_ST_NO_CUPTI: return "no_cupti";
	case CM_GPU_ST_CUPTI_ERROR: return "cupti_error";
	case CM_GPU_ST_FORCED: return "forced_uprobes";
	case CM_GPU_ST_TAKEN_OVER: return "taken_over";
	default: return "none";
	}
}

void cm_gpu_snapshot_free(struct cm_snapshot *s)
{
	free(s->gapi_keys);
	free(s->gapi);
	free(s->gkern_keys);
	free(s->gkern);
	free(s->gcopy_keys);
	free(s->gcopy);
	free(s->gproc_pids);
	free(s->gproc);
}

/* ---- the report's "gpu" object ------------------------------------------------------ */

static json_object *hist_json(const uint64_t *h)
{
	json_object *a = json_object_new_array_ext(CM_HIST_SLOTS);

	for (int i = 0; i < CM_HIST_SLOTS; i++)
		json_object_array_add(a, json_object_new_int64((int64_t)h[i]));
	return a;
}

static int cmp_total_desc(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
	int64_t tx = json_object_get_int64(json_object_object_get(x, "total_ns"));
	int64_t ty = json_object_get_int64(json_object_object_get(y, "total_ns"));
	int64_t cx = json_object_get_int64(json_object_object_get(x, "count"));
	int64_t cy = json_object_get_int64(json_object_object_get(y, "count"));

	if (tx != ty)
		return tx > ty ? -1 : 1;
	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(json_object_get_string(json_object_object_get(x, "name")) ?: "",
		      json_object_get_string(json_object_object_get(y, "name")) ?: "");
}

static json_object *sorted(json_object **rows, size_t n)
{
	json_object *a = json_object_new_array();

	qsort(rows, n, sizeof(*rows), cmp_total_desc);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, rows[i]);
	return a;
}

/* "memory" of a copy: the host side's kind when the host takes part. */
static unsigned copy_memory(const struct cm_gpu_copy_key *k)
{
	switch (k->kind) {
	case CM_COPY_HTOD: case CM_COPY_HTOA: return k->src_mem;
	case CM_COPY_DTOH: case CM_COPY_ATOH: return k->dst_mem;
	default: return k->dst_mem ? k->dst_mem : k->src_mem;
	}
}

json_object *cm_gpu_process_json(const struct cm_snapshot *s, uint32_t pid,
				 const struct cm_gpu_thread_sums *ts)
{
	const struct cm_gpu_proc *p = NULL;
	json_object *o, **rows, *sync, *by;
	size_t nrows = 0, cap = s->ngapi + s->ngkern + s->ngcopy + 1;
	bool any = ts->syncs || ts->spin_ns || ts->blocked_ns || ts->ioctl_ns;
	unsigned tier = CM_GPU_TIER_NONE;
	uint64_t sync_count = 0, sync_ns = 0;

	if (!s->gpu_loaded)
		return NULL;
	for (size_t i = 0; i < s->ngproc; i++)
		if (s->gproc_pids[i] == pid)
			p = &s->gproc[i];
	for (size_t i = 0; !any && i < s->ngapi; i++)
		any = s->gapi_keys[i].pid == pid;
	for (size_t i = 0; !any && i < s->ngkern; i++)
		any = s->gkern_keys[i].pid == pid;
	for (size_t i = 0; !any && i < s->ngcopy; i++)
		any = s->gcopy_keys[i].pid == pid;
	if (!any && !p)
		return NULL;
	rows = calloc(cap, sizeof(*rows));
	if (!rows)
		return NULL;
	o = json_object_new_object();
	if (p)
		tier = p->tier;
	for (size_t i = 0; tier == CM_GPU_TIER_NONE && i < s->ngapi; i++)
		if (s->gapi_keys[i].pid == pid)
			tier = s->gapi_keys[i].tier;
	J_STR(o, "tier", cm_gpu_tier_name(tier));
	json_object_object_add(o, "device_times", json_object_new_boolean(tier == CM_GPU_TIER_CUPTI));
	if (p && p->status) {
		json_object *a = json_object_new_object();

		J_STR(a, "status", cm_gpu_status_name(p->status));
		J_STR(a, "clock", p->info_flags & CM_GPU_RF_CLOCK_CB ? "monotonic" :
				  p->info_flags & CM_GPU_RF_CLOCK_CAL ? "calibrated" : "unknown");
		J_INT(a, "clock_offset_ns", p->clock_offset_ns);
		/* CUPTI's synchronization records against the calls' own spans */
		J_STR(a, "clock_check", p->info_flags & CM_GPU_RF_CLOCK_DISAGREES ? "disagrees" :
					p->info_flags & CM_GPU_RF_CLOCK_AGREES ? "agrees" : "unchecked");
		if (p->info_flags & CM_GPU_RF_CLOCK_DISAGREES)
			J_INT(a, "clock_skew_ns", p->clock_skew_ns);
		json_object_object_add(a, "final_flush", json_object_new_boolean(p->final_seen));
		if (p->status == CM_GPU_ST_TAKEN_OVER)
			J_INT(a, "taken_over_ns", p->status_ns);
		J_INT(a, "cupti_version", p->cupti_version);
		J_INT(a, "driver_version", p->driver_version);
		json_object_object_add(o, "agent", a);
	}

	/* API calls */
	for (size_t i = 0; i < s->ngapi; i++) {
		const struct cm_gpu_api_key *k = &s->gapi_keys[i];
		const struct cm_gpu_api_stat *st = &s->gapi[i];
		json_object *r;

		if (k->pid != pid)
			continue;
		r = json_object_new_object();
		J_STR(r, "name", cm_gpu_api_name(k->api));
		J_STR(r, "class", class_names[cm_gpu_api_class(k->api)]);
		J_STR(r, "tier", cm_gpu_tier_name(k->tier));
		J_INT(r, "count", st->count);
		J_INT(r, "errors", st->errors);
		J_INT(r, "total_ns", st->total_ns);
		J_INT(r, "max_ns", st->max_ns);
		J_INT(r, "p50_ns", cm_hist_quantile((const uint64_t *)st->hist, CM_HIST_SLOTS, 0.50, st->max_ns));
		J_INT(r, "p99_ns", cm_hist_quantile((const uint64_t *)st->hist, CM_HIST_SLOTS, 0.99, st->max_ns));
		J_INT(r, "bytes", st->bytes);
		json_object_object_add(r, "hist_log2_ns", hist_json((const uint64_t *)st->hist));
		rows[nrows++] = r;
		if (cm_gpu_api_class(k->api) == CM_GPU_CLASS_SYNC) {
			sync_count += st->count;
			sync_ns += st->total_ns;
		}
	}
	json_object_object_add(o, "api", sorted(rows, nrows));

	/* kernels, per device and stream */
	nrows = 0;
	for (size_t i = 0; i < s->ngkern; i++) {
		const struct cm_gpu_kern_key *k = &s->gkern_keys[i];
		const struct cm_gpu_kern_stat *st = &s->gkern[i];
		json_object *r;

		if (k->pid != pid)
			continue;
		r = json_object_new_object();
		J_INT(r, "device", k->device);
		J_INT(r, "stream", k->stream);
		json_object_object_add(r, "graph", json_object_new_boolean(k->graph));
		J_STR(r, "tier", "cupti");
		J_INT(r, "count", st->count);
		J_INT(r, "total_ns", st->total_ns);
		J_INT(r, "max_ns", st->max_ns);
		J_INT(r, "untimed", st->untimed);
		rows[nrows++] = r;
	}
	json_object_object_add(o, "kernels", sorted(rows, nrows));

	/* copies and memsets */
	json_object *memsets;
	size_t nm = 0;
	json_object **mrows = calloc(s->ngcopy + 1, sizeof(*mrows));

	nrows = 0;
	for (size_t i = 0; mrows && i < s->ngcopy; i++) {
		const struct cm_gpu_copy_key *k = &s->gcopy_keys[i];
		const struct cm_gpu_copy_stat *st = &s->gcopy[i];
		json_object *r;

		if (k->pid != pid)
			continue;
		r = json_object_new_object();
		if (k->op == CM_GPU_OP_COPY)
			J_STR(r, "kind", cm_gpu_copy_kind_name(k->kind));
		J_STR(r, "memory", cm_gpu_mem_name(k->op == CM_GPU_OP_COPY ? copy_memory(k) : k->dst_mem));
		if (k->op == CM_GPU_OP_COPY) {
			J_STR(r, "src_memory", cm_gpu_mem_name(k->src_mem));
			J_STR(r, "dst_memory", cm_gpu_mem_name(k->dst_mem));
		}
		J_STR(r, "tier", cm_gpu_tier_name(k->tier));
		/* device time from CUPTI; the API call's span from uprobes */
		J_STR(r, "time", k->tier == CM_GPU_TIER_CUPTI ? "device" : "api");
		J_INT(r, "count", st->count);
		J_INT(r, "bytes", st->bytes);
		J_INT(r, "total_ns", st->total_ns);
		J_INT(r, "max_ns", st->max_ns);
		J_INT(r, "untimed", st->untimed);
		/* bytes of the timed ones only would need a second counter; untimed
		 * copies are rare (CUPTI lost the timestamps), so leave them out */
		J_INT(r, "bandwidth_bytes_per_s", st->total_ns && !st->untimed
			     ? (uint64_t)((double)st->bytes * 1e9 / (double)st->total_ns) : 0);
		if (k->op == CM_GPU_OP_COPY)
			rows[nrows++] = r;
		else
			mrows[nm++] = r;
	}
	json_object_object_add(o, "copies", sorted(rows, nrows));
	memsets = mrows ? sorted(mrows, nm) : json_object_new_array();
	json_object_object_add(o, "memsets", memsets);
	free(mrows);
	free(rows);

	/* synchronization: calls, and how their time was spent (scheduler) */
	sync = json_object_new_object();
	J_INT(sync, "count", ts->syncs);
	J_INT(sync, "wait_ns", ts->sync_ns);
	J_INT(sync, "spin_ns", ts->spin_ns);
	J_INT(sync, "blocked_ns", ts->blocked_ns);
	J_INT(sync, "api_count", sync_count);
	J_INT(sync, "api_total_ns", sync_ns);
	by = json_object_new_object();
	if (p) {
		static const char *const ty[CM_GPU_SYNC_TYPES] = {
			"unknown", "event_synchronize", "stream_wait_event", "stream_synchronize",
			"context_synchronize",
		};

		for (int i = 0; i < CM_GPU_SYNC_TYPES; i++) {
			json_object *r;

			if (!p->sync_rec_count[i])
				continue;
			r = json_object_new_object();
			J_INT(r, "count", p->sync_rec_count[i]);
			J_INT(r, "total_ns", p->sync_rec_ns[i]);
			json_object_object_add(by, ty[i], r);
		}
	}
	json_object_object_add(sync, "records", by);
	json_object_object_add(o, "sync", sync);
	J_INT(o, "driver_ioctl_ns", ts->ioctl_ns);
	J_INT(o, "driver_ioctls", ts->ioctls);

	json_object *ov = json_object_new_object();
	J_INT(ov, "count", p ? p->overhead_count : 0);
	J_INT(ov, "total_ns", p ? p->overhead_ns : 0);
	json_object_object_add(o, "cupti_overhead", ov);
	J_INT(o, "dropped_records", p ? p->dropped : 0);
	J_INT(o, "untimed_records", p ? p->untimed : 0);
	J_INT(o, "graph_kernels", p ? p->graph_kernels : 0);
	J_INT(o, "records", p ? p->records : 0);
	J_INT(o, "hook_calls", p ? p->hook_calls : 0);
	J_INT(o, "bad_records", p ? p->bad_records : 0);
	return o;
}

void cm_gpu_lost_json(const struct cm_snapshot *s, json_object *lost)
{
	const struct cm_gpu_counters *c = &s->gpu_counters;
	uint64_t dropped = 0;

	for (size_t i = 0; i < s->ngproc; i++)
		dropped += s->gproc[i].dropped;
	/* CUPTI's own drops (its buffers full): GPU records that never arrived */
	J_INT(lost, "gpu_cupti_dropped_records", dropped);

	J_INT(lost, "gpu_api_map_full", c->api_full);
	J_INT(lost, "gpu_kernel_map_full", c->kern_full);
	J_INT(lost, "gpu_copy_map_full", c->copy_full);
	J_INT(lost, "gpu_proc_map_full", c->procs_full);
	J_INT(lost, "gpu_pinned_table_full", c->pinned_full);
	J_INT(lost, "gpu_bad_batches", c->bad_batches);
	J_INT(lost, "gpu_events_full", c->events_full);
}
