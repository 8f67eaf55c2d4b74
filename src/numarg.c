// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Strict command-line numbers (numarg.h). strtoul and strtod accept far
 * more than a count or a number of seconds: leading blanks, signs ("-5"
 * wraps to 2^64-5), hex, "nan", "inf" and exponents, and they saturate
 * rather than fail; so the text is checked first, then converted. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include "numarg.h"

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int cm_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -1;
	for (const char *p = s; *p; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (!is_digit(*p) || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cm_parse_secs(const char *s, double min, double max, double *out)
{
	const char *p = s;
	int digits = 0;
	char *end;
	double d;

	if (!s)
		return -1;
	for (; is_digit(*p); p++)
		digits++;
	if (*p == '.')
		for (p++; is_digit(*p); p++)
			digits++;
	if (!digits || *p || p - s > 64)
		return -1;
	errno = 0;
	d = strtod(s, &end);
	if (errno || end != p || !isfinite(d) || d < min || d > max)
		return -1;
	*out = d;
	return 0;
}
