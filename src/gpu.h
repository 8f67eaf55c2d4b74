/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The GPU tiers: the CUPTI agent and CUDA library uprobes (gpu.c). */
#ifndef CM_GPU_H
#define CM_GPU_H

#include "tracer.h"

/* GPU tiers (gpu.c). */
int cm_gpu_start(struct cm_tracer *tr, const struct cm_tracer_opts *o);
bool cm_gpu_agent_found(void);
int cm_gpu_wrap_prepare(struct cm_tracer *tr);	/* finds the agent, attaches its hook */
void cm_gpu_child_env(struct cm_tracer *tr);	/* in the wrapped child, before exec */
int cm_gpu_attach_pid(struct cm_tracer *tr, pid_t pid);
void cm_gpu_watch_pid(struct cm_tracer *tr, pid_t pid);	/* attach mode */
int cm_gpu_poll_fd(struct cm_tracer *tr);
void cm_gpu_poll(struct cm_tracer *tr);
void cm_gpu_detach(struct cm_tracer *tr);
void cm_gpu_close(struct cm_tracer *tr);
int cm_gpu_read(struct cm_tracer *tr, struct cm_snapshot *s);
void cm_gpu_snapshot_free(struct cm_snapshot *s);
json_object *cm_gpu_process_json(const struct cm_snapshot *s, uint32_t pid,
				 const struct cm_gpu_thread_sums *ts);
void cm_gpu_lost_json(const struct cm_snapshot *s, json_object *lost);
json_object *cm_gpu_report_json(const struct cm_tracer *tr, const struct cm_snapshot *s);
const char *cm_gpu_api_name(unsigned api);
const char *cm_gpu_tier_name(unsigned tier);
const char *cm_gpu_status_name(unsigned status);
int cm_gpu_api_class(unsigned api);
const char *cm_gpu_copy_kind_name(unsigned k);
const char *cm_gpu_mem_name(unsigned m);

#endif /* CM_GPU_H */
