/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Requests (requests.c): the markers of libcontactmap-mark.so, probed in the
 * traced processes; per request its latency, the marking thread's own time
 * and its critical path (critpath.h); the report's `requests` object: latency
 * percentiles, the bands p0-p50 / p50-p90 / p90-p99 / p99-p100 each with its
 * contact map and critical path, and the slowest requests.
 */
#ifndef CM_REQUESTS_H
#define CM_REQUESTS_H

#include <stdint.h>
#include <json-c/json.h>
#include "contactmap.h"

struct cm_requests;
struct cm_critpath;
struct cm_tracer;

struct cm_requests *cm_requests_new(struct cm_critpath *cp);
void cm_requests_free(struct cm_requests *rq);
/* Uprobes on the marker library's two functions (every process mapping the
 * file; the BPF side keeps only traced threads). path NULL: the library
 * next to contactmap and in PREFIX/lib. Returns the path probed first (for
 * CONTACTMAP_MARK_LIB), or NULL when none was found (not an error). */
const char *cm_requests_attach(struct cm_requests *rq, struct cm_tracer *tr, const char *path);
void cm_requests_detach(struct cm_requests *rq);
/* A CM_EV_REQ_BEGIN or CM_EV_REQ_END record. */
void cm_requests_event(struct cm_requests *rq, const struct cm_cp_event *e);
/* Resolves the requests whose histories are complete; force: all of them. */
void cm_requests_poll(struct cm_requests *rq, uint64_t now, bool force);
/* The oldest time an open or unresolved request may still ask about. */
uint64_t cm_requests_keep_from(const struct cm_requests *rq, uint64_t now);
/* fn(ctx, pid, tid, id, begin, end) for each request as it ends (timeline). */
typedef void (*cm_request_fn)(void *ctx, uint32_t pid, uint32_t tid, uint64_t id, uint64_t b,
			      uint64_t e);
void cm_requests_on_request(struct cm_requests *rq, cm_request_fn fn, void *ctx);
/* The report's `requests` object, or NULL when no request was seen. */
json_object *cm_requests_json(struct cm_requests *rq);

#endif /* CM_REQUESTS_H */
