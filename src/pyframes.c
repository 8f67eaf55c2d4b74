// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Python frames by name: code objects read from the live process (cached by
 * address, their header checked again before a cached entry is reused), line
 * numbers from co_linetable, and the splice that puts the frames one
 * _PyEval_EvalFrameDefault call ran in place of that call's C frame.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cm.h"
#include "python_int.h"
#include "sym.h"

/* A cached code object is trusted this long before its header is read again
 * (a code object freed and another allocated at its address changes it;
 * imports free and make many in a burst) ... */
#define REVALIDATE_NS 100000000ull
/* ... and at once when a position does not fit it, unless just read */
#define RECHECK_NS 1000000ull
#define MAX_NAME 400		/* bytes of a qualname or file name kept */
#define MAX_LINETABLE (1u << 20)

uint64_t py_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- line tables ------------------------------------------------------------ */

/* 3.10 (PEP 626): pairs (bytecode bytes, signed line delta); -128: no line. */
static int addr2line_310(const uint8_t *t, size_t len, int line, int addr)
{
	int end = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		int start = end, ld = (int8_t)t[i + 1];

		end += t[i];
		if (ld != -128)
			line += ld;
		if (addr >= start && addr < end)
			return ld == -128 ? -1 : line;
	}
	return -1;
}

/* 3.11+ location table (PEP 657): entries of 1..8 code units; the first byte
 * has bit 7 set, a 4-bit code and length - 1; varints are 6 bits a byte, bit
 * 6 continuing. */
static unsigned varint(const uint8_t *t, size_t len, size_t *i)
{
	unsigned v = 0, shift = 0;

	while (*i < len) {
		uint8_t b = t[(*i)++];

		v |= (unsigned)(b & 63) << shift;
		shift += 6;
		if (!(b & 64) || shift > 30)
			break;
	}
	return v;
}

static int svarint(const uint8_t *t, size_t len, size_t *i)
{
	unsigned v = varint(t, len, i);

	return (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
}

static int addr2line_311(const uint8_t *t, size_t len, int line, int addr)
{
	int unit = addr / 2, at = 0;
	size_t i = 0;

	while (i < len) {
		uint8_t first = t[i++];
		int code = (first >> 3) & 15, n = (first & 7) + 1, here;

		if (!(first & 128))
			return -1;	/* not an entry's first byte: a table we misread */
		switch (code) {
		case 15:	/* no location */
			here = -1;
			break;
		case 14:	/* long form: line delta, end line, columns */
			line += svarint(t, len, &i);
			varint(t, len, &i);
			varint(t, len, &i);
			varint(t, len, &i);
			here = line;
			break;
		case 13:	/* no column */
			line += svarint(t, len, &i);
			here = line;
			break;
		case 10: case 11: case 12:	/* one line, two column bytes */
			line += code - 10;
			i += 2;
			here = line;
			break;
		default:	/* short form: same line, one column byte */
			i += 1;
			here = line;
		}
		if (unit >= at && unit < at + n)
			return here;
		at += n;
	}
	return -1;
}

int cm_py_addr2line(unsigned minor, const uint8_t *tab, size_t len, int firstlineno, int addr)
{
	if (addr < 0)
		return firstlineno;
	if (!tab)
		return -1;
	return minor == 10 ? addr2line_310(tab, len, firstlineno, addr)
			   : addr2line_311(tab, len, firstlineno, addr);
}

const char *cm_py_short_file(const char *path, char *buf, size_t sz)
{
	const char *b = strrchr(path, '/');

	if (!b) {
		snprintf(buf, sz, "%s", path);
		return buf;
	}
	if (!strcmp(b + 1, "__init__.py") || !strcmp(b + 1, "__main__.py")) {
		const char *d = b;

		while (d > path && d[-1] != '/')
			d--;
		if (d < b) {
			snprintf(buf, sz, "%s", d);
			return buf;
		}
	}
	snprintf(buf, sz, "%s", b + 1);
	return buf;
}

/* ---- reading objects from the process --------------------------------------- */

static uint64_t u64_at(const uint8_t *b, unsigned off)
{
	uint64_t v;

	memcpy(&v, b + off, 8);
	return v;
}

static int32_t i32_at(const uint8_t *b, unsigned off)
{
	int32_t v;

	memcpy(&v, b + off, 4);
	return v;
}

/* A str object as printable ASCII (other characters as '?'); NULL if it is
 * not a compact str we can read. */
static char *read_str(int pid, const struct cm_py_layout *L, uint64_t addr)
{
	uint8_t hdr[96], raw[MAX_NAME * 4];
	uint64_t len;
	uint32_t state;
	unsigned kind, n;
	char *s;

	if (!addr || L->uni_compact_size > sizeof(hdr) || !py_read(pid, addr, hdr, L->uni_compact_size))
		return NULL;
	memcpy(&len, hdr + L->uni_length, 8);
	memcpy(&state, hdr + L->uni_state, 4);
	/* state bits of 3.10-3.13: interned:2 kind:3 compact:1 ascii:1 */
	kind = (state >> 2) & 7;
	if (!((state >> 5) & 1) || (kind != 1 && kind != 2 && kind != 4) || len > (1u << 20))
		return NULL;
	n = len > MAX_NAME ? MAX_NAME : (unsigned)len;
	if (n && !py_read(pid, addr + (((state >> 6) & 1) ? L->uni_ascii_size : L->uni_compact_size),
			  raw, (size_t)n * kind))
		return NULL;
	s = malloc(n + 1);
	if (!s)
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		uint32_t c = kind == 1 ? raw[i] : kind == 2 ? ((uint16_t *)raw)[i] : ((uint32_t *)raw)[i];

		s[i] = c >= 0x20 && c < 0x7f && c != ';' ? (char)c : c == ';' ? ':' : '?';
	}
	s[n] = '\0';
	return s;
}

static uint8_t *read_bytes(int pid, const struct cm_py_layout *L, uint64_t addr, size_t *lenp)
{
	uint64_t len;
	uint8_t *b;

	*lenp = 0;
	if (!addr || !py_read(pid, addr + L->bytes_size, &len, 8) || len > MAX_LINETABLE)
		return NULL;
	b = malloc(len ? len : 1);
	if (b && len && !py_read(pid, addr + L->bytes_sval, b, len)) {
		free(b);
		return NULL;
	}
	*lenp = len;
	return b;
}

#define CODE_HDR 256

/* The header words that change when another code object takes the address. */
static void fingerprint(const struct py_proc *pp, const uint8_t *h, uint64_t *fp)
{
	const struct cm_py_layout *L = &pp->mod->lay;

	fp[0] = u64_at(h, 8);	/* ob_type */
	fp[1] = u64_at(h, L->co_filename);
	fp[2] = u64_at(h, L->co_name);
	fp[3] = pp->mod->minor >= 11 ? u64_at(h, L->co_qualname) : 0;
	fp[4] = u64_at(h, L->co_linetable);
	fp[5] = (uint64_t)(uint32_t)i32_at(h, L->co_firstlineno);
}

static void code_clear(struct py_code *c)
{
	free(c->qual);
	free(c->file);
	free(c->lt);
	c->qual = c->file = NULL;
	c->lt = NULL;
	c->ltlen = 0;
	c->ok = false;
}

static void code_fill(struct cm_python *py, struct py_proc *pp, struct py_code *c, const uint8_t *h)
{
	const struct cm_py_layout *L = &pp->mod->lay;

	code_clear(c);
	fingerprint(pp, h, c->fp);
	c->checked_ns = py_now_ns();
	if (pp->code_type && c->fp[0] != pp->code_type) {
		py->code_not_code++;	/* not a code object (or no longer one) */
		return;
	}
	c->firstlineno = i32_at(h, L->co_firstlineno);
	c->firsttraceable = pp->mod->minor >= 11 ? i32_at(h, L->co_firsttraceable) : 0;
	c->qual = read_str(pp->pid, L, pp->mod->minor >= 11 ? c->fp[3] : c->fp[2]);
	c->file = read_str(pp->pid, L, c->fp[1]);
	c->lt = read_bytes(pp->pid, L, c->fp[4], &c->ltlen);
	/* 3.11+: a variable-size object of code units; 3.10: co_code's bytes */
	if (pp->mod->minor >= 11) {
		c->code_bytes = u64_at(h, 16) * 2;
	} else {
		uint64_t co_code = u64_at(h, L->co_code), n = 0;

		if (co_code && py_read(pp->pid, co_code + L->bytes_size, &n, 8))
			c->code_bytes = n;
	}
	c->ok = c->qual && c->file;
	if (!c->ok)
		py->code_read_failed++;
}

/* The code object at addr, as cached or read now; globals: the low 32 bits
 * of the f_globals the walked frame ran with (0: unknown). A cached entry
 * older than REVALIDATE_NS, or last seen with other globals, has its header
 * read again, and is read anew if that changed: a code object freed and
 * another made at its address (a module's body, once imported, and then a
 * function of the program's) is seldom run with the same globals, and would
 * otherwise keep the first one's name until the entry grew old. */
static struct py_code *code_get(struct cm_python *py, struct py_proc *pp, uint64_t addr, uint32_t globals)
{
	unsigned h = (unsigned)(((addr >> 4) ^ (uint64_t)pp->pid * 0x9e3779b97f4a7c15ull) % PY_CODE_BUCKETS);
	uint8_t hdr[CODE_HDR];
	struct py_code *c;

	for (c = py->codes[h]; c; c = c->next) {
		if (c->pid != pp->pid || c->addr != addr)
			continue;
		bool moved = globals && c->globals && c->globals != globals;

		if (moved || py_now_ns() - c->checked_ns > REVALIDATE_NS) {
			uint64_t fp[6];

			/* gone (the process exited): what was read while it lived stands */
			if (py_read(pp->pid, addr, hdr, sizeof(hdr))) {
				fingerprint(pp, hdr, fp);
				py->code_revalidated++;
				if (memcmp(fp, c->fp, sizeof(fp))) {
					py->code_replaced++;
					code_fill(py, pp, c, hdr);
				}
				c->checked_ns = py_now_ns();
			}
		}
		if (globals)
			c->globals = globals;
		return c;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->pid = pp->pid;
	c->addr = addr;
	py->code_reads++;
	if (py_read(pp->pid, addr, hdr, sizeof(hdr)))
		code_fill(py, pp, c, hdr);
	else
		py->code_read_failed++;
	c->checked_ns = py_now_ns();
	c->globals = globals;
	c->next = py->codes[h];
	py->codes[h] = c;
	return c;
}

void py_codes_free(struct cm_python *py)
{
	for (unsigned i = 0; i < PY_CODE_BUCKETS; i++)
		while (py->codes[i]) {
			struct py_code *c = py->codes[i];

			py->codes[i] = c->next;
			code_clear(c);
			free(c);
		}
}

/* ---- interned names ------------------------------------------------------------ */

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static bool name_grow(struct cm_python *py)
{
	size_t ncap = py->name_cap ? py->name_cap * 2 : 1024;
	uint32_t *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return false;
	for (size_t i = 0; i < py->name_cap; i++) {
		size_t j;

		if (!py->name_tab[i])
			continue;
		for (j = str_hash(py->names[py->name_tab[i] - 1]) & (ncap - 1); nt[j]; j = (j + 1) & (ncap - 1))
			;
		nt[j] = py->name_tab[i];
	}
	free(py->name_tab);
	py->name_tab = nt;
	py->name_cap = ncap;
	return true;
}

/* The id of a frame name, added if new; (uint64_t)-1 when out of memory. */
static uint64_t intern(struct cm_python *py, const char *s)
{
	size_t j;

	if ((py->nnames + 1) * 2 > py->name_cap && !name_grow(py))
		return UINT64_MAX;
	for (j = str_hash(s) & (py->name_cap - 1); py->name_tab[j]; j = (j + 1) & (py->name_cap - 1))
		if (!strcmp(py->names[py->name_tab[j] - 1], s))
			return py->name_tab[j] - 1;
	if (py->nnames == py->capnames) {
		size_t nc = py->capnames ? py->capnames * 2 : 1024;
		char **nn = realloc(py->names, nc * sizeof(*nn));

		if (!nn)
			return UINT64_MAX;
		py->names = nn;
		py->capnames = nc;
	}
	py->names[py->nnames] = strdup(s);
	if (!py->names[py->nnames])
		return UINT64_MAX;
	py->name_tab[j] = (uint32_t)++py->nnames;
	return py->nnames - 1;
}

void py_names_free(struct cm_python *py)
{
	for (size_t i = 0; i < py->nnames; i++)
		free(py->names[i]);
	free(py->names);
	free(py->name_tab);
}

const char *cm_python_frame_name(const struct cm_python *py, uint64_t id)
{
	uint64_t i = id & ~CM_PY_FRAME_TAG;

	return py && cm_python_is_frame(id) && i < py->nnames ? py->names[i] : "[unknown]";
}

/* The tagged id naming frame k of ps. */
static uint64_t frame_id(struct cm_python *py, struct py_proc *pp, const struct cm_py_stack *ps, int k)
{
	const struct cm_py_layout *L = &pp->mod->lay;
	struct py_code *c = ps->code[k] ? code_get(py, pp, ps->code[k], ps->globals[k]) : NULL;
	char name[2 * MAX_NAME + 64], file[MAX_NAME + 1];
	int addr, line;
	uint64_t id;

	/* not a readable code object when last read: maybe one now */
	if (c && !c->ok && py_now_ns() - c->checked_ns > RECHECK_NS) {
		uint8_t hdr[CODE_HDR];

		if (py_read(pp->pid, c->addr, hdr, sizeof(hdr)))
			code_fill(py, pp, c, hdr);
	}
	if (!c || !c->ok) {
		pp->frames_unknown++;
		id = intern(py, "[unknown]");
		return id == UINT64_MAX ? 0 : id | CM_PY_FRAME_TAG;
	}
	if (pp->mod->minor == 10) {
		int64_t lasti = (int64_t)ps->instr[k];

		addr = lasti < 0 || lasti > (1 << 28) ? -1 : (int)lasti * 2;
	} else {
		int64_t units = ((int64_t)ps->instr[k] - (int64_t)(ps->code[k] + L->co_code_adaptive)) / 2;

		addr = units < 0 || units > (1 << 28) ? -1 : (int)units * 2;
	}
	/* a position past the code is another code object's: the one cached
	 * was freed and this one made at its address since (read it now), or
	 * this one was (e.g. a module's body, once imported): not nameable */
	if (c->code_bytes && addr >= 0 && (uint64_t)addr >= c->code_bytes &&
	    py_now_ns() - c->checked_ns > RECHECK_NS) {
		uint8_t hdr[CODE_HDR];

		if (py_read(pp->pid, c->addr, hdr, sizeof(hdr))) {
			py->code_replaced++;
			code_fill(py, pp, c, hdr);
			if (!c->ok)
				goto unknown;
		}
	}
	if (c->code_bytes && addr >= 0 && (uint64_t)addr >= c->code_bytes) {
unknown:
		py->code_gone++;
		pp->frames_unknown++;
		id = intern(py, "[unknown]");
		return id == UINT64_MAX ? 0 : id | CM_PY_FRAME_TAG;
	}
	line = cm_py_addr2line(pp->mod->minor, c->lt, c->ltlen, c->firstlineno, addr);
	cm_py_short_file(c->file, file, sizeof(file));
	if (line >= 0)
		snprintf(name, sizeof(name), "py:%s (%s:%d)", c->qual, file, line);
	else
		snprintf(name, sizeof(name), "py:%s (%s:?)", c->qual, file);
	pp->frames_named++;
	id = intern(py, name);
	return id == UINT64_MAX ? 0 : id | CM_PY_FRAME_TAG;
}

/* ---- the splice ------------------------------------------------------------------- */

static bool in_interp(const struct py_proc *pp, uint64_t ip)
{
	for (int i = 0; i < pp->ntext; i++)
		if (ip >= pp->text[i].lo && ip < pp->text[i].hi)
			return true;
	return false;
}

/* A perf trampoline of -X perf, named "py::QUALNAME:FILE" from the
 * process's perf map: the Python frame it starts says the same. */
static bool is_trampoline(struct cm_python *py, const struct py_proc *pp, uint64_t ip)
{
	char buf[16];

	return py->sym && !in_interp(pp, ip) &&
	       !strncmp(cm_sym_user_frame(py->sym, pp->pid, ip, true, buf, sizeof(buf)), "py::", 4);
}

#define MAX_SEGS CM_PY_MAX_FRAMES

/*
 * ips: native user frames, innermost first. The Python frames come in
 * segments, each run by one _PyEval_EvalFrameDefault call (seg_end marks the
 * outermost frame of each). Segments and eval frames are paired from the
 * thread's entry inwards when the native unwind reached it, else from the
 * innermost outwards (the unwind lost the outer frames, the walk did not).
 * Each paired eval frame becomes its segment's frames; the interpreter's own
 * frames between two paired ones are call machinery and go; native frames
 * of anything else (C extensions, libraries) stay where they are.
 */
int cm_python_splice(struct cm_python *py, int pid, const struct cm_py_stack *ps,
		     uint64_t *ips, int n, int max, bool truncated)
{
	struct py_proc *pp = py ? py_proc_get(py, pid, false) : NULL;
	int seg_lo[MAX_SEGS], seg_hi[MAX_SEGS], nseg = 0, ev[MAX_SEGS * 2], nev = 0;
	int match_seg[CM_STACK_DEPTH], first = -1, np, k, o = 0;
	uint64_t pyids[CM_PY_MAX_FRAMES], out[CM_STACK_DEPTH + CM_PY_MAX_FRAMES];
	bool seg_used[MAX_SEGS] = { false };

	if (!pp || !pp->mod || !ps || ps->status != CM_PY_OK || !ps->nframes || n > CM_STACK_DEPTH)
		return n;
	np = ps->nframes > CM_PY_MAX_FRAMES ? CM_PY_MAX_FRAMES : (int)ps->nframes;
	pp->py_stacks++;
	for (k = 0; k < np; k++)
		pyids[k] = frame_id(py, pp, ps, k);
	/* segments, innermost first; a last one without its end marked (the
	 * walk was cut short) still counts */
	for (k = 0; k < np; k++) {
		if (!nseg || seg_hi[nseg - 1] >= 0) {
			seg_lo[nseg] = k;
			seg_hi[nseg++] = -1;
		}
		if ((ps->seg_end >> k) & 1)
			seg_hi[nseg - 1] = k;
	}
	if (seg_hi[nseg - 1] < 0)
		seg_hi[nseg - 1] = np - 1;
	for (int j = 0; j < n; j++) {
		uint64_t at = j ? ips[j] - 1 : ips[j];

		match_seg[j] = -1;
		if (at >= pp->eval_lo && at < pp->eval_hi && nev < (int)(sizeof(ev) / sizeof(ev[0])))
			ev[nev++] = j;
	}
	for (int i = 0; i < nev && i < nseg; i++) {
		int e = truncated ? ev[i] : ev[nev - 1 - i], s = truncated ? i : nseg - 1 - i;

		match_seg[e] = s;
		seg_used[s] = true;
	}
	for (int j = 0; j < n && first < 0; j++)
		if (match_seg[j] >= 0)
			first = j;
	if (nev != nseg)
		pp->unmatched++;
#define PUT(v) do { if (o < max && o < (int)(sizeof(out) / sizeof(out[0]))) out[o++] = (v); } while (0)
	for (int j = 0; j < n; j++) {
		int s = match_seg[j];

		if (s >= 0) {
			/* inner segments the native stack has no eval frame for go
			 * just inside the innermost paired one */
			if (j == first)
				for (int u = 0; u < s; u++)
					if (!seg_used[u]) {
						for (k = seg_lo[u]; k <= seg_hi[u]; k++)
							PUT(pyids[k]);
						seg_used[u] = true;
					}
			for (k = seg_lo[s]; k <= seg_hi[s]; k++)
				PUT(pyids[k]);
			continue;
		}
		/* -X perf's trampolines: their Python frame says the same */
		if (is_trampoline(py, pp, j ? ips[j] - 1 : ips[j]))
			continue;
		PUT(ips[j]);
	}
	/* outer segments beyond the native stack's reach (or no eval frame
	 * found at all): outside everything native */
	for (int u = 0; u < nseg; u++)
		if (!seg_used[u])
			for (k = seg_lo[u]; k <= seg_hi[u]; k++)
				PUT(pyids[k]);
#undef PUT
	/* the interpreter's own frames between two Python frames are its call
	 * machinery (vectorcall, import, exec): out; native frames of anything
	 * else (C extensions, libraries) stay where they are */
	int in_py = -1, out_py = -1, m = 0;

	for (int j = 0; j < o; j++)
		if (cm_python_is_frame(out[j])) {
			if (in_py < 0)
				in_py = j;
			out_py = j;
		}
	for (int j = 0; j < o; j++)
		if (cm_python_is_frame(out[j]) || j < in_py || j > out_py ||
		    !in_interp(pp, j ? out[j] - 1 : out[j]))
			ips[m++] = out[j];
	return m;
}
