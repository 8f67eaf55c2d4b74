/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Internals shared by python.c (processes, layouts), pyreport.c and pyframes.c
 * (code objects, line tables, names, splicing). */
#ifndef CM_PYTHON_INT_H
#define CM_PYTHON_INT_H

#include <sys/types.h>
#include "python.h"

/* One interpreter file (the ELF that defines _PyRuntime), shared by every
 * process that maps it. Addresses are link-time ones. */
struct py_module {
	struct py_module *next;
	dev_t dev;
	uint64_t ino;
	char *path;
	bool is_python;		/* defines _PyRuntime, a supported version */
	char why[96];		/* why not, when it looked like one */
	unsigned minor, micro;
	char version[24];	/* "3.11.2" */
	uint64_t load_lo;	/* first PT_LOAD, page-aligned: where the file's offset 0 lands */
	uint64_t runtime, eval, eval_size, code_type;
	const char *symtab;	/* ".dynsym" or ".symtab": where _PyRuntime was found */
	struct cm_py_layout lay;
	char layout_from[96];	/* the table, or 3.13's _Py_DebugOffsets */
};

struct py_range {
	uint64_t lo, hi;
};

struct py_gil_holder {
	uint32_t waiter, holder;
	uint64_t ns, waits;
};

#define PY_TEXT_RANGES 4

/* One traced process, Python or not (as of its last look). */
struct py_proc {
	struct py_proc *next;
	int pid, ppid;
	char comm[CM_COMM_LEN + 1], pcomm[CM_COMM_LEN + 1];
	struct py_module *mod;	/* NULL: not Python */
	struct py_module *unsupported;	/* a CPython it does not know (3.9, free-threaded) */
	uint64_t bias;
	uint64_t runtime, eval_lo, eval_hi, code_type;
	struct py_range text[PY_TEXT_RANGES];	/* the interpreter's executable mappings */
	int ntext;
	struct cm_py_proc desc;	/* what was written to py_procs */
	bool in_map;
	uint64_t looked_ns;	/* last probe */
	unsigned probes;
	bool deferred;		/* a probe put off by the rate limit */
	int check;		/* layout check against the live runtime: 0 to do, 1 ok, -1 failed */
	char check_msg[128];
	/* naming, counted as stack events arrive */
	uint64_t py_stacks, frames_named, frames_unknown, unmatched;
	struct py_gil_holder *gil;
	size_t ngil, capgil;
};

/* A code object read from a process. */
struct py_code {
	struct py_code *next;
	int pid;
	uint64_t addr;
	bool ok;		/* a code object whose names were read */
	char *qual, *file;
	int firstlineno, firsttraceable;
	uint64_t code_bytes;	/* size of its bytecode: positions past it are not its */
	uint8_t *lt;		/* co_linetable */
	size_t ltlen;
	uint64_t fp[6];		/* header words checked before the entry is used again */
	uint64_t checked_ns;
	uint32_t globals;	/* low 32 bits of the f_globals it last ran with (0: none seen) */
};

#define PY_PROC_BUCKETS 256
#define PY_CODE_BUCKETS 16384

struct cm_python {
	int map_fd;
	struct cm_sym *sym;
	uint32_t tcb_specific, tcb_tid;	/* this glibc's struct pthread, found at start */
	bool tcb_ok;
	struct py_module *mods;
	struct py_proc *procs[PY_PROC_BUCKETS];
	struct py_code *codes[PY_CODE_BUCKETS];
	/* interned frame names: id i is names[i] */
	char **names;
	size_t nnames, capnames;
	uint32_t *name_tab;	/* open addressing: id + 1, 0 empty */
	size_t name_cap;
	/* run-wide */
	uint64_t code_reads, code_read_failed, code_not_code, code_revalidated, code_replaced;
	uint64_t code_gone;	/* freed (and its address reused) before it was read */
	uint64_t probes, map_full;
};

/* python.c */
struct py_proc *py_proc_get(struct cm_python *py, int pid, bool create);
bool py_read(int pid, uint64_t addr, void *buf, size_t len);
/* pyframes.c */
void py_codes_free(struct cm_python *py);
void py_names_free(struct cm_python *py);
uint64_t py_now_ns(void);

#endif /* CM_PYTHON_INT_H */
