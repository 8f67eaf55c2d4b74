// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The record of original values that makes system-wide knobs safe to turn.
 *
 * Before an experiment changes any file it writes
 * /run/contactmap/experiment-PID-NS.state (or under /var/lib/contactmap where
 * there is no /run): every file it will write, with the value read before,
 * synced to disk together with its directory. The experiment holds an
 * exclusive flock on it while it lives, so a lock that can be taken means
 * its owner is gone (SIGKILL, a crash, a power cut is moot: /run is a
 * tmpfs and sysctls reset at boot); `contactmap experiment --restore` then
 * writes those values back and removes the file.
 *
 * The directory is root's, mode 0700, opened without following links, and
 * state files are created O_EXCL|O_NOFOLLOW in it: no other user can plant
 * or edit one. Restoring still writes only the files knobs write
 * (cm_knob_path_allowed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include "cm.h"
#include "knobs.h"

#define STATE_SCHEMA "contactmap-experiment-state/1"
#define STATE_MAX_BYTES (1 << 20)

static const char *const state_dirs[] = { "/run/contactmap", "/var/lib/contactmap" };

struct cm_knob_state {
	int dirfd, fd;
	char dir[64], name[96], path[192];
	struct entry { char *path, *original, *knob; } *e;
	int n;
};

const char *cm_state_path(const struct cm_knob_state *st)
{
	return st ? st->path : "";
}

/* The state directory, created if missing; -1 (message printed) when it is
 * not a directory only root (or this user) can write. */
static int open_state_dir(const char *dir, bool create)
{
	struct stat st;
	int fd;

	if (create && mkdir(dir, 0700) && errno != EEXIST) {
		cm_err("cannot create the state directory %s: %s", dir, strerror(errno));
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (!create && errno == ENOENT)
			return -2;
		if (errno == EACCES && geteuid() != 0)
			cm_err("the state directory %s is root's: run it with sudo", dir);
		else
			cm_err("cannot open the state directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022)) {
		cm_err("the state directory %s must belong to root and be writable by it alone "
		       "(it is uid %d, mode %o): remove it", dir, (int)st.st_uid, st.st_mode & 07777);
		close(fd);
		return -1;
	}
	return fd;
}

/* The first state directory whose parent exists (/run, else /var/lib). */
static const char *state_dir(void)
{
	for (size_t i = 0; i < sizeof(state_dirs) / sizeof(*state_dirs); i++) {
		char parent[64];

		snprintf(parent, sizeof(parent), "%s", state_dirs[i]);
		*strrchr(parent, '/') = '\0';
		if (!access(parent, W_OK))
			return state_dirs[i];
	}
	return state_dirs[0];
}

static bool is_state_name(const char *n)
{
	size_t len = strlen(n);

	return !strncmp(n, "experiment-", 11) && len > 17 && !strcmp(n + len - 6, ".state");
}

/* Reads a state file (fd) into entries. -1 when it is not one (message printed). */
static int read_state(int fd, const char *path, struct entry **out, int *nout, long *pid)
{
	struct stat st;
	char *buf;
	ssize_t n;
	json_object *j, *files;
	int rc = -1;

	*out = NULL;
	*nout = 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    st.st_size > STATE_MAX_BYTES) {
		cm_err("%s is not a state file of this user (owner, type or size): left alone", path);
		return -1;
	}
	buf = calloc(1, (size_t)st.st_size + 1);
	if (!buf)
		return -1;
	n = pread(fd, buf, (size_t)st.st_size, 0);
	j = n == st.st_size ? json_tokener_parse(buf) : NULL;
	free(buf);
	files = cm_json_get_type(j, "files", json_type_array);
	if (!j || !files || !cm_json_str(j, "schema") || strcmp(cm_json_str(j, "schema"), STATE_SCHEMA)) {
		cm_err("%s is not a readable %s file: left alone", path, STATE_SCHEMA);
		goto out;
	}
	*pid = json_object_get_int64(cm_json_get(j, "pid"));
	*out = calloc(json_object_array_length(files) + 1, sizeof(**out));
	if (!*out)
		goto out;
	for (size_t i = 0; i < json_object_array_length(files); i++) {
		json_object *f = json_object_array_get_idx(files, i);
		const char *p = cm_json_str(f, "path"), *o = cm_json_str(f, "original"),
			   *k = cm_json_str(f, "knob");

		if (!p || !o || !cm_knob_path_allowed(p) || strpbrk(o, "\n\r") || strlen(o) > 4096) {
			cm_err("%s: entry %zu is not a file a knob writes, with its value: left alone",
			       path, i);
			goto out;
		}
		(*out)[*nout].path = strdup(p);
		(*out)[*nout].original = strdup(o);
		(*out)[(*nout)++].knob = strdup(k ? k : "?");
	}
	rc = 0;
out:
	json_object_put(j);
	return rc;
}

static void free_entries(struct entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		free(e[i].path);
		free(e[i].original);
		free(e[i].knob);
	}
	free(e);
}

static bool wants(const struct cm_knob_state *st, const char *path)
{
	for (int i = 0; i < st->n; i++)
		if (!strcmp(st->e[i].path, path))
			return true;
	return false;
}

/* Other state files: a live experiment on the same files, or a killed one
 * that left them changed, stops this one (the values read now would not be
 * the originals). */
static int check_others(struct cm_knob_state *st)
{
	DIR *d = fdopendir(dup(st->dirfd));
	struct dirent *de;
	int rc = 0;

	if (!d)
		return 0;
	while (!rc && (de = readdir(d))) {
		struct entry *e;
		int n, fd;
		long pid = 0;
		bool alive;

		if (!is_state_name(de->d_name))
			continue;
		fd = openat(st->dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		alive = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
		if (read_state(fd, de->d_name, &e, &n, &pid)) {
			close(fd);
			continue;
		}
		for (int i = 0; i < n && !rc; i++) {
			if (!wants(st, e[i].path))
				continue;
			if (alive)
				cm_err("experiment pid %ld is changing %s too: wait for it to finish", pid,
				       e[i].path);
			else
				cm_err("a killed experiment (pid %ld) left %s changed (state file %s/%s): "
				       "run `contactmap experiment --restore` first", pid, e[i].path, st->dir,
				       de->d_name);
			rc = -1;
		}
		if (!rc && !alive)
			cm_warn("a killed experiment (pid %ld) left knobs changed (%s/%s): "
				"`contactmap experiment --restore` puts them back", pid, st->dir, de->d_name);
		free_entries(e, n);
		close(fd);
	}
	closedir(d);
	return rc;
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

int cm_state_create(struct cm_knob **knobs, int n, const char *command, struct cm_knob_state **out)
{
	struct cm_knob_state *st;
	json_object *j, *files;
	struct timespec ts;
	const char *s;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	st->fd = st->dirfd = -1;
	for (int i = 0; i < n; i++) {
		for (int f = 0; knobs[i]->system && f < knobs[i]->nfiles; f++) {
			struct cm_knob_file *kf = &knobs[i]->files[f];
			struct entry *e;

			if (wants(st, kf->path))
				continue;	/* two variants of one knob: one original */
			e = realloc(st->e, (st->n + 1) * sizeof(*e));
			if (!e)
				goto fail;
			st->e = e;
			e[st->n++] = (struct entry){ .path = strdup(kf->path), .original = strdup(kf->original),
						     .knob = strdup(knobs[i]->spec) };
		}
	}
	if (!st->n) {
		free(st);
		return 0;
	}
	snprintf(st->dir, sizeof(st->dir), "%s", state_dir());
	st->dirfd = open_state_dir(st->dir, true);
	if (st->dirfd < 0)
		goto fail;
	/* one experiment at a time looks and creates, so two never miss each other */
	if (flock(st->dirfd, LOCK_EX)) {
		cm_err("cannot lock %s: %s", st->dir, strerror(errno));
		goto fail;
	}
	if (check_others(st))
		goto fail;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(st->name, sizeof(st->name), "experiment-%d-%lld%09ld.state", (int)getpid(),
		 (long long)ts.tv_sec, ts.tv_nsec);
	snprintf(st->path, sizeof(st->path), "%s/%s", st->dir, st->name);
	st->fd = openat(st->dirfd, st->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (st->fd < 0 || flock(st->fd, LOCK_EX)) {
		cm_err("cannot create the state file %s: %s", st->path, strerror(errno));
		goto fail;
	}
	j = json_object_new_object();
	files = json_object_new_array();
	json_object_object_add(j, "schema", json_object_new_string(STATE_SCHEMA));
	json_object_object_add(j, "pid", json_object_new_int(getpid()));
	json_object_object_add(j, "started_unix", json_object_new_int64(ts.tv_sec));
	json_object_object_add(j, "command", json_object_new_string(command));
	for (int i = 0; i < st->n; i++) {
		json_object *f = json_object_new_object();

		json_object_object_add(f, "knob", json_object_new_string(st->e[i].knob));
		json_object_object_add(f, "path", json_object_new_string(st->e[i].path));
		json_object_object_add(f, "original", json_object_new_string(st->e[i].original));
		json_object_array_add(files, f);
	}
	json_object_object_add(j, "files", files);
	s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	/* on disk, with its directory entry, before the first change */
	if (write_all(st->fd, s, strlen(s)) || write_all(st->fd, "\n", 1) || fsync(st->fd) ||
	    fsync(st->dirfd)) {
		cm_err("cannot write the state file %s: %s", st->path, strerror(errno));
		json_object_put(j);
		unlinkat(st->dirfd, st->name, 0);
		goto fail;
	}
	json_object_put(j);
	flock(st->dirfd, LOCK_UN);
	*out = st;
	return 0;
fail:
	if (st->fd >= 0)
		close(st->fd);
	if (st->dirfd >= 0)
		close(st->dirfd);
	free_entries(st->e, st->n);
	free(st);
	return -1;
}

static int restore_entries(struct entry *e, int n, const char *path, bool say)
{
	int rc = 0;

	/* last changed, first restored */
	for (int i = n - 1; i >= 0; i--) {
		if (cm_knob_write(e[i].path, e[i].original)) {
			cm_err("could not restore %s to '%s': %s (kept in %s: run `contactmap experiment "
			       "--restore`)", e[i].path, e[i].original, strerror(errno), path);
			rc = -1;
		} else if (say) {
			printf("restored %s to '%s' (knob %s)\n", e[i].path, e[i].original, e[i].knob);
		}
	}
	return rc;
}

int cm_state_restore(struct cm_knob_state *st)
{
	return st ? restore_entries(st->e, st->n, st->path, false) : 0;
}

int cm_state_finish(struct cm_knob_state *st)
{
	int rc;

	if (!st)
		return 0;
	rc = cm_state_restore(st);
	/* a file that could not be restored stays recorded, for --restore */
	if (!rc && (unlinkat(st->dirfd, st->name, 0) || fsync(st->dirfd)))
		cm_warn("could not remove the state file %s: %s", st->path, strerror(errno));
	close(st->fd);
	close(st->dirfd);
	free_entries(st->e, st->n);
	free(st);
	return rc;
}

int cm_state_restore_main(void)
{
	int found = 0, rc = 0;

	for (size_t i = 0; i < sizeof(state_dirs) / sizeof(*state_dirs); i++) {
		const char *dir = state_dirs[i];
		int dirfd = open_state_dir(dir, false);
		struct dirent *de;
		DIR *d;

		if (dirfd == -2)
			continue;
		if (dirfd < 0) {
			rc = 1;
			continue;
		}
		flock(dirfd, LOCK_EX);
		d = fdopendir(dup(dirfd));
		while (d && (de = readdir(d))) {
			char path[PATH_MAX];
			struct entry *e;
			int n, fd;
			long pid = 0;

			if (!is_state_name(de->d_name))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			fd = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				continue;
			found++;
			if (flock(fd, LOCK_EX | LOCK_NB)) {
				if (read_state(fd, path, &e, &n, &pid) == 0)
					free_entries(e, n);
				printf("experiment pid %ld is still running and restores its own knobs "
				       "(stop it with kill -TERM %ld): %s left alone\n", pid, pid, path);
				close(fd);
				continue;
			}
			if (read_state(fd, path, &e, &n, &pid)) {
				rc = 1;
				close(fd);
				continue;
			}
			if (restore_entries(e, n, path, true) == 0) {
				if (unlinkat(dirfd, de->d_name, 0) == 0)
					fsync(dirfd);
				printf("removed %s (experiment pid %ld)\n", path, pid);
			} else {
				rc = 1;
			}
			free_entries(e, n);
			close(fd);
		}
		if (d)
			closedir(d);
		close(dirfd);
	}
	if (!found)
		printf("nothing to restore: no experiment state files in %s or %s\n", state_dirs[0],
		       state_dirs[1]);
	if (fflush(stdout) == EOF)
		rc = 1;
	return rc;
}
