// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CPython processes: finding the interpreter (the ELF file that defines
 * _PyRuntime, exported even from a stripped binary), its version and layout,
 * the description the BPF walker and GIL classifier read (py_procs), the
 * layout's check against the live runtime. Frames by name are in pyframes.c,
 * the report's "python" objects in pyreport.c; docs/python.md has the design.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <bpf/bpf.h>
#include "cm.h"
#include "python_int.h"


/* A process is looked at again at most this often on its maps events (a
 * PyTorch import maps hundreds of libraries); a look put off is done later.
 * Its first few looks are not held back: ld.so maps libpython right after
 * exec, before the interpreter runs. */
#define PROBE_INTERVAL_NS 20000000ull
#define PROBES_AT_ONCE 8

static const struct cm_py_layout layouts[] = {
#include "python_offsets.h"
};

const struct cm_py_layout *cm_py_layout_of(unsigned minor)
{
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].minor == minor)
			return &layouts[i];
	return NULL;
}

bool py_read(int pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };

	return pid > 0 && addr && process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)len;
}

/* ---- glibc's struct pthread ----------------------------------------------------- */

struct tcb_probe {
	pthread_key_t key;
	uint32_t tid_off;
	pthread_barrier_t bar;
};

/* Where struct pthread (at pthread_self(), the fs base on x86_64) keeps a
 * key's value and the thread's tid, found in our own glibc by looking for
 * known values; a traced program using the same glibc keeps them there too
 * (the walk checks each thread state it finds against its thread). */
static void *tid_thread(void *arg)
{
	struct tcb_probe *p = arg;
	const unsigned char *tcb = (const unsigned char *)pthread_self();
	int32_t tid = (int32_t)syscall(SYS_gettid);

	for (uint32_t o = 0; o < 2048; o += 4)
		if (!memcmp(tcb + o, &tid, 4) && o == p->tid_off)
			return (void *)1;
	return NULL;
}

static void probe_tcb(struct cm_python *py)
{
	const unsigned char *tcb = (const unsigned char *)pthread_self();
	void *magic = (void *)0x5eed0c0ffee0c0deull;
	int32_t tid = (int32_t)syscall(SYS_gettid);
	struct tcb_probe p = { 0 };
	pthread_t th;
	void *ok = NULL;

	if (pthread_key_create(&p.key, NULL))
		return;
	pthread_setspecific(p.key, magic);
	for (uint32_t o = 0; o < 4096; o += 8) {
		if (!memcmp(tcb + o, &magic, 8) && p.key < 32 && o >= 8 + p.key * 16) {
			py->tcb_specific = o - 8 - p.key * 16;
			break;
		}
	}
	pthread_setspecific(p.key, NULL);
	pthread_key_delete(p.key);
	/* the tid: at the same offset in a second thread's struct pthread */
	for (uint32_t o = 0; o < 2048 && !ok; o += 4) {
		if (memcmp(tcb + o, &tid, 4))
			continue;
		p.tid_off = o;
		if (!pthread_create(&th, NULL, tid_thread, &p))
			pthread_join(th, &ok);
	}
	py->tcb_tid = ok ? p.tid_off : 0;
	py->tcb_ok = py->tcb_specific && ok;
	if (!py->tcb_ok)
		cm_info("python: glibc's thread-specific data not found: no Python frames");
}

/* ---- interpreter files ------------------------------------------------------------ */

static bool elf_read_vaddr(Elf *e, uint64_t vaddr, void *buf, size_t len)
{
	size_t n, size;
	char *raw = elf_rawfile(e, &size);

	if (!raw || elf_getphdrnum(e, &n))
		return false;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr + len <= ph.p_vaddr + ph.p_filesz &&
		    ph.p_offset + (vaddr - ph.p_vaddr) + len <= size) {
			memcpy(buf, raw + ph.p_offset + (vaddr - ph.p_vaddr), len);
			return true;
		}
	}
	return false;
}

struct wanted {
	const char *name;
	uint64_t value, size;
	bool found;
};

static void find_symbols(Elf *e, GElf_Word type, struct wanted *w, int nw)
{
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize ||
		    !(d = elf_getdata(scn, NULL)))
			continue;
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF ||
			    !(name = elf_strptr(e, sh.sh_link, s.st_name)))
				continue;
			for (int k = 0; k < nw; k++)
				if (!w[k].found && !strcmp(name, w[k].name)) {
					w[k].value = s.st_value;
					w[k].size = s.st_size;
					w[k].found = true;
				}
		}
	}
}

/* 3.13's _Py_DebugOffsets, as 64-bit words (its layout in 3.13.x). */
enum {
	DO_VERSION = 1, DO_FREE_THREADED = 2, DO_RT_INTERP_HEAD = 5, DO_IS_THREADS_HEAD = 9, DO_IS_CEVAL_GIL = 14,
	DO_IS_GIL = 15, DO_IS_GIL_HOLDER = 18, DO_TS_NEXT = 21, DO_TS_INTERP = 22, DO_TS_FRAME = 23,
	DO_TS_THREAD_ID = 24, DO_TS_NATIVE = 25, DO_FR_PREVIOUS = 29, DO_FR_EXECUTABLE = 30,
	DO_FR_INSTR = 31, DO_FR_OWNER = 33, DO_CO_FILENAME = 35, DO_CO_NAME = 36, DO_CO_QUALNAME = 37,
	DO_CO_LINETABLE = 38, DO_CO_FIRSTLINENO = 39, DO_CO_ADAPTIVE = 43, DO_BY_OB_SIZE = 65,
	DO_BY_SVAL = 66, DO_UNI_STATE = 68, DO_UNI_LENGTH = 69, DO_UNI_ASCII_SIZE = 70, DO_WORDS = 73,
};

/* The offsets 3.13 publishes override the table's (they are the process's
 * own); how many differed is said in layout_from. */
static void apply_debug_offsets(struct py_module *m, const uint64_t *d)
{
	struct cm_py_layout *L = &m->lay;
	int diff = 0;
	unsigned *const fields[] = {
		&L->rt_interp_head, &L->interp_tstate_head, &L->interp_ceval_gil, &L->interp_gil,
		&L->ts_next, &L->ts_interp, &L->ts_frame, &L->ts_thread_id, &L->ts_native_thread_id,
		&L->fr_previous, &L->fr_code, &L->fr_instr, &L->fr_owner, &L->co_filename, &L->co_name,
		&L->co_qualname, &L->co_linetable, &L->co_firstlineno, &L->co_code_adaptive,
		&L->bytes_size, &L->bytes_sval, &L->uni_state, &L->uni_length, &L->uni_ascii_size,
	};
	const int words[] = {
		DO_RT_INTERP_HEAD, DO_IS_THREADS_HEAD, DO_IS_CEVAL_GIL, DO_IS_GIL, DO_TS_NEXT,
		DO_TS_INTERP, DO_TS_FRAME, DO_TS_THREAD_ID, DO_TS_NATIVE, DO_FR_PREVIOUS,
		DO_FR_EXECUTABLE, DO_FR_INSTR, DO_FR_OWNER, DO_CO_FILENAME, DO_CO_NAME, DO_CO_QUALNAME,
		DO_CO_LINETABLE, DO_CO_FIRSTLINENO, DO_CO_ADAPTIVE, DO_BY_OB_SIZE, DO_BY_SVAL,
		DO_UNI_STATE, DO_UNI_LENGTH, DO_UNI_ASCII_SIZE,
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (d[words[i]] > 1u << 20)
			continue;	/* not an offset: keep the table's */
		diff += *fields[i] != d[words[i]];
		*fields[i] = (unsigned)d[words[i]];
	}
	/* last_holder: published relative to the interpreter */
	if (d[DO_IS_GIL_HOLDER] > d[DO_IS_GIL] && d[DO_IS_GIL_HOLDER] - d[DO_IS_GIL] < L->gil_size) {
		diff += L->gil_last_holder != d[DO_IS_GIL_HOLDER] - d[DO_IS_GIL];
		L->gil_last_holder = (unsigned)(d[DO_IS_GIL_HOLDER] - d[DO_IS_GIL]);
	}
	snprintf(m->layout_from, sizeof(m->layout_from),
		 "_Py_DebugOffsets (%d field%s differ from the %s table)", diff, diff == 1 ? "" : "s",
		 L->source);
}

/* 3.minor from a file name: python3.11, libpython3.11.so.1.0, python3.11d ... */
static unsigned minor_from_name(const char *path)
{
	const char *b = strrchr(path, '/'), *p;

	b = b ? b + 1 : path;
	p = strstr(b, "python3.");
	return p ? (unsigned)strtoul(p + 8, NULL, 10) : 0;
}

static void module_examine(struct py_module *m, int pid, uint64_t start, uint64_t end)
{
	struct wanted w[] = { { .name = "_PyRuntime" }, { .name = "_PyEval_EvalFrameDefault" }, { .name = "PyCode_Type" },
			      { .name = "Py_Version" } };
	char mf[96];
	GElf_Ehdr eh;
	uint32_t hexver = 0;
	size_t n;
	int fd = -1;
	Elf *e;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, start, end);
	fd = open(mf, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(m->why, sizeof(m->why), "cannot open %s: %s", m->path, strerror(errno));
		return;
	}
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh) || elf_getphdrnum(e, &n)) {
		snprintf(m->why, sizeof(m->why), "not an ELF file");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(e, i, &ph) && ph.p_type == PT_LOAD) {
			m->load_lo = ph.p_vaddr & ~(uint64_t)0xfff;
			break;
		}
	}
	/* exported functions and objects first: a stripped binary has only these */
	find_symbols(e, SHT_DYNSYM, w, 4);
	m->symtab = ".dynsym";
	if (!w[0].found || !w[1].found || !w[2].found) {
		find_symbols(e, SHT_SYMTAB, w, 4);
		m->symtab = ".symtab";
	}
	if (!w[0].found) {
		snprintf(m->why, sizeof(m->why), "no _PyRuntime");
		goto out;
	}
	m->runtime = w[0].value;
	m->eval = w[1].value;
	m->eval_size = w[1].size;
	m->code_type = w[2].found ? w[2].value : 0;
	m->minor = minor_from_name(m->path);
	if (w[3].found && elf_read_vaddr(e, w[3].value, &hexver, 4) && (hexver >> 24) == 3) {
		m->minor = (hexver >> 16) & 0xff;
		m->micro = (hexver >> 8) & 0xff;
		snprintf(m->version, sizeof(m->version), "3.%u.%u", m->minor, m->micro);
	} else {
		snprintf(m->version, sizeof(m->version), "3.%u", m->minor);
	}
	const struct cm_py_layout *L = cm_py_layout_of(m->minor);
	if (!L) {
		snprintf(m->why, sizeof(m->why), "CPython %s: no layout for this version (3.10 to 3.13 are known)",
			 m->version);
		goto out;
	}
	m->lay = *L;
	snprintf(m->layout_from, sizeof(m->layout_from), "table from the %s headers", L->source);
	if (m->minor >= 13) {
		uint64_t d[DO_WORDS];

		if (elf_read_vaddr(e, m->runtime, d, sizeof(d)) && !memcmp(d, "xdebugpy", 8) &&
		    ((d[DO_VERSION] >> 16) & 0xffff) == 0x0300 + m->minor) {
			if (d[DO_FREE_THREADED]) {
				snprintf(m->why, sizeof(m->why), "CPython %s built free-threaded: not supported",
					 m->version);
				goto out;
			}
			apply_debug_offsets(m, d);
		}
		else
			snprintf(m->layout_from, sizeof(m->layout_from),
				 "table from the %s headers (no _Py_DebugOffsets found)", L->source);
	}
	if (!m->eval)
		cm_info("python: %s has no _PyEval_EvalFrameDefault symbol: Python frames go outside the native ones",
			m->path);
	m->is_python = true;
out:
	if (e)
		elf_end(e);
	close(fd);
}

static struct py_module *module_get(struct cm_python *py, dev_t dev, uint64_t ino, const char *path,
				    int pid, uint64_t start, uint64_t end)
{
	struct py_module *m;

	for (m = py->mods; m; m = m->next)
		if (m->dev == dev && m->ino == ino)
			return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->dev = dev;
	m->ino = ino;
	m->path = strdup(path);
	if (!m->path) {
		free(m);
		return NULL;
	}
	module_examine(m, pid, start, end);
	if (!m->is_python && m->why[0])
		cm_debug("python: %s: %s", path, m->why);
	m->next = py->mods;
	py->mods = m;
	return m;
}

/* ---- processes ---------------------------------------------------------------------- */

struct py_proc *py_proc_get(struct cm_python *py, int pid, bool create)
{
	unsigned h = (unsigned)pid % PY_PROC_BUCKETS;
	struct py_proc *p;

	for (p = py->procs[h]; p; p = p->next)
		if (p->pid == pid)
			return p;
	if (!create || !(p = calloc(1, sizeof(*p))))
		return NULL;
	p->pid = pid;
	p->next = py->procs[h];
	py->procs[h] = p;
	return p;
}

static void read_comm(int pid, char *out, size_t sz)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	out[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, sz - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
}

static int read_ppid(int pid)
{
	char path[64], buf[512], *p;
	int ppid = 0, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p && sscanf(p + 2, "%*c %d", &ppid) != 1)
		ppid = 0;
	return ppid;
}

/* What the BPF side reads, from the module's layout placed in this process. */
static void describe(struct cm_python *py, struct py_proc *pp)
{
	const struct cm_py_layout *L = &pp->mod->lay;
	struct cm_py_proc *d = &pp->desc;
	unsigned fr_lo, fr_hi;
	uint64_t gil;

	memset(d, 0, sizeof(*d));
	d->runtime = pp->runtime;
	d->minor = pp->mod->minor;
	d->model = pp->mod->minor == 10 ? CM_PY_MODEL_310 : pp->mod->minor == 11 ? CM_PY_MODEL_311
		 : pp->mod->minor == 12 ? CM_PY_MODEL_312 : CM_PY_MODEL_313;
	gil = pp->mod->minor <= 11 ? pp->runtime + L->rt_gil : pp->runtime + L->rt_main_interp + L->interp_gil;
	d->gil_lo = gil;
	d->gil_hi = gil + L->gil_size;
	d->gil_holder = gil + L->gil_last_holder;
	d->tcb_specific = py->tcb_specific;
	d->tcb_tid = py->tcb_tid;
	d->rt_tsskey = L->rt_tsskey;
	d->ts_frame = d->model == CM_PY_MODEL_311 || d->model == CM_PY_MODEL_312 ? L->ts_cframe : L->ts_frame;
	d->cf_current_frame = L->cf_current_frame;
	d->ts_thread_id = L->ts_thread_id;
	d->ts_native_thread_id = pp->mod->minor >= 11 ? L->ts_native_thread_id : 0;
	d->fr_previous = L->fr_previous;
	d->fr_code = L->fr_code;
	d->fr_globals = L->fr_globals;
	d->fr_instr = L->fr_instr;
	d->fr_owner = L->fr_owner;
	d->fr_is_entry = L->fr_is_entry;
	fr_lo = L->fr_previous < L->fr_code ? L->fr_previous : L->fr_code;
	fr_lo = L->fr_instr < fr_lo ? L->fr_instr : fr_lo;
	fr_lo = L->fr_globals < fr_lo ? L->fr_globals : fr_lo;
	fr_hi = L->fr_previous > L->fr_code ? L->fr_previous : L->fr_code;
	fr_hi = L->fr_globals > fr_hi ? L->fr_globals : fr_hi;
	fr_hi = (L->fr_instr > fr_hi ? L->fr_instr : fr_hi) + 8;
	if (pp->mod->minor >= 11) {
		unsigned own = (L->fr_owner > L->fr_is_entry ? L->fr_owner : L->fr_is_entry) + 1;

		fr_hi = own > fr_hi ? own : fr_hi;
	}
	d->fr_win = fr_lo;
	/* a frame's window is one read: the fields must fit it; without them,
	 * or without the thread-specific data, no walks (model 0), but the GIL
	 * is still told apart */
	if (fr_hi - fr_lo > CM_PY_FRAME_WIN || !py->tcb_ok) {
		snprintf(pp->check_msg, sizeof(pp->check_msg), "%s; no Python frames",
			 !py->tcb_ok ? "glibc's thread-specific data not found"
				     : "the layout does not fit the walker's reads");
		d->model = 0;
	}
}

struct map_line {
	uint64_t start, end, pgoff, ino;
	dev_t dev;
	bool x;
};

/* Looks at the process's executable mappings for an interpreter file. */
static void probe(struct cm_python *py, struct py_proc *pp)
{
	char path[64], *line = NULL;
	size_t cap = 0, n = 0, ncap = 0;
	struct map_line *ml = NULL;
	struct py_module *mod = NULL;
	uint64_t base = 0;
	FILE *fp;

	py->probes++;
	pp->probes++;
	pp->looked_ns = py_now_ns();
	pp->deferred = false;
	snprintf(path, sizeof(path), "/proc/%d/maps", pp->pid);
	fp = fopen(path, "re");
	if (!fp)
		return;
	while (getline(&line, &cap, fp) > 0) {
		struct map_line m;
		unsigned maj, min;
		char perms[5];
		int off = 0;

		if (!strstr(line, "python"))
			continue;	/* every interpreter file has it in its name */
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n", &m.start, &m.end,
			   perms, &m.pgoff, &maj, &min, &m.ino, &off) < 7 || !off || !m.ino)
			continue;
		line[strcspn(line, "\n")] = '\0';
		m.dev = makedev(maj, min);
		m.x = perms[2] == 'x';
		if (!mod && m.x) {
			struct py_module *pm = module_get(py, m.dev, m.ino, line + off, pp->pid, m.start, m.end);

			if (pm && pm->is_python)
				mod = pm;
			else if (pm && pm->runtime)
				pp->unsupported = pm;	/* CPython, but not one we know */
		}
		if (n == ncap) {
			struct map_line *nm = realloc(ml, (ncap = ncap ? ncap * 2 : 16) * sizeof(*ml));

			if (!nm)
				break;
			ml = nm;
		}
		ml[n++] = m;
	}
	free(line);
	fclose(fp);
	/* the file's mappings: where its first byte lies, and its code */
	pp->ntext = 0;
	for (size_t i = 0; mod && i < n; i++) {
		if (ml[i].dev != mod->dev || ml[i].ino != mod->ino)
			continue;
		if (ml[i].pgoff == 0 && (!base || ml[i].start < base))
			base = ml[i].start;
		if (ml[i].x && pp->ntext < PY_TEXT_RANGES)
			pp->text[pp->ntext++] = (struct py_range){ ml[i].start, ml[i].end };
	}
	free(ml);
	if (!mod || !base) {
		/* (libpython may not be mapped yet: a later maps event looks again) */
		pp->mod = NULL;
		return;
	}
	if (pp->mod == mod && pp->bias == base - mod->load_lo && pp->in_map)
		return;
	pp->mod = mod;
	pp->bias = base - mod->load_lo;
	pp->runtime = pp->bias + mod->runtime;
	pp->eval_lo = mod->eval ? pp->bias + mod->eval : 0;
	pp->eval_hi = mod->eval ? pp->eval_lo + (mod->eval_size ? mod->eval_size : 1) : 0;
	pp->code_type = mod->code_type ? pp->bias + mod->code_type : 0;
	pp->ppid = read_ppid(pp->pid);
	read_comm(pp->pid, pp->comm, sizeof(pp->comm));
	if (pp->ppid > 0)
		read_comm(pp->ppid, pp->pcomm, sizeof(pp->pcomm));
	pp->check = 0;
	pp->check_msg[0] = '\0';
	describe(py, pp);
	struct cm_py_proc cur;
	uint32_t key = (uint32_t)pp->pid;

	/* a fork's copy of its parent's description is this one already: keep
	 * its counters */
	if (!bpf_map_lookup_elem(py->map_fd, &key, &cur) && cur.runtime == pp->desc.runtime &&
	    cur.gil_lo == pp->desc.gil_lo) {
		pp->in_map = true;
		return;
	}
	if (bpf_map_update_elem(py->map_fd, &key, &pp->desc, BPF_ANY)) {
		py->map_full++;
		cm_warn("python: cannot describe process %d to the frame walker: %s", pp->pid, strerror(errno));
		return;
	}
	pp->in_map = true;
	cm_info("python: pid %d runs CPython %s (%s)", pp->pid, mod->version, mod->path);
}

/*
 * Checks the layout against the live runtime, once it is up: the interpreter
 * list, its first thread state pointing back at it, the main interpreter
 * where the table puts it (3.11+) and the GIL where the interpreter's own
 * pointer says (3.12+; the description follows the pointer). A layout that
 * fails is taken out of py_procs: no walks of memory we misread.
 */
static void check_layout(struct cm_python *py, struct py_proc *pp)
{
	const struct cm_py_layout *L = &pp->mod->lay;
	uint64_t ptr[2], tstate = 0, back = 0, gil = 0, ident = 0;
	uint32_t key = (uint32_t)pp->pid;

	if (!py_read(pp->pid, pp->runtime + L->rt_interp_head, ptr, sizeof(ptr))) {
		if (kill(pp->pid, 0) && errno == ESRCH)
			pp->check = -2;	/* gone before its runtime was seen */
		return;
	}
	if (!ptr[1])
		return;	/* not initialized yet */
	if (pp->mod->minor >= 11 && ptr[1] != pp->runtime + L->rt_main_interp) {
		snprintf(pp->check_msg, sizeof(pp->check_msg),
			 "the main interpreter is not where the layout puts it");
		goto fail;
	}
	if (!py_read(pp->pid, ptr[1] + L->interp_tstate_head, &tstate, 8) || !tstate)
		return;
	if (!py_read(pp->pid, tstate + L->ts_interp, &back, 8) || back != ptr[1] ||
	    !py_read(pp->pid, tstate + L->ts_thread_id, &ident, 8) || !ident) {
		snprintf(pp->check_msg, sizeof(pp->check_msg),
			 "the first thread state does not point back at its interpreter");
		goto fail;
	}
	if (pp->mod->minor >= 12 && py_read(pp->pid, ptr[1] + L->interp_ceval_gil, &gil, 8) &&
	    gil && gil != pp->desc.gil_lo) {
		pp->desc.gil_lo = gil;
		pp->desc.gil_hi = gil + L->gil_size;
		pp->desc.gil_holder = gil + L->gil_last_holder;
		bpf_map_update_elem(py->map_fd, &key, &pp->desc, BPF_ANY);
		snprintf(pp->check_msg, sizeof(pp->check_msg), "GIL found through interp->ceval.gil");
	}
	pp->check = 1;
	return;
fail:
	pp->check = -1;
	bpf_map_delete_elem(py->map_fd, &key);
	pp->in_map = false;
	cm_warn("python: pid %d (CPython %s): %s; its Python frames are left out", pp->pid,
		pp->mod->version, pp->check_msg);
}

void cm_python_add_process(struct cm_python *py, int pid)
{
	struct py_proc *pp;

	if (!py || pid <= 0 || !(pp = py_proc_get(py, pid, true)))
		return;
	probe(py, pp);
	if (pp->mod && pp->in_map && !pp->check)
		check_layout(py, pp);
}

static void on_maps(struct cm_python *py, int pid)
{
	struct py_proc *pp = py_proc_get(py, pid, true);
	uint32_t key = (uint32_t)pid;
	struct cm_py_proc cur;

	if (!pp)
		return;
	/* known Python whose entry is still there: the same image, nothing to do
	 * (exec takes the entry out) */
	if (pp->mod && pp->in_map && !bpf_map_lookup_elem(py->map_fd, &key, &cur))
		return;
	pp->in_map = false;
	if (pp->probes >= PROBES_AT_ONCE && py_now_ns() - pp->looked_ns < PROBE_INTERVAL_NS) {
		pp->deferred = true;
		return;
	}
	probe(py, pp);
}

static void gil_holder_add(struct py_proc *pp, uint32_t waiter, uint32_t holder, uint64_t ns)
{
	for (size_t i = 0; i < pp->ngil; i++)
		if (pp->gil[i].waiter == waiter && pp->gil[i].holder == holder) {
			pp->gil[i].ns += ns;
			pp->gil[i].waits++;
			return;
		}
	if (pp->ngil == pp->capgil) {
		size_t nc = pp->capgil ? pp->capgil * 2 : 16;
		struct py_gil_holder *ng = realloc(pp->gil, nc * sizeof(*ng));

		if (!ng)
			return;
		pp->gil = ng;
		pp->capgil = nc;
	}
	pp->gil[pp->ngil++] = (struct py_gil_holder){ waiter, holder, ns, 1 };
}

void cm_python_event(struct cm_python *py, const void *data, size_t len)
{
	const struct cm_stack_event *e = data;
	struct py_proc *pp;

	if (!py || len < 16)
		return;
	if (e->type == CM_EV_MAPS) {
		on_maps(py, (int)e->pid);
		return;
	}
	if (len < sizeof(*e) || e->type != CM_EV_OFFCPU || e->cause != CM_CAUSE_GIL)
		return;
	if ((pp = py_proc_get(py, (int)e->pid, false)))
		gil_holder_add(pp, e->tid, e->py.gil_holder, e->weight);
}

void cm_python_poll(struct cm_python *py)
{
	if (!py)
		return;
	for (unsigned h = 0; h < PY_PROC_BUCKETS; h++)
		for (struct py_proc *pp = py->procs[h]; pp; pp = pp->next) {
			if (pp->deferred && py_now_ns() - pp->looked_ns >= PROBE_INTERVAL_NS)
				probe(py, pp);
			if (pp->mod && pp->in_map && !pp->check)
				check_layout(py, pp);
		}
}

struct cm_python *cm_python_new(int py_procs_fd, struct cm_sym *sym)
{
	struct cm_python *py = calloc(1, sizeof(*py));

	if (!py)
		return NULL;
	py->map_fd = py_procs_fd;
	py->sym = sym;
	elf_version(EV_CURRENT);
	probe_tcb(py);
	return py;
}

void cm_python_free(struct cm_python *py)
{
	if (!py)
		return;
	for (unsigned h = 0; h < PY_PROC_BUCKETS; h++)
		while (py->procs[h]) {
			struct py_proc *p = py->procs[h];

			py->procs[h] = p->next;
			free(p->gil);
			free(p);
		}
	while (py->mods) {
		struct py_module *m = py->mods;

		py->mods = m->next;
		free(m->path);
		free(m);
	}
	py_codes_free(py);
	py_names_free(py);
	free(py);
}
