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

static const char *hint(int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR:
		return "does the directory exist?";
	case EACCES: case EPERM: case EROFS:
		return "choose a writable directory, or -o - for stdout";
	case ENOSPC: case EDQUOT:
		return "free some space, or write elsewhere";
	case EISDIR:
		return "give a file name, not a directory";
	default:
		return "choose another path, or -o - for stdout";
	}
}

static int tmp_name(const char *path, char *buf, size_t sz)
{
	int n = snprintf(buf, sz, "%s.tmp.%ld", path, (long)getpid());

	if (n < 0 || (size_t)n >= sz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* O_EXCL|O_NOFOLLOW: contactmap runs as root, often in /tmp, so a link
 * planted at the temp name must not redirect the write. A leftover from a
 * crashed run with the same pid is removed once. */
static int open_tmp(const char *tmp)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	int fd = open(tmp, flags, 0644);

	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
		fd = open(tmp, flags, 0644);
	return fd;
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Existing devices, pipes and symlinks (-o /dev/stdout, >(jq .), a link the
 * user made) are written in place: renaming over them would replace the node
 * or the link itself rather than feed it. */
static bool write_in_place(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

int cm_write_json(json_object *report, const char *path)
{
	const char *s = json_object_to_json_string_ext(report,
			JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s);
	char tmp[PATH_MAX];
	int fd, err;

	if (!strcmp(path, "-")) {
		if (fwrite(s, 1, len, stdout) != len || fputc('\n', stdout) == EOF ||
		    fflush(stdout) == EOF) {
			cm_err("cannot write report to stdout: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	if (write_in_place(path)) {
		fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
			goto fail;
		}
		int bad = write_all(fd, s, len) || write_all(fd, "\n", 1);
		err = errno;
		if (close(fd) && !bad) {
			bad = 1;
			err = errno;
		}
		if (!bad)
			return 0;
		goto fail;
	}
	if (tmp_name(path, tmp, sizeof(tmp)) || (fd = open_tmp(tmp)) < 0) {
		err = errno;
		goto fail;
	}
	/* fsync before rename: after a crash the path holds the old report or the
	 * new one, never a truncated file */
	if (write_all(fd, s, len) || write_all(fd, "\n", 1) || fsync(fd)) {
		err = errno;
		close(fd);
		goto fail_unlink;
	}
	if (close(fd) || rename(tmp, path)) {
		err = errno;
		goto fail_unlink;
	}
	return 0;
fail_unlink:
	unlink(tmp);
fail:
	cm_err("cannot write report to %s: %s (%s)", path, strerror(err), hint(err));
	return -1;
}

int cm_check_writable(const char *path)
{
	char tmp[PATH_MAX];
	struct stat st;
	int fd, err;

	if (!strcmp(path, "-"))
		return 0;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		err = EISDIR;
		goto fail;
	}
	if (write_in_place(path)) {
		if (access(path, W_OK) == 0)
			return 0;
		err = errno;
		goto fail;
	}
	/* the same temp file cm_write_json will create, so the check exercises
	 * exactly the permissions the final write needs */
	if (tmp_name(path, tmp, sizeof(tmp)) || (fd = open_tmp(tmp)) < 0) {
		err = errno;
		goto fail;
	}
	close(fd);
	unlink(tmp);
	return 0;
fail:
	cm_err("cannot write %s: %s (%s)", path, strerror(err), hint(err));
	return -1;
}

static char *read_fd(int fd, size_t *lenp)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);

	while (buf) {
		if (len == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				break;
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			*lenp = len;
			return buf;
		}
		len += (size_t)n;
	}
	free(buf);
	return NULL;
}

json_object *cm_read_json(const char *path)
{
	bool is_stdin = !strcmp(path, "-");
	const char *name = is_stdin ? "stdin" : path;
	json_object *obj = NULL, *schema;
	size_t len = 0;
	char *buf;
	int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		cm_err("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = read_fd(fd, &len);
	int err = errno;
	if (!is_stdin)
		close(fd);
	if (!buf) {
		cm_err("cannot read %s: %s", name, strerror(err));
		return NULL;
	}

	json_tokener *tok = json_tokener_new();
	if (tok)
		obj = json_tokener_parse_ex(tok, buf, (int)(len < INT_MAX ? len : INT_MAX));
	if (!tok || len >= INT_MAX) {
		cm_err("cannot parse %s: %s", name, tok ? "file too large" : strerror(ENOMEM));
	} else if (json_tokener_get_error(tok) != json_tokener_success) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		cm_err("%s is not JSON: %s at byte %zu", name,
		       e == json_tokener_continue ? "unexpected end of data"
						  : json_tokener_error_desc(e),
		       json_tokener_get_parse_end(tok));
	} else {
		size_t end = json_tokener_get_parse_end(tok);
		while (end < len && strchr(" \t\r\n", buf[end]))
			end++;
		if (end < len)
			cm_err("%s is not JSON: trailing data at byte %zu", name, end);
		else if (!json_object_object_get_ex(obj, "schema", &schema))
			cm_err("%s is not a contactmap report: no \"schema\" key", name);
		else if (!json_object_is_type(schema, json_type_string) ||
			 strcmp(json_object_get_string(schema), CM_SCHEMA))
			cm_err("%s has schema \"%s\", expected \"%s\" (written by another contactmap version?)",
			       name, json_object_get_string(schema), CM_SCHEMA);
		else
			goto out;
	}
	json_object_put(obj);
	obj = NULL;
out:
	if (tok)
		json_tokener_free(tok);
	free(buf);
	return obj;
}
