// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Small helpers: the clock, comm names and human-readable units. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cm.h"

uint64_t cm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void cm_sanitize_comm(const char *in, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	if (!outsz)
		return;
	/* comm is any bytes the program chose (prctl, argv[0]); escaping every
	 * non-ASCII byte keeps the result valid UTF-8 even when the kernel cut a
	 * multibyte character in half at 15 bytes */
	for (size_t i = 0; i < n && in[i]; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x20 && c < 0x7f) {
			if (o + 1 >= outsz)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outsz)
				break;	/* never emit half an escape */
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
		}
	}
	out[o] = '\0';
}

/* Three significant digits with trailing zeros dropped ("1.5", "7.8", "456");
 * moves up a unit when rounding would print 1000 (or 1024 for bytes). */
static const char *fmt_scaled(uint64_t v, double base, double limit,
			      const char *const *units, int nunits, char *buf, size_t sz)
{
	double x = (double)v;
	int u = 0, prec;

	if (x < base) {
		snprintf(buf, sz, "%llu %s", (unsigned long long)v, units[0]);
		return buf;
	}
	do {
		x /= base;
		u++;
		prec = x < 9.995 ? 2 : x < 99.95 ? 1 : 0;
	} while (u < nunits - 1 && x >= limit - 0.5);
	int len = snprintf(buf, sz, "%.*f", prec, x);
	if (prec && len > 0 && (size_t)len < sz) {
		while (buf[len - 1] == '0')
			buf[--len] = '\0';
		if (buf[len - 1] == '.')
			buf[--len] = '\0';
	}
	if (len >= 0 && (size_t)len < sz)
		snprintf(buf + len, sz - len, " %s", units[u]);
	return buf;
}

const char *cm_fmt_ns(uint64_t ns, char *buf, size_t sz)
{
	static const char *const units[] = { "ns", "us", "ms", "s" };

	return fmt_scaled(ns, 1000, 1000, units, 4, buf, sz);
}

const char *cm_fmt_bytes(uint64_t b, char *buf, size_t sz)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

	return fmt_scaled(b, 1024, 1024, units, 7, buf, sz);
}

int cm_text_cols(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

int cm_put_text(FILE *out, const char *s, int max)
{
	int n = 0;

	for (; *s; s++) {
		unsigned char c = *s;

		if ((c & 0xc0) != 0x80) {
			if (n >= max)
				break;
			n++;
		}
		fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
	}
	return n;
}

json_object *cm_json_get(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object))
		return NULL;
	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

json_object *cm_json_get_type(json_object *o, const char *key, json_type t)
{
	json_object *v = cm_json_get(o, key);

	return v && json_object_is_type(v, t) ? v : NULL;
}

const char *cm_json_str(json_object *o, const char *key)
{
	json_object *v = cm_json_get_type(o, key, json_type_string);

	return v ? json_object_get_string(v) : NULL;
}

uint64_t cm_cap_effective(void)
{
	unsigned long long eff = 0;
	char line[256];
	FILE *fp;

	if (geteuid() == 0)
		return UINT64_MAX;
	fp = fopen("/proc/self/status", "re");
	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (fp)
		fclose(fp);
	return eff;
}

bool cm_bpf_privileged(void)
{
	uint64_t eff = cm_cap_effective();

	/* CAP_SYS_ADMIN = 21, or CAP_PERFMON = 38 with CAP_BPF = 39 */
	return (eff & (1ULL << 21)) || ((eff & (1ULL << 38)) && (eff & (1ULL << 39)));
}
