/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CPython support shared by the BPF programs (bpf/python.bpf.c) and user space
 * (src/python.c): the per-process description user space writes into the
 * py_procs map, and the Python frames a stack event carries. Plain __u32/__u64
 * only, as in contactmap.h.
 */
#ifndef CM_PYTHON_H
#define CM_PYTHON_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CM_PY_MAX_FRAMES 64	/* Python frames walked per stack */
#define CM_PY_MAX_PROCS 4096	/* Python processes described at once */
/* one read per frame: this many bytes of it, from fr_win */
#define CM_PY_FRAME_WIN 80

/* How the frame chain is linked (CPython's own layouts by minor version). */
/* Stack events that wake user space at once, so that it reads their code
 * objects while they (and the process) still exist: a process's first
 * CM_PY_WAKE_FIRST walks, and blocks this long (at most 50 a second). */
#define CM_PY_WAKE_FIRST 1024
#define CM_PY_WAKE_BLOCK_NS 20000000ULL

#define CM_PY_MODEL_310 1	/* PyFrameObject: f_back, f_code, f_lasti; a C call per frame */
#define CM_PY_MODEL_311 2	/* _PyInterpreterFrame via cframe; is_entry ends a segment */
#define CM_PY_MODEL_312 3	/* _PyInterpreterFrame via cframe; a C-stack shim ends a segment */
#define CM_PY_MODEL_313 4	/* _PyInterpreterFrame from tstate->current_frame; shims as 3.12 */

#define CM_PY_OWNED_BY_CSTACK 3	/* _PyInterpreterFrame.owner of a shim (3.12, 3.13) */

/*
 * One Python process: value of the py_procs map, keyed by tgid. User space
 * fills the layout when it finds _PyRuntime in the process (at exec or fork,
 * or when libpython is mapped); the BPF side only reads it, except for the
 * counters at the end and tss_key, which it caches once the runtime has
 * created it.
 */
struct cm_py_proc {
	__u64 runtime;		/* address of _PyRuntime */
	__u64 gil_lo, gil_hi;	/* the GIL's state: futex words in [lo, hi) are GIL waits */
	__u64 gil_holder;	/* address of its last_holder (the thread state holding it) */
	__u32 model;		/* CM_PY_MODEL_* */
	__u32 minor;		/* 3.minor */
	/* glibc's struct pthread, at the thread's fs base: where pthread_getspecific
	 * keeps the values of the first 32 keys (16-byte {seq, data} entries), and
	 * the thread's kernel id */
	__u32 tcb_specific;
	__u32 tcb_tid;
	__u32 rt_tsskey;	/* _PyRuntime's autoTSSkey: {int initialized; pthread_key_t key} */
	__u32 tss_key;		/* the key, + 1 once read (0: not yet) */
	/* PyThreadState */
	__u32 ts_frame;		/* frame (3.10), current_frame (3.13) or cframe (3.11, 3.12) */
	__u32 cf_current_frame;	/* in the cframe (3.11, 3.12) */
	__u32 ts_thread_id;	/* pthread_self() of its thread: the fs base */
	__u32 ts_native_thread_id;	/* 3.11+: the kernel's tid; 0 when absent */
	/* frames, read as CM_PY_FRAME_WIN bytes from fr_win */
	__u32 fr_win;
	__u32 fr_previous;
	__u32 fr_code;
	__u32 fr_globals;	/* f_globals: tells code objects at one address apart */
	__u32 fr_instr;
	__u32 fr_owner;		/* 3.11+ */
	__u32 fr_is_entry;	/* 3.11 */
	/* written by BPF (atomically): what the walks found */
	__u64 walks;		/* stacks walked with a thread state found */
	__u64 frames;		/* Python frames recorded */
	__u64 no_tstate;	/* threads without a Python thread state (native threads) */
	__u64 bad_tstate;	/* a thread state that is not this thread's: not used */
	__u64 read_failed;	/* a frame or thread state that could not be read */
	__u64 truncated;	/* more than CM_PY_MAX_FRAMES frames */
	__u64 walk_ns;		/* time in the walks (bpf_ktime_get_ns around each) */
	__u64 not_ready;	/* the runtime had not created its thread-state key yet */
	__u64 gil_waits;	/* blocks on the GIL seen at switch-out */
};

/* Status of one walk (cm_py_stack.status). */
#define CM_PY_NONE 0		/* not a Python process (or no walk) */
#define CM_PY_OK 1
#define CM_PY_NO_TSTATE 2
#define CM_PY_BAD_TSTATE 3
#define CM_PY_READ_FAILED 4
#define CM_PY_NOT_READY 5

/* The Python frames of one stack, innermost first (END of cm_stack_event). */
struct cm_py_stack {
	__u32 nframes;
	__u32 status;		/* CM_PY_* */
	__u32 truncated;	/* the chain went on past CM_PY_MAX_FRAMES */
	__u32 gil_holder;	/* off-CPU on the GIL: tid of the thread that held it, or 0 */
	__u64 tstate;
	/* bit i: frame i is the outermost of the frames one _PyEval_EvalFrameDefault
	 * call runs (3.10: every frame; 3.11: is_entry; 3.12+: a shim follows it) */
	__u64 seg_end;
	__u64 code[CM_PY_MAX_FRAMES];	/* PyCodeObject * (3.13: f_executable) */
	__u64 instr[CM_PY_MAX_FRAMES];	/* 3.10: f_lasti; else the instruction pointer */
	/* low 32 bits of each frame's f_globals: a code object freed and another made
	 * at its address (a module's body once imported, then a function) is seldom
	 * run with the same globals, so a change tells the cached name is stale */
	__u32 globals[CM_PY_MAX_FRAMES];
};

#endif /* CM_PYTHON_H */
