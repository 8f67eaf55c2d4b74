// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* DWARF unwinding of one sample: libdw's dwfl_frame driven by our own
 * callbacks. Registers come from the sample, memory from the stack snapshot
 * and the mapped ELF files; libdw steps with CFI and, where a frame has none,
 * with the frame pointer (its x86_64 backend). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
