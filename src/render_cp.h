/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Text of the critical path and the requests (render_cp.c). */
#ifndef CM_RENDER_CP_H
#define CM_RENDER_CP_H

#include <stdio.h>
#include <json-c/json.h>

void cm_render_critpath(json_object *report, FILE *out);
void cm_render_requests(json_object *report, FILE *out);

#endif /* CM_RENDER_CP_H */
