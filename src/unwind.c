// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* DWARF unwinding of one sample: libdw's dwfl_frame driven by our own
 * callbacks. Registers come from the sample, memory from the stack snapshot
 * and the mapped ELF files; libdw steps with CFI and, where a frame has none,
 * with the frame pointer (its x86_64 backend). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <dwarf.h>
#include "cm.h"
#include "sym_int.h"

/* Without the stack's mapping (a thread started after the snapshot) a read
 * this far above the snapshot still counts as "the snapshot ran out". */
#define STACK_GUESS (8u << 20)
#define MAX_FRAMES 1024

struct cm_unwind_ctx {
	const struct cm_user_regs *regs;
	const unsigned char *stack;
	uint64_t sp, len, stack_hi;
	struct cm_proc *proc;
	uint64_t *ips;
	int max, n;
	bool full;		/* max frames filled */
	bool overran;		/* a read above the snapshot since the last frame */
	uint64_t last_pc, last_sp;
	bool step_cfi[MAX_FRAMES];	/* step from frame i used CFI */
	/* a CPython perf trampoline stepped by hand: the walk starts again at
	 * its caller, with these registers */
	bool restart;
	struct cm_user_regs restart_regs;
};

/* ---- memory ----------------------------------------------------------------- */

static bool read_file_backed(struct cm_proc *p, uint64_t addr, Dwarf_Word *out)
{
	const struct cm_map *m = cm_sym_find_map(p, addr);
	size_t size;
	char *raw;

	/* only read-only file data: writable mappings and RELRO hold values the
	 * process computed, which the file does not have */
	if (!m || !m->file || !m->file->elf || (m->prot & PROT_WRITE) || addr + 8 > m->end)
		return false;
	uint64_t off = addr - m->start + m->pgoff;
	for (int i = 0; i < m->file->nsegs; i++) {
		const struct cm_seg *g = &m->file->segs[i];
		if (off >= g->off && off - g->off < g->filesz) {
			uint64_t va = off - g->off + g->vaddr;
			if (va >= m->file->relro_lo && va < m->file->relro_hi)
				return false;
			break;
		}
	}
	raw = elf_rawfile(m->file->elf, &size);
	if (!raw || off + 8 > size)
		return false;
	memcpy(out, raw + off, 8);
	return true;
}

static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg)
{
	struct cm_unwind_ctx *u = ((struct cm_proc *)arg)->uctx;

	if (addr >= u->sp && addr - u->sp <= u->len && u->len - (addr - u->sp) >= 8) {
		memcpy(result, u->stack + (addr - u->sp), 8);
		return true;
	}
	if (addr >= u->sp && addr < u->stack_hi) {
		u->overran = true;
		return false;
	}
	return read_file_backed(u->proc, addr, result);
}

/* ---- CPython perf trampolines -------------------------------------------------- */

/*
 * python -X perf (3.12+) runs each Python call through a copy of
 * Python/asm_trampoline.S in anonymous memory, without CFI or a frame
 * pointer of its own, so libdw's fallback (the rbp chain) loses the caller
 * there. The thunk is tiny and fixed, so its caller follows from where pc is
 * in it. Two forms exist on x86_64 (3.12/3.13, and later ones that keep a
 * frame pointer, with or without endbr64):
 *   A: sub $8,%rsp; call *%rcx; add $8,%rsp; ret
 *   B: [endbr64;] push %rbp; mov %rsp,%rbp; call *%rcx; pop %rbp; ret
 * Each step: at pc's offset in the thunk, the return address is at sp + ra
 * and the caller's sp is sp + ra + 8; in B after the push, rbp was saved at sp.
 */
struct thunk {
	const unsigned char *code;
	int len;
	struct { int off, ra, rbp; } at[6];	/* rbp: -1 unchanged, else its slot */
};

static const unsigned char thunk_a[] = { 0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3 };
static const unsigned char thunk_b[] = { 0x55, 0x48, 0x89, 0xe5, 0xff, 0xd1, 0x5d, 0xc3 };
static const unsigned char thunk_be[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0xff, 0xd1,
					  0x5d, 0xc3 };
static const struct thunk thunks[] = {
	{ thunk_a, sizeof(thunk_a), { { 0, 0, -1 }, { 4, 8, -1 }, { 6, 8, -1 }, { 10, 0, -1 }, { -1, 0, 0 } } },
	{ thunk_b, sizeof(thunk_b), { { 0, 0, -1 }, { 1, 8, 0 }, { 4, 8, 0 }, { 6, 8, 0 }, { 7, 0, -1 }, { -1, 0, 0 } } },
	{ thunk_be, sizeof(thunk_be), { { 0, 0, -1 }, { 4, 0, -1 }, { 5, 8, 0 }, { 8, 8, 0 }, { 10, 8, 0 },
					{ 11, 0, -1 } } },
};
/* return addresses into a thunk: just after its call */
static const int thunk_ret[] = { 6, 6, 10 };

static bool proc_read(int pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };

	return pid > 0 && process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)len;
}

/*
 * Whether thunk t starts at addr. CPython fills a whole arena (one anonymous
 * mapping) with copies of the thunk when it makes it, one every `stride`
 * bytes (its size in 3.12, rounded up to 16 in 3.13): once the arena's
 * first copies were read, the others are known by their place, which also
 * serves samples read after the process exited.
 */
static bool thunk_at(struct cm_proc *p, const struct cm_map *m, size_t t, uint64_t addr, unsigned char *code)
{
	const struct thunk *k = &thunks[t];
	const int strides[] = { k->len, 16, 32 };
	unsigned char head[64 + 16];

	for (int i = 0; i < CM_TRAMP_ARENAS; i++)
		if (p->tramp[i].lo == m->start && p->tramp[i].hi == m->end && p->tramp[i].kind == (int)t + 1)
			return addr >= m->start && (addr - m->start) % p->tramp[i].stride == 0;
	if (!proc_read(p->pid, addr, code, k->len) || memcmp(code, k->code, k->len))
		return false;
	if (m->end - m->start >= sizeof(head) && proc_read(p->pid, m->start, head, sizeof(head)))
		for (int i = 0; i < 3; i++)
			if (!memcmp(head, k->code, k->len) && !memcmp(head + strides[i], k->code, k->len)) {
				p->tramp[p->ntramp++ % CM_TRAMP_ARENAS] =
					(struct cm_tramp_arena){ m->start, m->end, (int)t + 1, strides[i] };
				break;
			}
	return true;
}

/* Whether pc is in a trampoline; fills *ra_off / *rbp_slot for its step. */
static bool trampoline_step(struct cm_proc *p, uint64_t pc, bool activation, int *ra_off, int *rbp_slot)
{
	const struct cm_map *m = cm_sym_find_map(p, activation ? pc : pc - 1);
	unsigned char code[32];

	if (!m || m->file || !(m->prot & PROT_EXEC) || m->name[0])
		return false;	/* only anonymous code: the JIT's */
	for (size_t t = 0; t < sizeof(thunks) / sizeof(thunks[0]); t++) {
		const struct thunk *k = &thunks[t];

		for (int i = 0; i < 6 && k->at[i].off >= 0; i++) {
			int off = activation ? k->at[i].off : thunk_ret[t];

			if ((!activation && i) || pc < m->start + (uint64_t)off ||
			    pc - off + k->len > m->end)
				continue;
			if (!thunk_at(p, m, t, pc - off, code))
				continue;
			if (!activation) {
				*ra_off = 8;
				*rbp_slot = t ? 0 : -1;
			} else {
				*ra_off = k->at[i].ra;
				*rbp_slot = k->at[i].rbp;
			}
			return true;
		}
	}
	return false;
}

/* ---- thread callbacks: one thread, the sample's ------------------------------ */

static pid_t next_thread(Dwfl *dwfl, void *arg, void **thread_argp)
{
	if (*thread_argp)
		return 0;
	*thread_argp = ((struct cm_proc *)arg)->uctx;
	return ((struct cm_proc *)arg)->pid > 0 ? ((struct cm_proc *)arg)->pid : 1;
}

static bool get_thread(Dwfl *dwfl, pid_t tid, void *arg, void **thread_argp)
{
	*thread_argp = ((struct cm_proc *)arg)->uctx;
	return true;
}

static bool set_initial_registers(Dwfl_Thread *thread, void *arg)
{
	const struct cm_user_regs *r = ((struct cm_unwind_ctx *)arg)->regs;
#if defined(__x86_64__)
	/* DWARF register numbers of the x86_64 psABI: rax rdx rcx rbx rsi rdi rbp
	 * rsp r8..r15, then 16 = the return address column, i.e. rip */
	Dwarf_Word dw[17] = { r->ax, r->dx, r->cx, r->bx, r->si, r->di, r->bp, r->sp,
			      r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
			      r->ip };

	if (!dwfl_thread_state_registers(thread, 0, 17, dw))
		return false;
#endif
	dwfl_thread_state_register_pc(thread, r->ip);
	return true;
}

static const Dwfl_Thread_Callbacks thread_cbs = {
	.next_thread = next_thread,
	.get_thread = get_thread,
	.memory_read = memory_read,
	.set_initial_registers = set_initial_registers,
};

/* ---- modules ---------------------------------------------------------------- */

/* Every Dwfl module of a file shares the one Elf of our file cache (libelf
 * counts the references), so a library mapped by 50 processes is mapped and
 * parsed once, and stays readable after they exit. */
static int find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
		    char **file_name, Elf **elfp)
{
	struct cm_file *f = *userdata;

	*elfp = f && f->elf ? elf_begin(-1, ELF_C_READ_MMAP, f->elf) : NULL;
	return -1;
}

/* .eh_frame is in the main file; a separate debug file would only add
 * .debug_frame, which x86_64 toolchains rarely emit instead of it. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
			  Dwarf_Addr base, const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	return -1;
}

static const Dwfl_Callbacks dwfl_cbs = {
	.find_elf = find_elf,
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

/* Load bias of an executable mapping: where the PT_LOAD holding its first
 * byte was placed, relative to its link-time address. */
static bool mapping_bias(const struct cm_map *m, uint64_t *bias)
{
	const struct cm_file *f = m->file;

	for (int i = 0; i < f->nsegs; i++) {
		const struct cm_seg *g = &f->segs[i];
		uint64_t page_off = g->off & ~0xfffull;
		if ((g->flags & PF_X) && m->pgoff >= page_off && m->pgoff < g->off + g->filesz) {
			*bias = m->start - m->pgoff + g->off - g->vaddr;
			return true;
		}
	}
	return false;
}

static bool dwfl_setup(struct cm_sym *s, struct cm_proc *p)
{
	if (!p->dwfl) {
		if (p->dwfl_failed)
			return false;
		p->dwfl = dwfl_begin(&dwfl_cbs);
		if (!p->dwfl || !dwfl_attach_state(p->dwfl, s->arch_elf, p->pid > 0 ? p->pid : 1,
						   &thread_cbs, p)) {
			cm_debug("unwind: libdw: %s", dwfl_errmsg(-1));
			if (p->dwfl)
				dwfl_end(p->dwfl);
			p->dwfl = NULL;
			p->dwfl_failed = true;
			return false;
		}
		p->dwfl_stale = true;
	}
	if (!p->dwfl_stale)
		return true;
	/* modules that are reported again unchanged (name, start, end) keep their
	 * parsed CFI across snapshots */
	dwfl_report_begin(p->dwfl);
	const struct cm_file *last = NULL;
	uint64_t last_bias = 0;
	for (int i = 0; i < p->nmaps; i++) {
		const struct cm_map *m = &p->maps[i];
		uint64_t bias;
		char name[256];
		if (!m->file || !m->file->elf || !(m->prot & PROT_EXEC) || !mapping_bias(m, &bias))
			continue;
		if (m->file == last && bias == last_bias)
			continue;	/* text split in two mappings */
		last = m->file;
		last_bias = bias;
		snprintf(name, sizeof(name), "%s#%llx", m->file->base, (unsigned long long)m->file->ino);
		Dwfl_Module *mod = dwfl_report_module(p->dwfl, name, bias + m->file->load_lo,
						      bias + m->file->load_hi);
		void **ud;
		if (mod && dwfl_module_info(mod, &ud, NULL, NULL, NULL, NULL, NULL, NULL))
			*ud = m->file;
	}
	dwfl_report_end(p->dwfl, NULL, NULL);
	p->dwfl_stale = false;
	return true;
}

void cm_unwind_proc_free(struct cm_proc *p)
{
	if (p->dwfl)
		dwfl_end(p->dwfl);
	p->dwfl = NULL;
}

/* ---- unwinding ---------------------------------------------------------------- */

/* Whether libdw steps from pc with CFI (it tries .eh_frame, then .debug_frame,
 * then the frame pointer). */
static bool has_cfi(Dwfl *dwfl, Dwarf_Addr pc)
{
	Dwfl_Module *mod = dwfl_addrmodule(dwfl, pc);
	Dwarf_Addr bias;
	Dwarf_Frame *fr;
	Dwarf_CFI *cfi;

	if (!mod)
		return false;
	if ((cfi = dwfl_module_eh_cfi(mod, &bias)) && !dwarf_cfi_addrframe(cfi, pc - bias, &fr)) {
		free(fr);
		return true;
	}
	if ((cfi = dwfl_module_dwarf_cfi(mod, &bias)) && !dwarf_cfi_addrframe(cfi, pc - bias, &fr)) {
		free(fr);
		return true;
	}
	return false;
}

static int frame_cb(Dwfl_Frame *state, void *arg)
{
	struct cm_unwind_ctx *u = arg;
	Dwarf_Addr pc;
	Dwarf_Word sp = 0;
	bool activation = false;

	u->overran = false;
	/* asking for activation makes libdw unwind this frame now, so a read that
	 * overruns the snapshot is seen before the walk ends */
	if (!dwfl_frame_pc(state, &pc, &activation))
		return DWARF_CB_ABORT;
	dwfl_frame_reg(state, 7, &sp);
	if (u->n && pc == u->last_pc && sp == u->last_sp)
		return DWARF_CB_ABORT;	/* a step that did not move: bad CFI or data */
	if (u->n >= u->max) {
		u->full = true;
		return DWARF_CB_ABORT;
	}
	u->ips[u->n] = pc;
	u->step_cfi[u->n] = has_cfi(u->proc->dwfl, activation ? pc : pc - 1);
	u->n++;
	u->last_pc = pc;
	u->last_sp = sp;
	int ra_off, rbp_slot;
	if (!u->step_cfi[u->n - 1] && trampoline_step(u->proc, pc, activation, &ra_off, &rbp_slot)) {
		struct cm_user_regs *r = &u->restart_regs;
		Dwarf_Word v, ra, bp;

		memset(r, 0, sizeof(*r));
		/* the thunk keeps every callee-saved register but rsp (and rbp, B) */
		if (dwfl_frame_reg(state, 3, &v) == 0)
			r->bx = v;
		if (dwfl_frame_reg(state, 6, &v) == 0)
			r->bp = v;
		if (dwfl_frame_reg(state, 12, &v) == 0)
			r->r12 = v;
		if (dwfl_frame_reg(state, 13, &v) == 0)
			r->r13 = v;
		if (dwfl_frame_reg(state, 14, &v) == 0)
			r->r14 = v;
		if (dwfl_frame_reg(state, 15, &v) == 0)
			r->r15 = v;
		if (!memory_read(NULL, sp + ra_off, &ra, u->proc) || !ra)
			return DWARF_CB_ABORT;
		if (rbp_slot >= 0) {
			if (!memory_read(NULL, sp + rbp_slot, &bp, u->proc))
				return DWARF_CB_ABORT;
			r->bp = bp;
		}
		r->ip = ra;
		r->sp = sp + ra_off + 8;
		u->step_cfi[u->n - 1] = true;	/* an exact rule, as good as CFI */
		u->restart = true;
		return DWARF_CB_ABORT;
	}
	return DWARF_CB_OK;
}

int cm_sym_unwind_fp(const struct cm_user_regs *regs, const void *stack, size_t stack_len,
		     uint64_t *ips, int max, bool *truncated)
{
	const unsigned char *st = stack;
	uint64_t fp = regs->bp, sp = regs->sp;
	int n = 0;
	bool trunc = false;

	if (max <= 0)
		return 0;
	ips[n++] = regs->ip;
	while (n < max) {
		uint64_t next, ret;
		if (fp < sp || (fp & 7))
			break;	/* not a frame pointer into this stack */
		if (fp - sp > stack_len || stack_len - (fp - sp) < 16) {
			trunc = fp - sp < STACK_GUESS;
			break;
		}
		memcpy(&next, st + (fp - sp), 8);
		memcpy(&ret, st + (fp - sp) + 8, 8);
		if (!ret)
			break;
		ips[n++] = ret;
		if (next <= fp)
			break;	/* 0 ends the chain (_start clears rbp); down is garbage */
		fp = next;
	}
	if (n == max)
		trunc = true;
	if (truncated)
		*truncated = trunc;
	return n;
}

int cm_sym_unwind(struct cm_sym *s, int pid, const struct cm_user_regs *regs,
		  const void *stack, size_t stack_len, uint64_t *ips, int max,
		  const char **method, bool *truncated)
{
	uint64_t t0 = cm_sym_now_ns();
	struct cm_unwind_ctx *u;
	struct cm_proc *p;
	int n;

	if (method)
		*method = "fp";
	if (truncated)
		*truncated = false;
	if (max <= 0)
		return 0;
	if (max > MAX_FRAMES)
		max = MAX_FRAMES;
	p = cm_sym_proc_for(s, pid, regs->ip);
	if (!dwfl_setup(s, p)) {
		n = cm_sym_unwind_fp(regs, stack, stack_len, ips, max, truncated);
		goto out;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		n = cm_sym_unwind_fp(regs, stack, stack_len, ips, max, truncated);
		goto out;
	}
	u->regs = regs;
	u->stack = stack;
	u->sp = regs->sp;
	u->len = stack ? stack_len : 0;
	const struct cm_map *sm = cm_sym_find_map(p, regs->sp);
	u->stack_hi = sm ? sm->end : regs->sp + u->len + STACK_GUESS;
	u->proc = p;
	u->ips = ips;
	u->max = max;
	p->uctx = u;
	dwfl_getthread_frames(p->dwfl, pid > 0 ? pid : 1, frame_cb, u);
	/* past each perf trampoline, a new walk from its caller */
	for (int k = 0; u->restart && k < MAX_FRAMES && u->n < max; k++) {
		u->restart = false;
		u->overran = false;
		u->regs = &u->restart_regs;
		dwfl_getthread_frames(p->dwfl, pid > 0 ? pid : 1, frame_cb, u);
	}
	u->restart = false;
	p->uctx = NULL;
	n = u->n;
	if (!n) {	/* libdw gave nothing, not even the first frame */
		n = cm_sym_unwind_fp(regs, stack, stack_len, ips, max, truncated);
		free(u);
		goto out;
	}
	/* the steps that made frames 1..n-1; with a single frame, the one tried */
	int dwarf = 0, fp = 0;
	for (int i = 0; i < (n > 1 ? n - 1 : 1); i++)
		u->step_cfi[i] ? dwarf++ : fp++;
	if (method)
		*method = !fp ? "dwarf" : !dwarf ? "fp" : "mixed";
	if (truncated)
		*truncated = u->full || u->overran;
	free(u);
out:
	s->unwinds++;
	s->unwind_ns += cm_sym_now_ns() - t0;
	return n;
}
