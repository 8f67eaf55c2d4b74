/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The CUPTI agent's parts (agent/cupti_agent.c, agent/cupti_calls.c). */
#ifndef CM_AGENT_H
#define CM_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <cupti.h>
#include "contactmap_gpu.h"

/* A CUPTI callback id the agent times, and the API id it counts as. */
struct cm_agent_cb {
	CUpti_CallbackDomain domain;
	CUpti_CallbackId cbid;
	enum cm_gpu_api api;
};

extern const struct cm_agent_cb cm_agent_cbs[];
extern const size_t cm_agent_ncbs;

/* Size (and direction, CM_COPY_*) of the call from its parameters. */
uint64_t cm_agent_api_bytes(CUpti_CallbackDomain d, CUpti_CallbackId cb, const void *params,
			    uint8_t *kind);

/* One activity record as a cm_gpu_rec (0: a kind contactmap does not take);
 * offset moves CUPTI's timestamps to CLOCK_MONOTONIC. */
int cm_agent_to_rec(const CUpti_Activity *a, struct cm_gpu_rec *r, int64_t offset,
		    uint32_t cupti_version);

#endif /* CM_AGENT_H */
