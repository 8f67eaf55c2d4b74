// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Symbolization: process maps snapshots, ELF files cached once per file,
 * symbol tables (with separate debug files), JIT perf maps, kallsyms.
 * Unwinding is in unwind.c. docs/stacks.md explains the design. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <elfutils/libdwelf.h>
#include "cm.h"
#include "sym_int.h"

/* libstdc++'s demangler (the one g++ itself uses); declared here so this file
 * stays C. */
extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

#define DEBUG_ROOT "/usr/lib/debug"
/* A size-less symbol (hand-written assembly) at the end of the table covers
 * at most this much; beyond it an address is named "module+0x..." instead. */
#define LAST_NOSIZE_SPAN 4096
/* An unknown address in a live process re-reads its maps at most this often. */
#define REFRESH_INTERVAL_NS 1000000000ull

uint64_t cm_sym_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Copies src into buf keeping only printable ASCII: folded stacks split on
 * ';' and lines on '\n', and a report must never carry control bytes. */
static const char *put_clean(char *buf, size_t sz, const char *src)
{
	size_t o = 0;

	if (!sz)
		return buf;
	for (; *src && o + 1 < sz; src++) {
		unsigned char c = (unsigned char)*src;
		buf[o++] = c == ';' ? ':' : (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[o] = '\0';
	return buf;
}

static const char *put_fmt(char *buf, size_t sz, const char *fmt, const char *str, uint64_t v)
{
	char tmp[PATH_MAX + 32];

	snprintf(tmp, sizeof(tmp), fmt, str, v);
	return put_clean(buf, sz, tmp);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (!p) {
		cm_err("out of memory in the symbolizer");
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		cm_err("out of memory in the symbolizer");
		abort();
	}
	return p;
}

/* ---- ELF files ------------------------------------------------------------ */

static unsigned file_hash(dev_t dev, uint64_t ino)
{
	uint64_t h = (ino ^ ((uint64_t)dev << 32)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(h >> 40) % CM_FILE_BUCKETS;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return b ? b + 1 : path;
}

static struct cm_file *file_get(struct cm_sym *s, dev_t dev, uint64_t ino, const char *path)
{
	unsigned h = file_hash(dev, ino);
	char tmp[PATH_MAX];

	for (struct cm_file *f = s->files[h]; f; f = f->next)
		if (f->dev == dev && f->ino == ino)
			return f;
	struct cm_file *f = xcalloc(1, sizeof(*f));
	f->dev = dev;
	f->ino = ino;
	f->path = xstrdup(path);
	put_clean(tmp, sizeof(tmp), base_name(path));
	f->base = xstrdup(tmp);
	f->next = s->files[h];
	s->files[h] = f;
	s->heap += sizeof(*f) + strlen(path) + strlen(tmp) + 2;
	return f;
}

/* Program headers: file offsets to link-time addresses, and the range libdw
 * needs to place the module. false if elf is not a usable ELF. */
static bool file_parse(struct cm_file *f)
{
	GElf_Ehdr eh;
	size_t phnum;

	if (elf_kind(f->elf) != ELF_K_ELF || !gelf_getehdr(f->elf, &eh) ||
	    elf_getphdrnum(f->elf, &phnum) || !phnum)
		return false;
	f->e_type = eh.e_type;
	f->segs = xcalloc(phnum, sizeof(*f->segs));
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(f->elf, i, &ph))
			continue;
		if (ph.p_type == PT_GNU_RELRO) {
			f->relro_lo = ph.p_vaddr;
			f->relro_hi = ph.p_vaddr + ph.p_memsz;
		}
		if (ph.p_type != PT_LOAD)
			continue;
		if (!f->nsegs)	/* libdw's module base: the first PT_LOAD, aligned */
			f->load_lo = ph.p_align > 1 ? ph.p_vaddr & -ph.p_align : ph.p_vaddr;
		if (ph.p_vaddr + ph.p_memsz > f->load_hi)
			f->load_hi = ph.p_vaddr + ph.p_memsz;
		f->segs[f->nsegs++] = (struct cm_seg){ ph.p_vaddr, ph.p_memsz, ph.p_offset,
						       ph.p_filesz, ph.p_flags };
	}
	return f->nsegs > 0;
}

/* Opens a mapped file once. /proc/PID/map_files/START-END is the mapped inode
 * itself, even when the path was deleted or replaced since; without it (not
 * root, process gone) the path is used only if it is still the same inode. */
static void file_open(struct cm_sym *s, struct cm_file *f, int pid, uint64_t start, uint64_t end)
{
	char mf[96];
	int fd = -1;

	if (f->opened)
		return;
	if (pid > 0) {
		snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid, start, end);
		fd = open(mf, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0 && f->path[0] == '/') {
		struct stat st;
		fd = open(f->path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && (fstat(fd, &st) || (uint64_t)st.st_ino != f->ino)) {
			cm_debug("symbols: %s is no longer the mapped file", f->path);
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0) {
		/* not marked opened: another process's snapshot may still open it */
		cm_debug("symbols: cannot open %s: %s", f->path, strerror(errno));
		return;
	}
	f->opened = true;
	f->elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (f->elf) {
		/* the whole file is mapped: the descriptor is not needed again, and a
		 * process with hundreds of libraries would otherwise hold as many */
		elf_cntl(f->elf, ELF_C_FDREAD);
		if (!file_parse(f)) {
			elf_end(f->elf);
			f->elf = NULL;
		} else {
			s->nfiles++;
		}
	}
	close(fd);
}

/* The vDSO is not a file: its image is read from the first process that maps
 * it and shared by all (one kernel, one vDSO). */
static struct cm_file *vdso_get(struct cm_sym *s, int pid, uint64_t start, uint64_t end)
{
	size_t len = end - start;
	char path[64];
	void *img;
	Elf *e;
	int fd;

	if (s->vdso)
		return s->vdso->elf ? s->vdso : NULL;
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	img = len <= (1 << 20) ? malloc(len) : NULL;
	if (!img || fd < 0 || pread(fd, img, len, (off_t)start) != (ssize_t)len ||
	    !(e = elf_memory(img, len))) {
		cm_debug("symbols: cannot read the vDSO of %d", pid);	/* next process may do */
		free(img);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	struct cm_file *f = xcalloc(1, sizeof(*f));
	f->path = xstrdup("[vdso]");
	f->base = xstrdup("[vdso]");
	f->opened = true;
	f->image = img;
	f->elf = e;
	if (!file_parse(f)) {
		elf_end(f->elf);
		f->elf = NULL;
	}
	s->heap += len;
	s->vdso = f;
	return f->elf ? f : NULL;
}

static void file_free(struct cm_file *f)
{
	if (f->demangled) {
		for (size_t i = 0; i < f->nsyms; i++)
			free(f->demangled[i]);
		free(f->demangled);
	}
	free(f->syms);
	if (f->debug)
		elf_end(f->debug);
	if (f->elf)
		elf_end(f->elf);
	free(f->image);
	free(f->segs);
	free(f->path);
	free(f->base);
	free(f);
}

/* ---- symbol tables --------------------------------------------------------- */

static Elf *open_elf_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf *e;

	if (fd < 0)
		return NULL;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e && elf_kind(e) != ELF_K_ELF) {
		elf_end(e);
		e = NULL;
	}
	if (e)
		elf_cntl(e, ELF_C_FDREAD);
	close(fd);
	return e;
}

static Elf_Scn *find_section(Elf *e, GElf_Word type, GElf_Shdr *sh)
{
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));)
		if (gelf_getshdr(scn, sh) && sh->sh_type == type && sh->sh_size)
			return scn;
	return NULL;
}

static bool same_build_id(Elf *a, Elf *b)
{
	const void *ia, *ib;
	ssize_t na = dwelf_elf_gnu_build_id(a, &ia), nb = dwelf_elf_gnu_build_id(b, &ib);

	if (na <= 0)
		return true;	/* nothing to compare: trust the debuglink name */
	return na == nb && !memcmp(ia, ib, na);
}

/* A separate debug file with a .symtab: by build-id under /usr/lib/debug,
 * else by .gnu_debuglink next to the file, in its .debug/, or under
 * /usr/lib/debug (gdb's search order). */
static Elf *find_debug_file(struct cm_file *f)
{
	char path[PATH_MAX];
	const unsigned char *id;
	ssize_t n = dwelf_elf_gnu_build_id(f->elf, (const void **)&id);
	GElf_Shdr sh;
	Elf *d;

	if (n > 1) {
		int o = snprintf(path, sizeof(path), DEBUG_ROOT "/.build-id/%02x/", id[0]);
		for (ssize_t i = 1; i < n && o < (int)sizeof(path) - 8; i++)
			o += snprintf(path + o, sizeof(path) - o, "%02x", id[i]);
		snprintf(path + o, sizeof(path) - o, ".debug");
		if ((d = open_elf_path(path))) {
			if (find_section(d, SHT_SYMTAB, &sh))
				return d;
			elf_end(d);
		}
	}
	GElf_Word crc;
	const char *link = dwelf_elf_gnu_debuglink(f->elf, &crc);
	if (!link || strchr(link, '/') || f->path[0] != '/')
		return NULL;
	const char *slash = strrchr(f->path, '/');
	int dirlen = (int)(slash - f->path);
	const char *const fmts[] = { "%.*s/%s", "%.*s/.debug/%s", DEBUG_ROOT "%.*s/%s" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), fmts[i], dirlen, f->path, link);
		if (!strcmp(path, f->path) || !(d = open_elf_path(path)))
			continue;
		if (same_build_id(f->elf, d) && find_section(d, SHT_SYMTAB, &sh))
			return d;
		elf_end(d);
	}
	return NULL;
}

struct sym_tmp {
	struct cm_usym s;
	int score;
};

static int count_underscores(const char *n)
{
	int k = 0;

	while (n[k] == '_' && k < 3)
		k++;
	return k;
}

static int cmp_sym_tmp(const void *a, const void *b)
{
	const struct sym_tmp *x = a, *y = b;

	if (x->s.addr != y->s.addr)
		return x->s.addr < y->s.addr ? -1 : 1;
	if (x->score != y->score)
		return y->score - x->score;	/* best first */
	return x->s.name < y->s.name ? -1 : x->s.name > y->s.name;
}

static void load_symbols(struct cm_sym *s, struct cm_file *f)
{
	GElf_Shdr sh, strsh;
	Elf *e = f->elf;
	Elf_Scn *scn;

	f->syms_loaded = true;
	if (!f->elf)
		return;
	scn = find_section(e, SHT_SYMTAB, &sh);
	if (!scn && (f->debug = find_debug_file(f))) {
		e = f->debug;
		scn = find_section(e, SHT_SYMTAB, &sh);
		s->ndebug++;
	}
	if (!scn) {
		e = f->elf;
		scn = find_section(e, SHT_DYNSYM, &sh);
	}
	if (!scn || !sh.sh_entsize)
		return;
	Elf_Scn *strscn = elf_getscn(e, sh.sh_link);
	Elf_Data *data = elf_getdata(scn, NULL), *strdata = strscn ? elf_getdata(strscn, NULL) : NULL;
	if (!data || !strdata || !gelf_getshdr(strscn, &strsh) || !strdata->d_size)
		return;
	f->strtab = strdata->d_buf;
	f->strtab_sz = strdata->d_size;

	size_t n = sh.sh_size / sh.sh_entsize, shnum = 0, k = 0;
	elf_getshdrnum(e, &shnum);
	struct sym_tmp *tmp = xcalloc(n, sizeof(*tmp));
	for (size_t i = 0; i < n; i++) {
		GElf_Sym sym;
		if (!gelf_getsym(data, (int)i, &sym) || sym.st_name >= f->strtab_sz)
			continue;
		int type = GELF_ST_TYPE(sym.st_info), bind = GELF_ST_BIND(sym.st_info);
		const char *name = f->strtab + sym.st_name;
		if (!name[0] || sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE)
			continue;
		if (type == STT_NOTYPE) {
			/* assembly labels: only code, and not local .L labels */
			GElf_Shdr ssh;
			Elf_Scn *ss = elf_getscn(e, sym.st_shndx);
			if (!ss || !gelf_getshdr(ss, &ssh) || !(ssh.sh_flags & SHF_EXECINSTR) ||
			    name[0] == '.' || name[0] == '$')
				continue;
		} else if (type != STT_FUNC && type != STT_GNU_IFUNC) {
			continue;
		}
		/* perf's preferences among aliases: sized, not weak, global, fewer
		 * leading underscores (read over __libc_read over __GI___libc_read) */
		tmp[k].s.addr = sym.st_value;
		tmp[k].s.size = sym.st_size > UINT32_MAX ? UINT32_MAX : (uint32_t)sym.st_size;
		tmp[k].s.name = sym.st_name;
		tmp[k].score = (sym.st_size > 0) * 1000 + (bind != STB_WEAK) * 100 +
			       (bind == STB_GLOBAL) * 10 + (3 - count_underscores(name));
		k++;
	}
	qsort(tmp, k, sizeof(*tmp), cmp_sym_tmp);
	f->syms = xcalloc(k, sizeof(*f->syms));
	for (size_t i = 0; i < k; i++)
		if (!f->nsyms || f->syms[f->nsyms - 1].addr != tmp[i].s.addr)
			f->syms[f->nsyms++] = tmp[i].s;
	free(tmp);
	s->nsymtabs++;
	s->nsyms += f->nsyms;
	s->heap += f->nsyms * sizeof(*f->syms);
}

/* Index of the symbol covering vaddr, or -1. */
static long lookup_symbol(const struct cm_file *f, uint64_t vaddr)
{
	size_t lo = 0, hi = f->nsyms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->syms[mid].addr <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -1;
	const struct cm_usym *y = &f->syms[lo - 1];
	if (y->size)
		return vaddr - y->addr < y->size ? (long)(lo - 1) : -1;
	/* a label inside a sized function names less than the function does */
	for (size_t i = lo - 1; i-- > 0 && lo - 1 - i <= 4;)
		if (f->syms[i].size && vaddr - f->syms[i].addr < f->syms[i].size)
			return (long)i;
	if (lo < f->nsyms)
		return (long)(lo - 1);	/* runs to the next symbol */
	return vaddr - y->addr < LAST_NOSIZE_SPAN ? (long)(lo - 1) : -1;
}

/* File offset to link-time address through the PT_LOAD holding that byte. */
static bool file_off_to_vaddr(const struct cm_file *f, uint64_t off, uint64_t *vaddr)
{
	for (int i = 0; i < f->nsegs; i++) {
		const struct cm_seg *g = &f->segs[i];
		if (off >= g->off && off - g->off < g->filesz) {
			*vaddr = off - g->off + g->vaddr;
			return true;
		}
	}
	return false;
}

const char *cm_sym_demangle(const char *name, char *buf, size_t sz)
{
	int status = 0;
	char *d;

	if (!name || strncmp(name, "_Z", 2))
		return NULL;
	d = __cxa_demangle(name, NULL, NULL, &status);
	if (!d || status)
		return NULL;
	put_clean(buf, sz, d);
	free(d);
	return buf;
}

static const char *symbol_name(struct cm_file *f, long i, char *buf, size_t sz)
{
	const char *raw = f->strtab + f->syms[i].name;
	const char *at = strchr(raw + 1, '@');
	char name[1024];

	/* symbol versions ("__libc_start_main@@GLIBC_2.34" in libc's .symtab) are
	 * not part of the function's name */
	if (at) {
		snprintf(name, sizeof(name), "%.*s", (int)(at - raw), raw);
		raw = name;
	}
	if (strncmp(raw, "_Z", 2))
		return put_clean(buf, sz, raw);
	/* demangling costs microseconds and a flame graph names the same frame
	 * thousands of times: keep each result */
	if (!f->demangled)
		f->demangled = xcalloc(f->nsyms, sizeof(char *));
	if (!f->demangled[i]) {
		int status = 0;
		char *d = __cxa_demangle(raw, NULL, NULL, &status);
		f->demangled[i] = d && !status ? d : xstrdup("");
		if (status)
			free(d);
	}
	return put_clean(buf, sz, f->demangled[i][0] ? f->demangled[i] : raw);
}

/* ---- processes ----------------------------------------------------------- */

struct cm_proc *cm_sym_proc(struct cm_sym *s, int pid, bool create)
{
	unsigned h = (unsigned)pid % CM_PROC_BUCKETS;

	for (struct cm_proc *p = s->procs[h]; p; p = p->next)
		if (p->pid == pid)
			return p;
	if (!create)
		return NULL;
	struct cm_proc *p = xcalloc(1, sizeof(*p));
	p->pid = pid;
	p->next = s->procs[h];
	s->procs[h] = p;
	return p;
}

const struct cm_map *cm_sym_find_map(const struct cm_proc *p, uint64_t addr)
{
	int lo = 0, hi = p->nmaps;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (p->maps[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo && addr < p->maps[lo - 1].end)
		return &p->maps[lo - 1];
	return NULL;
}

static void perfmap_free(struct cm_proc *p)
{
	for (size_t i = 0; i < p->njit; i++)
		free(p->jit[i].name);
	free(p->jit);
	p->jit = NULL;
	p->njit = 0;
}

static void proc_free(struct cm_proc *p)
{
	cm_unwind_proc_free(p);
	perfmap_free(p);
	free(p->maps);
	free(p->names);
	free(p);
}

struct raw_map {
	uint64_t start, end, pgoff, ino;
	unsigned maj, min;
	char perms[5];
	size_t name;		/* offset in names */
};

int cm_sym_add_process(struct cm_sym *s, int pid)
{
	char path[64], *line = NULL;
	size_t cap = 0, nraw = 0, rawcap = 0, nlen = 0, ncap = 0;
	struct raw_map *raw = NULL;
	char *names = NULL;
	ssize_t len;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	fp = fopen(path, "re");
	if (!fp)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((len = getline(&line, &cap, fp)) > 0) {
		struct raw_map r = { 0 };
		int off = 0;
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n",
			   &r.start, &r.end, r.perms, &r.pgoff, &r.maj, &r.min, &r.ino, &off) < 7)
			continue;
		const char *name = off ? line + off : "";
		size_t l = strlen(name);
		if (l > 10 && !strcmp(name + l - 10, " (deleted)"))
			l -= 10;
		if (nlen + l + 1 > ncap) {
			ncap = (nlen + l + 1) * 2;
			char *nn = realloc(names, ncap);
			if (!nn)
				goto oom;
			names = nn;
		}
		memcpy(names + nlen, name, l);
		names[nlen + l] = '\0';
		r.name = nlen;
		nlen += l + 1;
		if (nraw == rawcap) {
			rawcap = rawcap ? rawcap * 2 : 256;
			struct raw_map *nr = realloc(raw, rawcap * sizeof(*raw));
			if (!nr)
				goto oom;
			raw = nr;
		}
		raw[nraw++] = r;
	}
	free(line);
	fclose(fp);
	if (!nraw) {	/* a zombie: keep what we had */
		free(raw);
		free(names);
		return -ESRCH;
	}

	struct cm_proc *p = cm_sym_proc(s, pid, true);
	struct cm_map *maps = xcalloc(nraw, sizeof(*maps));
	for (size_t i = 0; i < nraw; i++) {
		struct raw_map *r = &raw[i];
		struct cm_map *m = &maps[i];
		m->start = r->start;
		m->end = r->end;
		m->pgoff = r->pgoff;
		m->prot = (r->perms[0] == 'r' ? PROT_READ : 0) | (r->perms[1] == 'w' ? PROT_WRITE : 0) |
			  (r->perms[2] == 'x' ? PROT_EXEC : 0);
		m->name = names + r->name;
		if (!strcmp(m->name, "[vdso]"))
			m->file = vdso_get(s, pid, r->start, r->end);
		else if (r->ino && (m->prot & PROT_EXEC)) {
			m->file = file_get(s, makedev(r->maj, r->min), r->ino, m->name);
			file_open(s, m->file, pid, r->start, r->end);
		}
	}
	/* the non-executable mappings of those files (read-only data, .eh_frame
	 * in its own segment) share the file, for reads during unwinding */
	for (size_t i = 0; i < nraw; i++) {
		if (maps[i].file || !raw[i].ino)
			continue;
		dev_t dev = makedev(raw[i].maj, raw[i].min);
		for (struct cm_file *f = s->files[file_hash(dev, raw[i].ino)]; f; f = f->next)
			if (f->dev == dev && f->ino == raw[i].ino) {
				maps[i].file = f->elf ? f : NULL;
				break;
			}
	}
	free(raw);
	s->heap -= p->nmaps * sizeof(*p->maps) + p->names_len;
	free(p->maps);
	free(p->names);
	p->maps = maps;
	p->nmaps = (int)nraw;
	p->names = names;
	p->names_len = nlen;
	p->refresh_ns = cm_sym_now_ns();
	p->dwfl_stale = true;
	s->heap += nraw * sizeof(*maps) + nlen;
	return 0;
oom:
	free(line);
	fclose(fp);
	free(raw);
	free(names);
	return -ENOMEM;
}

/* A process seen for the first time, or an address outside its snapshot while
 * it still runs (a library dlopen'ed since): read its maps again, at most
 * once a second, so a stream of bad addresses costs little (a re-read of a
 * PyTorch process's 1,700 mappings takes milliseconds). */
struct cm_proc *cm_sym_proc_for(struct cm_sym *s, int pid, uint64_t addr)
{
	struct cm_proc *p = cm_sym_proc(s, pid, false);

	if (!p) {
		if (pid > 0 && !cm_sym_add_process(s, pid))
			return cm_sym_proc(s, pid, false);
		/* gone before we saw it: an empty entry, so that the next addresses
		 * of this pid do not each try /proc again */
		p = cm_sym_proc(s, pid, true);
		p->refresh_ns = cm_sym_now_ns();
		return p;
	}
	if (!cm_sym_find_map(p, addr) && cm_sym_now_ns() - p->refresh_ns > REFRESH_INTERVAL_NS) {
		if (cm_sym_add_process(s, pid))
			p->refresh_ns = cm_sym_now_ns();	/* gone: don't retry at once */
	}
	return p;
}

void cm_sym_forget_process(struct cm_sym *s, int pid)
{
	unsigned h = (unsigned)pid % CM_PROC_BUCKETS;

	for (struct cm_proc **pp = &s->procs[h]; *pp; pp = &(*pp)->next) {
		if ((*pp)->pid == pid) {
			struct cm_proc *p = *pp;
			*pp = p->next;
			s->heap -= p->nmaps * sizeof(*p->maps) + p->names_len;
			proc_free(p);
			return;
		}
	}
}

/* ---- JIT: perf-PID.map ---------------------------------------------------- */

static int cmp_jit(const void *a, const void *b)
{
	const struct cm_perfmap_ent *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Where the JIT wrote its map: the process's own /tmp (its mount namespace,
 * its pid namespace's number) while it lives, else ours. */
static void perfmap_path(int pid, char *path, size_t sz)
{
	char st[64], line[256];
	long nspid = pid;
	FILE *f;

	snprintf(st, sizeof(st), "/proc/%d/status", pid);
	if ((f = fopen(st, "re"))) {
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "NSpid:", 6))
				continue;
			char *last = strrchr(line, '\t');
			if (last)
				nspid = strtol(last + 1, NULL, 10);
			break;
		}
		fclose(f);
		snprintf(path, sz, "/proc/%d/root/tmp/perf-%ld.map", pid, nspid);
		if (access(path, R_OK) == 0)
			return;
	}
	snprintf(path, sz, "/tmp/perf-%d.map", pid);
}

static void perfmap_load(struct cm_proc *p)
{
	char path[PATH_MAX], *line = NULL;
	size_t cap = 0, n = 0, ncap = 0;
	struct stat st;
	ssize_t len;
	FILE *f;

	perfmap_path(p->pid, path, sizeof(path));
	if (stat(path, &st))
		return;
	int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	if (p->jit && mt == p->jit_mtime_ns && st.st_size == p->jit_size)
		return;	/* unchanged since the last read (JITs only append) */
	if (!(f = fopen(path, "re")))
		return;
	perfmap_free(p);
	struct cm_perfmap_ent *ents = NULL;
	while ((len = getline(&line, &cap, f)) > 0) {
		char *end;
		uint64_t start = strtoull(line, &end, 16), size;
		if (end == line || *end != ' ')
			continue;
		char *szs = end + 1;
		size = strtoull(szs, &end, 16);
		if (end == szs || *end != ' ' || !size)
			continue;
		char *name = end + 1;
		name[strcspn(name, "\r\n")] = '\0';
		if (n == ncap) {
			ncap = ncap ? ncap * 2 : 64;
			struct cm_perfmap_ent *ne = realloc(ents, ncap * sizeof(*ents));
			if (!ne)
				break;
			ents = ne;
		}
		char clean[512];
		ents[n] = (struct cm_perfmap_ent){ start, start + size, n,
						   xstrdup(put_clean(clean, sizeof(clean), name)) };
		n++;
	}
	free(line);
	fclose(f);
	qsort(ents, n, sizeof(*ents), cmp_jit);
	p->jit = ents;
	p->njit = n;
	p->jit_mtime_ns = mt;
	p->jit_size = st.st_size;
}

static const char *perfmap_lookup(struct cm_proc *p, uint64_t addr)
{
	const struct cm_perfmap_ent *best = NULL;
	size_t lo = 0, hi;

	perfmap_load(p);
	hi = p->njit;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->jit[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* of the nearby entries that cover addr, the one written last: a JIT
	 * reuses the memory of code it freed */
	for (size_t i = lo; i-- > 0 && lo - i <= 64;)
		if (addr < p->jit[i].end && (!best || p->jit[i].line > best->line))
			best = &p->jit[i];
	return best ? best->name : NULL;
}

/* ---- naming ---------------------------------------------------------------- */

const char *cm_sym_user_frame(struct cm_sym *s, int pid, uint64_t ip, bool return_address,
			      char *buf, size_t sz)
{
	uint64_t at = return_address && ip ? ip - 1 : ip;
	struct cm_proc *p = cm_sym_proc_for(s, pid, at);
	const struct cm_map *m = p ? cm_sym_find_map(p, at) : NULL;
	const char *jit;

	if (!sz)
		return buf;
	if (m && m->file && m->file->elf) {
		struct cm_file *f = m->file;
		uint64_t vaddr;
		if (!f->syms_loaded)
			load_symbols(s, f);
		if (f->nsyms && file_off_to_vaddr(f, at - m->start + m->pgoff, &vaddr)) {
			long i = lookup_symbol(f, vaddr);
			if (i >= 0)
				return symbol_name(f, i, buf, sz);
		}
	}
	if (m && m->name[0] == '/')	/* a file, named or not */
		return put_fmt(buf, sz, "%s+0x%" PRIx64, m->file ? m->file->base : base_name(m->name),
			       ip - m->start + m->pgoff);
	if (m && m->file)		/* the vDSO */
		return put_fmt(buf, sz, "%s+0x%" PRIx64, m->file->base, ip - m->start);
	if (p && (!m || !m->name[0] || m->name[0] == '[') && (jit = perfmap_lookup(p, at)))
		return put_clean(buf, sz, jit);
	return put_clean(buf, sz, "[unknown]");
}

const char *cm_sym_user(struct cm_sym *s, int pid, uint64_t ip, char *buf, size_t sz)
{
	return cm_sym_user_frame(s, pid, ip, false, buf, sz);
}

/* ---- kernel ------------------------------------------------------------------ */

static int cmp_ksym(const void *a, const void *b)
{
	const struct cm_ksym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->name < y->name ? -1 : x->name > y->name;
}

static void load_kallsyms(struct cm_sym *s)
{
	size_t n = 0, cap = 0, slen = 0, scap = 0;
	char line[512];
	FILE *f;

	s->ksyms_loaded = true;
	if (!(f = fopen("/proc/kallsyms", "re"))) {
		cm_warn("cannot read /proc/kallsyms (%s): kernel frames print as [unknown]",
			strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *end, *name;
		uint64_t addr = strtoull(line, &end, 16);
		if (end == line || end[0] != ' ' || !end[1] || end[2] != ' ')
			continue;
		char t = end[1];
		/* text only: data symbols would split functions into false ranges */
		if (!addr || (t != 't' && t != 'T' && t != 'w' && t != 'W'))
			continue;
		name = end + 3;
		name[strcspn(name, "\t \n")] = '\0';
		size_t l = strlen(name);
		if (!l)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			struct cm_ksym *nk = realloc(s->ksyms, cap * sizeof(*nk));
			if (!nk)
				break;
			s->ksyms = nk;
		}
		if (slen + l + 1 > scap) {
			scap = scap ? scap * 2 : 1 << 20;
			char *ns = realloc(s->kstr, scap);
			if (!ns)
				break;
			s->kstr = ns;
		}
		memcpy(s->kstr + slen, name, l + 1);
		s->ksyms[n++] = (struct cm_ksym){ addr, (uint32_t)slen };
		slen += l + 1;
	}
	fclose(f);
	if (!n)
		cm_warn("/proc/kallsyms shows no addresses (kernel.kptr_restrict, or not root): "
			"kernel frames print as [unknown]");
	qsort(s->ksyms, n, sizeof(*s->ksyms), cmp_ksym);
	s->nksyms = n;
	s->heap += cap * sizeof(*s->ksyms) + scap;
}

const char *cm_sym_kernel(struct cm_sym *s, uint64_t ip, char *buf, size_t sz)
{
	size_t lo = 0, hi;

	if (!s->ksyms_loaded)
		load_kallsyms(s);
	hi = s->nksyms;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->ksyms[mid].addr <= ip)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* kallsyms has no sizes: a function runs to the next symbol; past the last
	 * one only a little (the end of the module or BPF program is unknown) */
	if (!lo || (lo == s->nksyms && ip - s->ksyms[lo - 1].addr >= LAST_NOSIZE_SPAN))
		return put_clean(buf, sz, "[unknown]");
	/* several names at one address are sorted by name offset, i.e. file order */
	size_t i = lo - 1;
	while (i > 0 && s->ksyms[i - 1].addr == s->ksyms[i].addr)
		i--;
	return put_clean(buf, sz, s->kstr + s->ksyms[i].name);
}

/* ---- lifetime -------------------------------------------------------------- */

struct cm_sym *cm_sym_new(void)
{
	struct cm_sym *s = xcalloc(1, sizeof(*s));
	/* just an ELF header: dwfl_attach_state learns the architecture from it,
	 * whichever modules a process has (even none) */
	Elf64_Ehdr *h = (Elf64_Ehdr *)s->arch_hdr;

	elf_version(EV_CURRENT);
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_ident[EI_VERSION] = EV_CURRENT;
	h->e_type = ET_EXEC;
#if defined(__x86_64__)
	h->e_machine = EM_X86_64;
#elif defined(__aarch64__)
	h->e_machine = EM_AARCH64;
#endif
	h->e_version = EV_CURRENT;
	h->e_ehsize = sizeof(*h);
	_Static_assert(sizeof(s->arch_hdr) == sizeof(Elf64_Ehdr), "arch_hdr holds an Elf64_Ehdr");
	s->arch_elf = elf_memory((char *)s->arch_hdr, sizeof(s->arch_hdr));
	return s;
}

void cm_sym_free(struct cm_sym *s)
{
	if (!s)
		return;
	for (int i = 0; i < CM_PROC_BUCKETS; i++)
		while (s->procs[i]) {
			struct cm_proc *p = s->procs[i];
			s->procs[i] = p->next;
			proc_free(p);
		}
	/* files after processes: each Dwfl held references to their Elf */
	for (int i = 0; i < CM_FILE_BUCKETS; i++)
		while (s->files[i]) {
			struct cm_file *f = s->files[i];
			s->files[i] = f->next;
			file_free(f);
		}
	if (s->vdso)
		file_free(s->vdso);
	if (s->arch_elf)
		elf_end(s->arch_elf);
	free(s->ksyms);
	free(s->kstr);
	free(s);
}

void cm_sym_get_stats(const struct cm_sym *s, struct cm_sym_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < CM_PROC_BUCKETS; i++)
		for (struct cm_proc *p = s->procs[i]; p; p = p->next)
			st->processes++;
	st->files = s->nfiles;
	st->symtabs = s->nsymtabs;
	st->debug_files = s->ndebug;
	st->symbols = s->nsyms;
	st->kernel_symbols = s->nksyms;
	st->heap_bytes = s->heap;
	st->unwinds = s->unwinds;
	st->unwind_ns = s->unwind_ns;
}
