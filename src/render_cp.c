// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The text of the critical path and the requests (critpath.c, requests.c):
 * the main thread's critical path as a contact map of its own, under the
 * all-threads one; the requests' latency and their bands side by side, so the
 * tail's OS cost shows at a glance; the slowest requests.
 */
#include <inttypes.h>
#include <string.h>
#include "cm.h"
#include "render_cp.h"

#define T(ns) cm_fmt_ns((ns), (char[32]){0}, 32)
#define TOP_ROWS 6
#define NBANDS 4

static json_object *get(json_object *o, const char *k, json_type t)
{
	return cm_json_get_type(o, k, t);
}

static uint64_t num(json_object *o, const char *k)
{
	json_object *v = cm_json_get(o, k);

	if (!v || (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)))
		return 0;
	return json_object_get_double(v) > 0 ? json_object_get_uint64(v) : 0;
}

static void label(FILE *out, json_object *row, int w)
{
	const char *l = cm_json_str(row, "label") ? cm_json_str(row, "label") : cm_json_str(row, "subsystem");
	int n = cm_put_text(out, l ? l : "?", w);

	for (; n < w; n++)
		fputc(' ', out);
}

void cm_render_critpath(json_object *report, FILE *out)
{
	json_object *cp = get(report, "critical_path", json_type_object);
	json_object *rows = get(cp, "contact_map", json_type_array);
	uint64_t tot = 0, start = num(cp, "start_ns"), end = num(cp, "end_ns");
	size_t n = rows ? json_object_array_length(rows) : 0;

	if (!cp || !n)
		return;
	for (size_t i = 0; i < n; i++)
		tot += num(json_object_array_get_idx(rows, i), "time_ns");
	fprintf(out, "\ncritical path of the command's main thread (tid %" PRIu64 "), %s start to end\n",
		num(cp, "tid"), T(end > start ? end - start : 0));
	fprintf(out, "  (its own time; where another traced thread woke it, what that one did)\n");
	for (size_t i = 0; i < n && i < TOP_ROWS + 4; i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		uint64_t t = num(r, "time_ns");

		fputs("  ", out);
		label(out, r, 14);
		fprintf(out, " %8s %6.1f%%\n", T(t), tot ? 100.0 * t / tot : 0.0);
	}
	if (num(cp, "truncated_ns"))
		fprintf(out, "  (%s of it beyond the histories kept: booked as the wait itself)\n",
			T(num(cp, "truncated_ns")));
}

/* The time of subsystem ss in a band's rows, per request. */
static uint64_t per_req(json_object *band, const char *which, const char *ss)
{
	json_object *rows = get(band, which, json_type_array);
	uint64_t c = num(band, "count");

	for (size_t i = 0; c && rows && i < json_object_array_length(rows); i++) {
		json_object *r = json_object_array_get_idx(rows, i);

		if (cm_json_str(r, "subsystem") && !strcmp(cm_json_str(r, "subsystem"), ss))
			return num(r, "time_ns") / c;
	}
	return 0;
}

void cm_render_requests(json_object *report, FILE *out)
{
	json_object *rq = get(report, "requests", json_type_object);
	json_object *lat = get(rq, "latency_ns", json_type_object);
	json_object *bands = get(rq, "bands", json_type_array), *slow = get(rq, "slowest", json_type_array);
	const char *keys[CM_SS_COUNT];
	int nkeys = 0;

	if (!rq)
		return;
	fprintf(out, "\nrequests  %" PRIu64 " marked", num(rq, "count"));
	if (num(rq, "count"))
		fprintf(out, ", latency p50 %s, p90 %s, p99 %s, max %s", T(num(lat, "p50")),
			T(num(lat, "p90")), T(num(lat, "p99")), T(num(lat, "max")));
	fputc('\n', out);
	if (num(rq, "open") || num(rq, "unmatched_end") || num(rq, "begun_again"))
		fprintf(out, "  %" PRIu64 " still open, %" PRIu64 " ends without a begin, %" PRIu64
			" begun again before their end\n", num(rq, "open"), num(rq, "unmatched_end"),
			num(rq, "begun_again"));
	if (!bands || json_object_array_length(bands) != NBANDS || !num(rq, "count"))
		return;
	/* the subsystems that lead any band's critical path */
	for (int b = 0; b < NBANDS; b++) {
		json_object *rows = get(json_object_array_get_idx(bands, b), "critical_path", json_type_array);

		for (size_t i = 0; rows && i < json_object_array_length(rows) && i < 4; i++) {
			const char *k = cm_json_str(json_object_array_get_idx(rows, i), "subsystem");
			bool seen = false;

			for (int j = 0; j < nkeys && k; j++)
				seen |= !strcmp(keys[j], k);
			if (k && !seen && nkeys < CM_SS_COUNT && num(json_object_array_get_idx(rows, i), "time_ns"))
				keys[nkeys++] = k;
		}
	}
	fprintf(out, "  critical path per request  %12s %12s %12s %12s\n", "p0-p50", "p50-p90",
		"p90-p99", "p99-p100");
	fprintf(out, "  %-26s", "requests");
	for (int b = 0; b < NBANDS; b++)
		fprintf(out, " %12" PRIu64, num(json_object_array_get_idx(bands, b), "count"));
	fputc('\n', out);
	for (int k = 0; k < nkeys; k++) {
		int s = cm_subsys_from_key(keys[k]);

		fprintf(out, "  %-26s", s >= 0 ? cm_subsys_label(s) : keys[k]);
		for (int b = 0; b < NBANDS; b++)
			fprintf(out, " %12s", T(per_req(json_object_array_get_idx(bands, b), "critical_path", keys[k])));
		fputc('\n', out);
	}
	for (size_t i = 0; slow && i < json_object_array_length(slow) && i < 3; i++) {
		json_object *s = json_object_array_get_idx(slow, i), *p = get(s, "critical_path", json_type_array);
		json_object *top = NULL;

		for (size_t j = 0; p && j < json_object_array_length(p); j++)
			if (!top || num(json_object_array_get_idx(p, j), "time_ns") > num(top, "time_ns"))
				top = json_object_array_get_idx(p, j);
		fprintf(out, "  slowest #%zu: id %" PRIu64 ", %s", i + 1, num(s, "id"), T(num(s, "latency_ns")));
		if (top) {
			int ss = cm_subsys_from_key(cm_json_str(top, "subsystem"));

			fprintf(out, ", led by %s %s in tid %" PRIu64, ss >= 0 ? cm_subsys_label(ss) : "?",
				T(num(top, "time_ns")), num(top, "tid"));
		}
		fputc('\n', out);
	}
}
