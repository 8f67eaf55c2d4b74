/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Request markers for contactmap (libcontactmap-mark.so).
 *
 *     contactmap_request_begin(id);   ... serve request id ...   contactmap_request_end(id);
 *
 * A request's latency runs from begin to end on the calling thread; contactmap
 * reports each request's critical path (the OS work that determined its
 * latency) and the requests by latency band. Ids are the caller's (a counter,
 * a hash of the request): begin and end match by (thread, id), so requests
 * may nest and overlap. When contactmap is not tracing the process the calls
 * do nothing and cost a few nanoseconds; when it is, each is a uprobe.
 */
#ifndef CONTACTMAP_MARK_H
#define CONTACTMAP_MARK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void contactmap_request_begin(uint64_t id);
void contactmap_request_end(uint64_t id);

#ifdef __cplusplus
}
#endif

#endif /* CONTACTMAP_MARK_H */
