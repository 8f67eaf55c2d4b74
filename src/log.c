// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Diagnostics on stderr. Each message is one line, written in one call, so
 * scripts can grep for "contactmap: error:" and lines never interleave. */
#include <stdarg.h>
#include "cm.h"

int cm_verbose;

static void vlog(const char *tag, const char *fmt, va_list ap)
{
	char msg[1024];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	for (int i = 0; i < n; i++)	/* strerror or a path may carry a newline */
		if (msg[i] == '\n' || msg[i] == '\r')
			msg[i] = ' ';
	fprintf(stderr, "contactmap: %s%s\n", tag, msg);
}

#define DEFINE_LOG(fn, tag, cond)			\
	void fn(const char *fmt, ...)			\
	{						\
		va_list ap;				\
		if (!(cond))				\
			return;				\
		va_start(ap, fmt);			\
		vlog(tag, fmt, ap);			\
		va_end(ap);				\
	}

DEFINE_LOG(cm_err, "error: ", 1)
DEFINE_LOG(cm_warn, "warning: ", 1)
DEFINE_LOG(cm_note, "", 1)
DEFINE_LOG(cm_info, "", cm_verbose >= 1)
DEFINE_LOG(cm_debug, "debug: ", cm_verbose >= 2)
