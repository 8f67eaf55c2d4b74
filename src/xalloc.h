/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Allocation that cannot fail: out of memory is one line and exit 1. For the
 * offline commands (diff, experiment), where nothing is half written when it
 * happens (their outputs are committed only at the end).
 */
#ifndef CM_XALLOC_H
#define CM_XALLOC_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cm.h"

static inline void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q) {
		cm_err("out of memory");
		exit(1);
	}
	return q;
}

static inline void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p) {
		cm_err("out of memory");
		exit(1);
	}
	return p;
}

static inline char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d) {
		cm_err("out of memory");
		exit(1);
	}
	return d;
}

static inline char * __attribute__((format(printf, 1, 2))) xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		cm_err("out of memory");
		exit(1);
	}
	return s;
}

#endif /* CM_XALLOC_H */
