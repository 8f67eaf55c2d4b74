/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* User-space stack unwinding (DWARF CFI through libdw, frame pointers where CFI
 * is missing) and symbolization of user and kernel addresses. See docs/stacks.md.
 *
 * Not thread-safe: one struct cm_sym is used from one thread at a time. */
#ifndef CM_SYM_H
#define CM_SYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The user registers at a sample point, in x86_64 pt_regs order (what a BPF
 * program copies out of the task's pt_regs). Only ip, sp, bp, bx, r12-r15 matter
 * for unwinding; the rest are passed on to the CFI evaluator as they are. */
struct cm_user_regs {
	uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di,
		 orig_ax, ip, cs, flags, sp, ss;
};

/* One per contactmap run. ELF files, their symbol tables and debug files are
 * cached once per file (device + inode of the mapping), however many processes
 * map them; each process keeps its snapshot of /proc/PID/maps. */
struct cm_sym;

struct cm_sym *cm_sym_new(void);
void cm_sym_free(struct cm_sym *s);

/* Snapshots /proc/PID/maps now and opens every executable ELF mapped (through
 * /proc/PID/map_files, so deleted or replaced files still open while the process
 * lives). Call it when a traced process starts, again after it execs, and when
 * it maps new code (dlopen) if samples must resolve after it exits: the last
 * snapshot stays usable after the process is gone. 0, or -errno (ESRCH: no such
 * process; the previous snapshot, if any, is kept). */
int cm_sym_add_process(struct cm_sym *s, int pid);
/* Drops a process's snapshot and unwinder state (its files stay cached). */
void cm_sym_forget_process(struct cm_sym *s, int pid);

/* Unwinds one sample of PID. regs are the user registers at the sample, stack
 * holds stack_len bytes of user stack copied from regs->sp upwards. Uses DWARF
 * CFI (.eh_frame, else .debug_frame) through libdw's dwfl_frame, with the
 * stack snapshot and the mapped ELF files as memory; a frame whose code has no
 * CFI is stepped with the frame pointer. Fills ips[0] = regs->ip and the return
 * addresses after it, returns their number (>= 1 when max >= 1).
 * *method: "dwarf", "fp" (no step used CFI) or "mixed".
 * *truncated: it stopped before the outermost frame because the snapshot ended
 * (a read above sp + stack_len) or max frames were filled; false when it
 * reached the outermost frame (_start, clone, an undefined return address) or
 * stopped on bad data. method and truncated may be NULL. */
int cm_sym_unwind(struct cm_sym *s, int pid, const struct cm_user_regs *regs,
		  const void *stack, size_t stack_len, uint64_t *ips, int max,
		  const char **method, bool *truncated);
/* Frame-pointer walk only (rbp chain in the snapshot): what a kernel FP stack
 * would give. Same conventions as cm_sym_unwind. */
int cm_sym_unwind_fp(const struct cm_user_regs *regs, const void *stack, size_t stack_len,
		     uint64_t *ips, int max, bool *truncated);

/* Names one user frame of PID into buf (always NUL-terminated) and returns buf:
 * "function" (C++ demangled), else "module+0xOFFSET" (basename of the mapped
 * file and the offset of ip in it), else "[unknown]"; JIT code is named from
 * /tmp/perf-PID.map. Only printable ASCII, never ';' or a newline, so names
 * can go straight into folded stacks.
 * cm_sym_user treats ip as an exact address (ips[0] of a stack). For the return
 * addresses ips[1..] use cm_sym_user_frame(..., true, ...): it looks up ip - 1,
 * so a call that ends a function (noreturn) resolves to the caller; the printed
 * offset stays that of ip. */
const char *cm_sym_user(struct cm_sym *s, int pid, uint64_t ip, char *buf, size_t sz);
const char *cm_sym_user_frame(struct cm_sym *s, int pid, uint64_t ip, bool return_address,
			      char *buf, size_t sz);

/* Names a kernel address from /proc/kallsyms (read once, binary search):
 * "function", or "[unknown]" (also when kallsyms hides addresses). The address
 * is looked up as given. */
const char *cm_sym_kernel(struct cm_sym *s, uint64_t ip, char *buf, size_t sz);

/* Demangles a C++ (Itanium ABI) symbol into buf; NULL when name is not mangled
 * or does not demangle. The result is sanitized like cm_sym_user's. */
const char *cm_sym_demangle(const char *name, char *buf, size_t sz);

/* What the caches hold, for -v and for sizing. */
struct cm_sym_stats {
	unsigned processes;	/* snapshots held */
	unsigned files;		/* ELF files opened (kept mapped) */
	unsigned symtabs;	/* files whose symbol table is loaded */
	unsigned debug_files;	/* separate debug files found */
	uint64_t symbols;	/* user symbols loaded, all files */
	uint64_t kernel_symbols;
	uint64_t heap_bytes;	/* approximate memory of the tables above */
	uint64_t unwinds;	/* cm_sym_unwind calls */
	uint64_t unwind_ns;	/* time spent in them */
};
void cm_sym_get_stats(const struct cm_sym *s, struct cm_sym_stats *st);

#endif /* CM_SYM_H */
