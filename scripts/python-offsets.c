/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Prints one entry of src/python_offsets.h: where CPython keeps what the
 * frame walker and the GIL classifier read, as offsetof() of the
 * interpreter's own (internal) headers. Built by scripts/gen-python-offsets.sh
 * against each installed version's include directory.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_code.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include "frameobject.h"
#endif

#define F(name, expr) printf("\t  ." #name " = %u,\n", (unsigned)(expr))

int main(void)
{
	printf("\t{ .minor = %d, .source = \"%s\",\n", PY_MINOR_VERSION, PY_VERSION);
	F(rt_interp_head, offsetof(_PyRuntimeState, interpreters.head));
	F(rt_interp_main, offsetof(_PyRuntimeState, interpreters.main));
#if PY_VERSION_HEX >= 0x030C0000
	F(rt_tsskey, offsetof(_PyRuntimeState, autoTSSkey));
	F(interp_gil, offsetof(PyInterpreterState, _gil));
	F(interp_ceval_gil, offsetof(PyInterpreterState, ceval.gil));
#else
	F(rt_tsskey, offsetof(_PyRuntimeState, gilstate.autoTSSkey));
	F(rt_gil, offsetof(_PyRuntimeState, ceval.gil));
#endif
#if PY_VERSION_HEX >= 0x030B0000
	F(rt_main_interp, offsetof(_PyRuntimeState, _main_interpreter));
	F(interp_tstate_head, offsetof(PyInterpreterState, threads.head));
#else
	F(interp_tstate_head, offsetof(PyInterpreterState, tstate_head));
#endif
	F(gil_size, sizeof(struct _gil_runtime_state));
	F(gil_last_holder, offsetof(struct _gil_runtime_state, last_holder));
	F(gil_locked, offsetof(struct _gil_runtime_state, locked));
	F(ts_next, offsetof(PyThreadState, next));
	F(ts_interp, offsetof(PyThreadState, interp));
	F(ts_thread_id, offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
	F(ts_native_thread_id, offsetof(PyThreadState, native_thread_id));
#endif
#if PY_VERSION_HEX >= 0x030D0000
	F(ts_frame, offsetof(PyThreadState, current_frame));
	F(fr_previous, offsetof(_PyInterpreterFrame, previous));
	F(fr_code, offsetof(_PyInterpreterFrame, f_executable));
	F(fr_globals, offsetof(_PyInterpreterFrame, f_globals));
	F(fr_instr, offsetof(_PyInterpreterFrame, instr_ptr));
	F(fr_owner, offsetof(_PyInterpreterFrame, owner));
#elif PY_VERSION_HEX >= 0x030B0000
	F(ts_cframe, offsetof(PyThreadState, cframe));
	F(cf_current_frame, offsetof(_PyCFrame, current_frame));
	F(fr_previous, offsetof(_PyInterpreterFrame, previous));
	F(fr_code, offsetof(_PyInterpreterFrame, f_code));
	F(fr_globals, offsetof(_PyInterpreterFrame, f_globals));
	F(fr_instr, offsetof(_PyInterpreterFrame, prev_instr));
	F(fr_owner, offsetof(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX < 0x030C0000
	F(fr_is_entry, offsetof(_PyInterpreterFrame, is_entry));
#endif
#else
	F(ts_frame, offsetof(PyThreadState, frame));
	F(fr_previous, offsetof(PyFrameObject, f_back));
	F(fr_code, offsetof(PyFrameObject, f_code));
	F(fr_globals, offsetof(PyFrameObject, f_globals));
	F(fr_instr, offsetof(PyFrameObject, f_lasti));
#endif
	F(co_filename, offsetof(PyCodeObject, co_filename));
	F(co_name, offsetof(PyCodeObject, co_name));
	F(co_firstlineno, offsetof(PyCodeObject, co_firstlineno));
	F(co_linetable, offsetof(PyCodeObject, co_linetable));
#if PY_VERSION_HEX < 0x030B0000
	F(co_code, offsetof(PyCodeObject, co_code));
#endif
#if PY_VERSION_HEX >= 0x030B0000
	F(co_qualname, offsetof(PyCodeObject, co_qualname));
	F(co_code_adaptive, offsetof(PyCodeObject, co_code_adaptive));
	F(co_firsttraceable, offsetof(PyCodeObject, _co_firsttraceable));
#endif
	F(uni_ascii_size, sizeof(PyASCIIObject));
	F(uni_compact_size, sizeof(PyCompactUnicodeObject));
	F(uni_state, offsetof(PyASCIIObject, state));
	F(uni_length, offsetof(PyASCIIObject, length));
	F(bytes_size, offsetof(PyVarObject, ob_size));
	F(bytes_sval, offsetof(PyBytesObject, ob_sval));
	printf("\t},\n");
	return 0;
}
