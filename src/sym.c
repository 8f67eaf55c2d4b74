/* TEMPORARY stub; replaced by the symbolizer branch. */
#include <stdio.h>
#include <stdlib.h>
#include "sym.h"
struct cm_sym { int x; };
struct cm_sym *cm_sym_new(void) { return calloc(1, sizeof(struct cm_sym)); }
void cm_sym_free(struct cm_sym *s) { free(s); }
int cm_sym_add_process(struct cm_sym *s, int pid) { return 0; }
int cm_sym_unwind(struct cm_sym *s, int pid, const struct cm_user_regs *regs, const void *stack, size_t stack_len, uint64_t *ips, int max, const char **method, bool *truncated) { return 0; }
const char *cm_sym_user(struct cm_sym *s, int pid, uint64_t ip, char *buf, size_t sz) { snprintf(buf, sz, "0x%llx", (unsigned long long)ip); return buf; }
const char *cm_sym_kernel(struct cm_sym *s, uint64_t ip, char *buf, size_t sz) { snprintf(buf, sz, "k0x%llx", (unsigned long long)ip); return buf; }
