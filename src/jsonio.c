// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Reading and writing contactmap/1 reports. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cm.h"
#include "outfile.h"

int cm_write_json_out(json_object *report, struct cm_out *out)
{
	const char *s = json_object_to_json_string_ext(report,
			JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);

	if (!s) {
		cm_err("out of memory writing the report");
		cm_out_abort(out);
		return -1;
	}
	/* errors are caught when the file is committed */
	fputs(s, cm_out_fp(out));
	fputc('\n', cm_out_fp(out));
	return cm_out_commit(out);
}

int cm_write_json(json_object *report, const char *path)
{
	struct cm_out *out = cm_out_open(path, "report", "-o");

	return out ? cm_write_json_out(report, out) : -1;
}

int cm_check_writable(const char *path)
{
	struct cm_out *out = cm_out_open(path, "report", "-o");

	if (!out)
		return -1;
	cm_out_abort(out);
	return 0;
}

/* Whitespace only, as JSON allows around a value. */
static size_t skip_ws(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && strchr(" \t\r\n", s[i]) && s[i])
		i++;
	return i;
}

/*
 * Parsed as it is read, 64 KiB at a time, so memory holds the objects but not
 * the text, and capped at CM_REPORT_MAX_BYTES: a wrong path (/dev/zero, a
 * disk image) fails fast instead of growing until allocation fails.
 */
json_object *cm_read_json(const char *path)
{
	enum { CHUNK = 64 << 10 };
	bool is_stdin = !strcmp(path, "-");
	const char *name = is_stdin ? "stdin" : path;
	json_object *obj = NULL, *schema;
	json_tokener *tok = NULL;
	static char buf[CHUNK];
	uint64_t total = 0;
	struct stat st;
	int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		cm_err("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		cm_err("cannot read %s: it is a directory (give a report file)", name);
		goto out;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > CM_REPORT_MAX_BYTES) {
		cm_err("%s is %llu MiB: contactmap reads reports of up to %u MiB", name,
		       (unsigned long long)(st.st_size >> 20), CM_REPORT_MAX_BYTES >> 20);
		goto out;
	}
	tok = json_tokener_new();
	if (!tok) {
		cm_err("cannot parse %s: %s", name, strerror(ENOMEM));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		size_t used = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cm_err("cannot read %s: %s", name, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		if (total + (uint64_t)n > CM_REPORT_MAX_BYTES) {
			cm_err("%s is larger than %u MiB, the most contactmap reads as a report "
			       "(is it a report?)", name, CM_REPORT_MAX_BYTES >> 20);
			goto fail;
		}
		/* never valid JSON, and json-c would take it for the end */
		const char *nul = memchr(buf, 0, (size_t)n);
		if (nul) {
			cm_err("%s is not JSON: a NUL byte at byte %llu", name,
			       (unsigned long long)(total + (uint64_t)(nul - buf)));
			goto fail;
		}
		if (!obj) {
			obj = json_tokener_parse_ex(tok, buf, (int)n);
			enum json_tokener_error e = json_tokener_get_error(tok);

			if (e == json_tokener_continue) {
				total += (uint64_t)n;
				continue;
			}
			if (e != json_tokener_success) {
				cm_err("%s is not JSON: %s at byte %llu", name, json_tokener_error_desc(e),
				       (unsigned long long)(total + json_tokener_get_parse_end(tok)));
				goto fail;
			}
			used = json_tokener_get_parse_end(tok);
		}
		used += skip_ws(buf + used, (size_t)n - used);
		if (used < (size_t)n) {
			cm_err("%s is not JSON: trailing data at byte %llu", name,
			       (unsigned long long)(total + used));
			goto fail;
		}
		total += (uint64_t)n;
	}
	if (!obj) {
		/* a bare number at the end of the data needs the end said */
		obj = json_tokener_parse_ex(tok, "", 1);
		if (!obj || json_tokener_get_error(tok) != json_tokener_success) {
			cm_err("%s is not JSON: unexpected end of data at byte %llu", name,
			       (unsigned long long)total);
			goto fail;
		}
	}
	if (!json_object_object_get_ex(obj, "schema", &schema))
		cm_err("%s is not a contactmap report: no \"schema\" key", name);
	else if (!json_object_is_type(schema, json_type_string) ||
		 strcmp(json_object_get_string(schema), CM_SCHEMA))
		cm_err("%s has schema \"%s\", expected \"%s\" (written by another contactmap version?)",
		       name, json_object_get_string(schema), CM_SCHEMA);
	else
		goto out;
fail:
	json_object_put(obj);
	obj = NULL;
out:
	if (tok)
		json_tokener_free(tok);
	if (!is_stdin)
		close(fd);
	return obj;
}
