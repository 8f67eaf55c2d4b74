/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Internals shared by sym.c (files, processes, names) and unwind.c (libdw). */
#ifndef CM_SYM_INT_H
#define CM_SYM_INT_H

#include <sys/types.h>
#include <libelf.h>
#include <elfutils/libdwfl.h>
#include "sym.h"

struct cm_seg {			/* one PT_LOAD */
	uint64_t vaddr, memsz, off, filesz;
	uint32_t flags;		/* PF_X | PF_W | PF_R */
};

struct cm_usym {
	uint64_t addr;
	uint32_t size;		/* 0: runs to the next symbol */
	uint32_t name;		/* offset in the file's string table */
};

/* One ELF file, shared by every process that maps it. */
struct cm_file {
	struct cm_file *next;	/* hash chain */
	dev_t dev;		/* of the mapping, as /proc/PID/maps prints it */
	uint64_t ino;
	char *path;		/* as mapped, without " (deleted)" */
	char *base;		/* sanitized basename, for "module+0x..." */
	Elf *elf;		/* ELF_C_READ_MMAP, fd closed; NULL: unreadable or not ELF */
	void *image;		/* malloc'ed copy backing elf (the vDSO), or NULL */
	bool opened;		/* open was attempted */
	uint16_t e_type;
	struct cm_seg *segs;
	int nsegs;
	uint64_t relro_lo, relro_hi;	/* PT_GNU_RELRO: relocated at run time */
	uint64_t load_lo, load_hi;	/* first PT_LOAD aligned down, end of the last */
	/* symbols, loaded on first lookup */
	bool syms_loaded;
	struct cm_usym *syms;
	size_t nsyms;
	const char *strtab;	/* in the mapped symbol file */
	size_t strtab_sz;
	Elf *debug;		/* separate debug file the symbols came from, or NULL */
	char **demangled;	/* per symbol, filled on demand: name or "" (not C++) */
};

struct cm_map {
	uint64_t start, end, pgoff;
	uint32_t prot;		/* PROT_READ | PROT_WRITE | PROT_EXEC */
	struct cm_file *file;	/* executable ELF mapping (or the vDSO), else NULL */
	const char *name;	/* pathname column ("" for anonymous), points into names */
};

struct cm_perfmap_ent {
	uint64_t start, end;
	size_t line;		/* later lines describe newer code at reused addresses */
	char *name;
};

struct cm_unwind_ctx;

/* An arena of CPython perf trampolines (unwind.c): a mapping filled with
 * copies of one thunk. */
struct cm_tramp_arena {
	uint64_t lo, hi;
	int kind;		/* 1 + index in unwind.c's thunks, 0: unused */
	int stride;		/* bytes from one copy to the next */
};
#define CM_TRAMP_ARENAS 4

struct cm_proc {
	struct cm_proc *next;
	int pid;
	struct cm_map *maps;	/* sorted by start */
	int nmaps;
	char *names;		/* pathname strings of maps */
	size_t names_len;
	uint64_t refresh_ns;	/* last maps read, for refresh-on-miss */
	/* unwinder: one Dwfl per address space, modules re-reported after a snapshot */
	Dwfl *dwfl;
	bool dwfl_stale;
	bool dwfl_failed;
	struct cm_unwind_ctx *uctx;	/* the sample being unwound */
	/* JIT symbols from perf-PID.map */
	struct cm_perfmap_ent *jit;
	size_t njit;
	int64_t jit_mtime_ns;
	int64_t jit_size;
	struct cm_tramp_arena tramp[CM_TRAMP_ARENAS];
	unsigned ntramp;
};

#define CM_FILE_BUCKETS 1024
#define CM_PROC_BUCKETS 256

struct cm_ksym {
	uint64_t addr;
	uint32_t name;		/* offset in kstr */
};

struct cm_sym {
	struct cm_file *files[CM_FILE_BUCKETS];
	struct cm_proc *procs[CM_PROC_BUCKETS];
	struct cm_file *vdso;	/* the same image in every process of this kernel */
	Elf *arch_elf;		/* an ELF header only: tells libdw the architecture */
	unsigned char arch_hdr[64] __attribute__((aligned(8)));	/* its Elf64_Ehdr */
	/* kernel */
	bool ksyms_loaded;
	struct cm_ksym *ksyms;
	size_t nksyms;
	char *kstr;
	/* stats */
	unsigned nfiles, nsymtabs, ndebug;
	uint64_t nsyms, heap;
	uint64_t unwinds, unwind_ns;
};

/* sym.c */
struct cm_proc *cm_sym_proc(struct cm_sym *s, int pid, bool create);
const struct cm_map *cm_sym_find_map(const struct cm_proc *p, uint64_t addr);
/* The process, its snapshot taken or refreshed if addr is outside it. */
struct cm_proc *cm_sym_proc_for(struct cm_sym *s, int pid, uint64_t addr);
uint64_t cm_sym_now_ns(void);
/* unwind.c */
void cm_unwind_proc_free(struct cm_proc *p);

#endif /* CM_SYM_INT_H */
