/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* TEMPORARY stub interface; replaced by the symbolizer branch. */
#ifndef CM_SYM_H
#define CM_SYM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
struct cm_user_regs { uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss; };
struct cm_sym;
struct cm_sym *cm_sym_new(void);
void cm_sym_free(struct cm_sym *);
int cm_sym_add_process(struct cm_sym *, int pid);
int cm_sym_unwind(struct cm_sym *, int pid, const struct cm_user_regs *regs, const void *stack, size_t stack_len, uint64_t *ips, int max, const char **method, bool *truncated);
const char *cm_sym_user(struct cm_sym *, int pid, uint64_t ip, char *buf, size_t sz);
const char *cm_sym_kernel(struct cm_sym *, uint64_t ip, char *buf, size_t sz);
#endif
