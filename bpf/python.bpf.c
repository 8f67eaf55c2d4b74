// SPDX-License-Identifier: GPL-2.0
/*
 * The Python frame walker: the current thread's CPython frames, innermost
 * first, as code-object pointers and instruction positions (src/python.c
 * names them and puts them in place of the interpreter's C frames).
 *
 * The thread state comes from the thread itself, as PyGILState_GetThisThreadState
 * finds it: _PyRuntime's autoTSSkey is a pthread key, and glibc keeps the
 * values of the first 32 keys in struct pthread, which sits at the thread's
 * fs base. One not seen on the thread before must name this thread (its
 * thread_id is pthread_self(), the fs base), or the walk stops. Then the
 * frames, in a bpf_loop, each from a window that holds every field the
 * version's layout needs (read in chunks since 3.11, below).
 *
 * A global function: the verifier checks it once per calling program, not
 * once per call site, and the stack paths call it with a ring-buffer record.
 */
#include "common.bpf.h"

/*
 * A read costs some 100 ns here when the memory is hot and 250-500 ns when it
 * is not (a 2-vCPU VM; bench/NOTES.md). Since 3.11 the frames of a thread's
 * calls lie one below the other in its data stack, innermost highest: they
 * are read up to CHUNK bytes at a time, from the current one down, never
 * below a frame's own page; only a frame that is not just below the last
 * chunk (a generator's, one in an older data-stack chunk, any of 3.10's heap
 * frames) is read on its own.
 */
#define CHUNK 2048
#define WIN_MASK 0x7f

struct py_scratch {
	__u8 win[WIN_MASK + 1 + 8];	/* one frame */
	__u8 blk[CHUNK + WIN_MASK + 1 + 8];
};

/* Two per CPU: a cpu-clock sample may interrupt a walk at sys_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct py_scratch);
} py_scratch SEC(".maps");

/* a field of a window; the masks keep the verifier sure of the bounds */
#define LD(win, off, type) (*(type *)((win) + ((off) & (WIN_MASK & ~(sizeof(type) - 1)))))

struct walk {
	struct cm_py_stack *out;
	struct cm_py_proc *pp;
	struct py_scratch *sc;
	__u64 frame, seg, blk_lo, blk_len;
	__u32 n, failed;
};

/* The window of the frame at `at`: in the chunk held, in a new chunk that
 * ends with it (the first frame, or one just below the chunk held), or read
 * on its own. NULL if it cannot be read. */
static __always_inline __u8 *frame_window(struct walk *w, __u64 at)
{
	__u64 page = at & ~0xfffULL, lo, len;

	if (at >= w->blk_lo && at - w->blk_lo + CM_PY_FRAME_WIN <= w->blk_len)
		return w->sc->blk + ((at - w->blk_lo) & (CHUNK - 1));
	if (!w->blk_len || (at < w->blk_lo && w->blk_lo - at <= CHUNK)) {
		/* no lower than the frame's own page: the one below need not be
		 * mapped (the data stack's first page), and a failed read costs
		 * a page fault */
		lo = at + CM_PY_FRAME_WIN - CHUNK;
		if (lo < page)
			lo = page;
		len = at + CM_PY_FRAME_WIN - lo;
		if (len <= CHUNK && !bpf_probe_read_user(w->sc->blk, len, (void *)lo)) {
			w->blk_lo = lo;
			w->blk_len = len;
			return w->sc->blk + ((at - lo) & (CHUNK - 1));
		}
	}
	if (bpf_probe_read_user(w->sc->win, CM_PY_FRAME_WIN, (void *)at))
		return NULL;
	return w->sc->win;
}

/* One frame per call of bpf_loop: the verifier checks this body once, where
 * an unrolled or bounded loop had it walk every iteration of every path. */
static int walk_frame(__u32 i, struct walk *w)
{
	struct cm_py_proc *pp = w->pp;
	__u64 code, prev, instr;
	__u8 *win;

	if (!w->frame || w->n >= CM_PY_MAX_FRAMES)
		return 1;
	if (pp->model == CM_PY_MODEL_310) {
		if (bpf_probe_read_user(w->sc->win, CM_PY_FRAME_WIN, (void *)(w->frame + pp->fr_win))) {
			w->failed = 1;
			return 1;
		}
		win = w->sc->win;
	} else if (!(win = frame_window(w, w->frame + pp->fr_win))) {
		w->failed = 1;
		return 1;
	}
	code = LD(win, pp->fr_code - pp->fr_win, __u64);
	prev = LD(win, pp->fr_previous - pp->fr_win, __u64);
	if (pp->model == CM_PY_MODEL_310) {
		/* f_lasti: an int, the index of the last instruction */
		instr = (__u64)(__s64)LD(win, pp->fr_instr - pp->fr_win, __s32);
		w->seg |= 1ULL << (w->n & 63);
	} else {
		instr = LD(win, pp->fr_instr - pp->fr_win, __u64);
		if (pp->model == CM_PY_MODEL_311) {
			if (LD(win, pp->fr_is_entry - pp->fr_win, __u8))
				w->seg |= 1ULL << (w->n & 63);
		} else if (LD(win, pp->fr_owner - pp->fr_win, __u8) == CM_PY_OWNED_BY_CSTACK) {
			/* the shim an eval-loop call pushes: the frame before it was
			 * the first that call ran */
			if (w->n)
				w->seg |= 1ULL << ((w->n - 1) & 63);
			w->frame = prev;
			return 0;
		}
	}
	w->out->code[w->n & (CM_PY_MAX_FRAMES - 1)] = code;
	w->out->instr[w->n & (CM_PY_MAX_FRAMES - 1)] = instr;
	w->out->globals[w->n & (CM_PY_MAX_FRAMES - 1)] = (__u32)LD(win, pp->fr_globals - pp->fr_win, __u64);
	w->n++;
	w->frame = prev;
	return 0;
}

static __always_inline __u64 read_u64(__u64 addr, bool *fail)
{
	__u64 v = 0;

	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr))
		*fail = true;
	return v;
}

/* The thread state from the thread's pthread-specific value of autoTSSkey. */
static __always_inline __u64 tls_tstate(struct cm_py_stack *out, struct cm_py_proc *pp, __u64 fsbase)
{
	__u32 key = pp->tss_key;
	bool fail = false;
	__u64 tstate = 0;

	if (!key) {
		struct { __s32 initialized; __u32 key; } tss;

		if (bpf_probe_read_user(&tss, sizeof(tss), (void *)(pp->runtime + pp->rt_tsskey)) ||
		    !tss.initialized) {
			out->status = CM_PY_NOT_READY;
			__sync_fetch_and_add(&pp->not_ready, 1);
			return 0;
		}
		key = tss.key + 1;
		pp->tss_key = key;	/* set once by the runtime, never changed */
	}
	key--;
	if (key < 32) {
		tstate = read_u64(fsbase + pp->tcb_specific + key * 16 + 8, &fail);
	} else if (key < 1024) {
		/* glibc's second level: specific[key / 32][key % 32] */
		__u64 blk = read_u64(fsbase + pp->tcb_specific + 32 * 16 + (key / 32) * 8, &fail);

		if (blk)
			tstate = read_u64(blk + (key % 32) * 16 + 8, &fail);
	}
	if (!tstate) {
		out->status = CM_PY_NO_TSTATE;	/* a thread Python never ran on */
		__sync_fetch_and_add(&pp->no_tstate, 1);
	}
	return tstate;
}

__noinline int cm_py_walk(struct cm_py_stack *out, struct cm_thread *t, __u32 slot)
{
	struct walk w = {};
	struct cm_py_proc *pp;
	struct task_struct *task;
	__u64 fsbase, tstate, t0;
	__u32 pid;
	bool fail = false;
	int wake = 0;

	if (!out)
		return 0;
	out->nframes = 0;
	out->status = CM_PY_NONE;
	out->truncated = 0;
	out->seg_end = 0;
	out->tstate = 0;
	out->gil_holder = 0;
	if (!cfg_python || !t)
		return 0;
	pid = t->pid;
	pp = bpf_map_lookup_elem(&py_procs, &pid);
	if (!pp || !pp->model)
		return 0;	/* not Python, or only its GIL is known */
	out->gil_holder = t->gil_holder;
	slot &= 1;
	w.sc = bpf_map_lookup_elem(&py_scratch, &slot);
	if (!w.sc)
		return 0;
	t0 = bpf_ktime_get_ns();
	task = bpf_get_current_task_btf();
	fsbase = task->thread.fsbase;

	/* the slot is in struct pthread, whose page the thread itself keeps
	 * warm; a thread state not seen on this thread before must be its own
	 * (pthread_self() in its thread_id: the fs base), which also tells a
	 * glibc whose struct pthread is not laid out as ours */
	tstate = tls_tstate(out, pp, fsbase);
	if (!tstate)
		goto out;
	if (tstate != t->py_tstate) {
		__u64 ident = read_u64(tstate + pp->ts_thread_id, &fail);

		if (fail || ident != fsbase) {
			out->status = fail ? CM_PY_READ_FAILED : CM_PY_BAD_TSTATE;
			__sync_fetch_and_add(fail ? &pp->read_failed : &pp->bad_tstate, 1);
			goto out;
		}
		t->py_tstate = tstate;
	}
	out->tstate = tstate;
	w.frame = read_u64(tstate + pp->ts_frame, &fail);
	if (w.frame && (pp->model == CM_PY_MODEL_311 || pp->model == CM_PY_MODEL_312))
		w.frame = read_u64(w.frame + pp->cf_current_frame, &fail);	/* via the cframe */
	if (fail) {
		out->status = CM_PY_READ_FAILED;
		__sync_fetch_and_add(&pp->read_failed, 1);
		goto out;
	}
	w.out = out;
	w.pp = pp;
	/* shims take a step each: room for them past the frames */
	bpf_loop(CM_PY_MAX_FRAMES + CM_PY_MAX_FRAMES / 2, walk_frame, &w, 0);
	out->status = CM_PY_OK;
	if (w.failed) {
		out->status = CM_PY_READ_FAILED;
		__sync_fetch_and_add(&pp->read_failed, 1);
	} else if (w.frame) {
		out->truncated = 1;
		__sync_fetch_and_add(&pp->truncated, 1);
	}
	out->nframes = w.n;
	out->seg_end = w.seg;
	wake = __sync_fetch_and_add(&pp->walks, 1) < CM_PY_WAKE_FIRST;
	__sync_fetch_and_add(&pp->frames, w.n);
out:
	__sync_fetch_and_add(&pp->walk_ns, bpf_ktime_get_ns() - t0);
	return wake;
}

char LICENSE[] SEC("license") = "GPL";
