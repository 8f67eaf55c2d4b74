/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Strict numbers on the command line: what a user typed, or an error. */
#ifndef CM_NUMARG_H
#define CM_NUMARG_H

#include <stdint.h>

/* A decimal integer in [min, max]: digits only, so no sign, blank, hex,
 * fraction or suffix, and no silent wrap. 0, or -1 when s is not one. */
int cm_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Seconds in [min, max], as "10", "0.5" or ".25": no exponent, hex, nan or
 * inf, which strtod would take. 0, or -1. */
int cm_parse_secs(const char *s, double min, double max, double *out);

#endif /* CM_NUMARG_H */
