// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libcontactmap-prefault.so: the `prefault` knob of contactmap experiment.
 * Loaded with LD_PRELOAD into the workload, it takes the first-touch page
 * faults out of its run:
 *   - mmap() of private anonymous memory gets MAP_POPULATE, so the kernel
 *     fills the pages inside the call;
 *   - malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign and
 *     valloc of CONTACTMAP_PREFAULT_MIN bytes or more (default 64 KiB) are
 *     populated with madvise(MADV_POPULATE_WRITE) (Linux 5.14), or touched
 *     page by page where the kernel lacks it. glibc's malloc maps its large
 *     blocks with an internal mmap no preload can see, hence the second part.
 * Thread stacks (MAP_STACK), reservations (PROT_NONE, MAP_NORESERVE) and
 * file mappings are left alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define EXPORT __attribute__((visibility("default")))

/* glibc's own allocator entry points: calling them needs no dlsym, which
 * itself allocates */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static size_t min_bytes = 64 << 10;
static long page = 4096;
static int no_populate;		/* MADV_POPULATE_WRITE refused: touch instead */
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);

__attribute__((constructor)) static void init(void)
{
	const char *s = getenv("CONTACTMAP_PREFAULT_MIN");
	char *end;

	if (s && *s) {
		unsigned long long v = strtoull(s, &end, 0);

		if (!*end)
			min_bytes = v ? (size_t)v : 1;
	}
	page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
	real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
}

/* The whole pages inside [p, p+n): the block's own, never a neighbour's. */
static void populate(void *p, size_t n)
{
	uintptr_t a = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
	uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
	int saved = errno;

	if (!p || n < min_bytes || b <= a)
		return;
	if (!__atomic_load_n(&no_populate, __ATOMIC_RELAXED) &&
	    madvise((void *)a, b - a, MADV_POPULATE_WRITE) == 0) {
		errno = saved;
		return;
	}
	if (errno == EINVAL)
		__atomic_store_n(&no_populate, 1, __ATOMIC_RELAXED);
	/* write each page's first byte back to itself: a write fault, no change */
	for (uintptr_t x = a; x < b; x += page) {
		volatile char *c = (volatile char *)x;

		*c = *c;
	}
	errno = saved;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!real_mmap)
		init();
	if ((flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE) && prot != PROT_NONE &&
	    !(flags & (MAP_STACK | MAP_NORESERVE | MAP_GROWSDOWN)) && len >= min_bytes)
		flags |= MAP_POPULATE;
	return real_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *malloc(size_t n)
{
	void *p = __libc_malloc(n);

	populate(p, n);
	return p;
}

EXPORT void *calloc(size_t n, size_t sz)
{
	void *p = __libc_calloc(n, sz);

	if (p && sz && n <= SIZE_MAX / sz)
		populate(p, n * sz);
	return p;
}

EXPORT void *realloc(void *old, size_t n)
{
	void *p = __libc_realloc(old, n);

	populate(p, n);
	return p;
}

EXPORT void *memalign(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	populate(p, n);
	return p;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = __libc_memalign(align, n);
	if (!p)
		return ENOMEM;
	populate(p, n);
	*out = p;
	return 0;
}

EXPORT void *valloc(size_t n)
{
	return memalign((size_t)page, n);
}
