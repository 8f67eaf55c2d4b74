/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CPython in the contact map (docs/python.md): finds the interpreter in a
 * traced process, describes it to the BPF frame walker (py_procs), names the
 * frames the walker records (code objects read from the live process, cached
 * by address and checked again before reuse) and puts them in place of the
 * interpreter's C frames in each stack.
 *
 * Not thread-safe: one struct cm_python, used from the tracer's thread.
 */
#ifndef CM_PYTHON_USER_H
#define CM_PYTHON_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>
#include "contactmap.h"

struct cm_python;
struct cm_sym;
struct cm_stacks;

/* Where one CPython minor version keeps what the walker and the GIL
 * classifier read (src/python_offsets.h, generated from its headers). */
struct cm_py_layout {
	unsigned minor;
	const char *source;	/* the headers' version */
	unsigned rt_interp_head, rt_interp_main, rt_tsskey, rt_gil, rt_main_interp;
	unsigned interp_tstate_head, interp_gil, interp_ceval_gil;
	unsigned gil_size, gil_last_holder, gil_locked;
	unsigned ts_next, ts_interp, ts_thread_id, ts_native_thread_id, ts_frame, ts_cframe;
	unsigned cf_current_frame;
	unsigned fr_previous, fr_code, fr_globals, fr_instr, fr_owner, fr_is_entry;
	unsigned co_filename, co_name, co_qualname, co_firstlineno, co_linetable;
	unsigned co_code_adaptive, co_firsttraceable, co_code;
	unsigned uni_ascii_size, uni_compact_size, uni_state, uni_length;
	unsigned bytes_size, bytes_sval;
};

/* py_procs_fd: the BPF map; sym: names native frames (NULL without stacks). */
struct cm_python *cm_python_new(int py_procs_fd, struct cm_sym *sym);
void cm_python_free(struct cm_python *py);

/* A process to look at now: seeded at attach, or its image changed. */
void cm_python_add_process(struct cm_python *py, int pid);
/* A record of the stack ring buffer: a maps event makes it look at the
 * process (at most every few ms: a probe deferred is done by poll); an
 * off-CPU GIL wait is counted against the thread that held the GIL. */
void cm_python_event(struct cm_python *py, const void *data, size_t len);
/* Deferred work: probes put off, layouts to check once the runtime is up. */
void cm_python_poll(struct cm_python *py);

/* Tagged ids stand for Python frames among a stack's user addresses. */
#define CM_PY_FRAME_TAG 0x8000000000000000ull
static inline bool cm_python_is_frame(uint64_t ip)
{
	return (ip >> 48) == 0x8000;
}
/* Replaces the interpreter's frames in the native user stack ips[0..n)
 * (innermost first; truncated: the unwind did not reach the thread's entry)
 * with the Python frames of ps, as tagged ids; returns the new count (<= max). */
int cm_python_splice(struct cm_python *py, int pid, const struct cm_py_stack *ps,
		     uint64_t *ips, int n, int max, bool truncated);
/* "py:QUALNAME (FILE:LINE)" of a tagged id; "[unknown]" if it is none. */
const char *cm_python_frame_name(const struct cm_python *py, uint64_t id);

/* The report's "python" object of a process, NULL when it is not Python;
 * stacks (may be NULL) give its top Python functions. */
json_object *cm_python_process_json(struct cm_python *py, uint32_t pid, struct cm_stacks *stacks);
/* Run-wide figures ("python" at the top level), NULL when none was seen. */
json_object *cm_python_summary_json(struct cm_python *py);
/* Python processes that could not be described to the walker (map full). */
uint64_t cm_python_lost(const struct cm_python *py);
/* The text of a process's "python" object (render.c). */
void cm_python_render(json_object *python, FILE *out);

/* ---- pure parts, for the unit tests ---- */
/* The line of the instruction at byte offset addr of a code object whose
 * co_linetable is tab (3.10's format for minor 10, the location table of
 * 3.11+ otherwise); firstlineno for addr < 0; -1 when the table says none. */
int cm_py_addr2line(unsigned minor, const uint8_t *tab, size_t len, int firstlineno, int addr);
/* The layout table entry of 3.minor, or NULL. */
const struct cm_py_layout *cm_py_layout_of(unsigned minor);
/* The folded-stack file name of a co_filename: its basename, with the
 * directory above for package files (__init__.py, __main__.py). */
const char *cm_py_short_file(const char *path, char *buf, size_t sz);

#endif /* CM_PYTHON_USER_H */
