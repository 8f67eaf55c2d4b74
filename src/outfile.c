// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Outputs that cannot be turned against the root user who runs contactmap
 * (outfile.h). The attacker in mind is another local user who can write to
 * the directory an output goes to (/tmp; this VM runs with
 * fs.protected_symlinks=0): they may plant a symlink or a FIFO at the name, or
 * at any name contactmap creates there, before or during the run.
 *
 * The path is walked one component at a time with O_PATH|O_NOFOLLOW, so every
 * symbolic link on the way is seen and judged by its owner before it is
 * followed; what is finally written is an fd-relative name in a directory
 * held open, so nothing can be swapped underneath once it has been judged.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include "cm.h"
#include "outfile.h"

#define MAX_HOPS 40		/* symlinks followed in one path, as the kernel's limit */
#define PROC_MAGIC 0x9fa0	/* PROC_SUPER_MAGIC: /proc/self/fd/N are the kernel's own links */

struct cm_out {
	char *path, *what, *option;
	FILE *fp;
	int dirfd;		/* holds name; -1 when written in place */
	char name[NAME_MAX + 1];
	char tmp[NAME_MAX + 1];	/* the temp file's name in dirfd, "" while unnamed (O_TMPFILE) */
	bool in_place, is_stdout, published;
	/* identity, for the same-file check: the file itself when it exists,
	 * and the directory + name it will be renamed to */
	bool have_file, have_dir;
	dev_t dev, dir_dev;
	ino_t ino, dir_ino;
	mode_t type;
	ino_t tmp_ino;		/* our temp file, to know it again at abort */
	int hops;
	char why[NAME_MAX + 256];	/* a reason errno cannot say */
};

static const char *hint(const struct cm_out *o, int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR:
		return "does the directory exist?";
	case EACCES: case EPERM: case EROFS:
		return "choose a writable directory";
	case ENOSPC: case EDQUOT:
		return "free some space, or write elsewhere";
	case EISDIR:
		return "give a file name, not a directory";
	default:
		return "choose another path";
	}
}

static const char *shown_path(const struct cm_out *o)
{
	return o->is_stdout ? "stdout" : o->path;
}

static void fail(const struct cm_out *o, int err)
{
	if (o->why[0])
		cm_err("cannot write the %s to %s (%s): %s", o->what, shown_path(o), o->option, o->why);
	else
		cm_err("cannot write the %s to %s (%s): %s (%s)", o->what, shown_path(o), o->option,
		       strerror(err), hint(o, err));
}

/* Root's links and the caller's own: anyone else's could point anywhere. */
static bool trusted(const struct cm_out *o, const struct stat *st)
{
	return st->st_uid == 0 || st->st_uid == geteuid();
}

static void untrusted(struct cm_out *o, const char *name, const struct stat *st)
{
	struct passwd *pw = getpwuid(st->st_uid);

	snprintf(o->why, sizeof(o->why),
		 "'%s' is a symbolic link owned by uid %u%s%s%s, not by you or root: not following it "
		 "(remove it, or give the path it points to)", name, (unsigned)st->st_uid,
		 pw ? " (" : "", pw ? pw->pw_name : "", pw ? ")" : "");
}

static int open_root(void)
{
	return open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* The target of the symlink `name` in dirfd, if its owner is trusted; read
 * through an fd of the link itself, so it is the link that was judged. */
static int read_link(struct cm_out *o, int dirfd, const char *name, char *buf, size_t sz)
{
	struct stat st;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	if (!S_ISLNK(st.st_mode)) {	/* swapped under us: refuse rather than guess */
		snprintf(o->why, sizeof(o->why), "'%s' changed while it was being resolved", name);
		close(fd);
		errno = EAGAIN;
		return -1;
	}
	if (!trusted(o, &st)) {
		untrusted(o, name, &st);
		close(fd);
		errno = EPERM;
		return -1;
	}
	if (++o->hops > MAX_HOPS) {
		close(fd);
		errno = ELOOP;
		return -1;
	}
	n = readlinkat(fd, "", buf, sz - 1);
	close(fd);
	if (n < 0)
		return -1;
	if ((size_t)n >= sz - 1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	buf[n] = 0;
	return 0;
}

/*
 * Resolves path (relative to at) to the directory that holds its last
 * component, following trusted symlinks only: *dirfd (O_PATH) and o->name.
 */
static int walk(struct cm_out *o, int at, const char *path, int *dirfd)
{
	char rest[PATH_MAX], link[PATH_MAX];
	int dfd;

	if (snprintf(rest, sizeof(rest), "%s", path) >= (int)sizeof(rest)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	dfd = rest[0] == '/' ? open_root() : openat(at, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	for (char *p = rest;;) {
		char *comp, *next;
		struct stat st;
		size_t len;
		int fd;

		p += strspn(p, "/");
		if (!*p) {		/* "/" or "dir/": no file name */
			close(dfd);
			errno = EISDIR;
			return -1;
		}
		comp = p;
		len = strcspn(p, "/");
		next = p + len;
		if (!next[strspn(next, "/")]) {	/* the last component */
			if (len > NAME_MAX || *next == '/') {	/* "name/" is a directory */
				close(dfd);
				errno = *next == '/' ? EISDIR : ENAMETOOLONG;
				return -1;
			}
			memcpy(o->name, comp, len);
			o->name[len] = 0;
			*dirfd = dfd;
			return 0;
		}
		*next++ = 0;
		if (!strcmp(comp, "."))
			goto advance;
		fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st)) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			close(dfd);
			errno = e;
			return -1;
		}
		if (S_ISDIR(st.st_mode)) {
			close(dfd);
			dfd = fd;
			goto advance;
		}
		close(fd);
		if (!S_ISLNK(st.st_mode)) {
			close(dfd);
			errno = ENOTDIR;
			return -1;
		}
		if (read_link(o, dfd, comp, link, sizeof(link))) {
			int e = errno;

			close(dfd);
			errno = e;
			return -1;
		}
		/* the link's target, then what is left of the path */
		size_t ll = strlen(link), nl = strlen(next);

		if (ll + 1 + nl + 1 > sizeof(rest)) {
			close(dfd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memmove(rest + ll + 1, next, nl + 1);
		memcpy(rest, link, ll);
		rest[ll] = '/';
		if (rest[0] == '/') {
			close(dfd);
			if ((dfd = open_root()) < 0)
				return -1;
		}
		p = rest;
		continue;
advance:
		p = next;
	}
}

static void random_name(struct cm_out *o)
{
	unsigned char r[6];
	char hex[13];

	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(rand() ^ getpid() ^ (int)i);
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	/* ".NAME.cm-XXXXXXXXXXXX", NAME cut to fit NAME_MAX */
	snprintf(o->tmp, sizeof(o->tmp), ".%.*s.cm-%s", NAME_MAX - 20, o->name, hex);
}

/* A fresh file beside the final name: unnamed (O_TMPFILE) where the
 * filesystem can, so a crash leaves nothing; else a random O_EXCL name. */
static int make_temp(struct cm_out *o)
{
	int fd = openat(o->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);

	o->tmp[0] = 0;
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	for (int i = 0; i < 100; i++) {
		random_name(o);
		fd = openat(o->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0)
		o->tmp[0] = 0;
	return fd;
}

/* Gives an unnamed temp file a random name in its directory. */
static int name_temp(struct cm_out *o)
{
	char proc[64];
	int fd = fileno(o->fp);

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	for (int i = 0; i < 100; i++) {
		random_name(o);
		/* linkat never follows or replaces what is at the new name */
		if (!linkat(AT_FDCWD, proc, o->dirfd, o->tmp, AT_SYMLINK_FOLLOW))
			return 0;
		if (errno == ENOENT && !linkat(fd, "", o->dirfd, o->tmp, AT_EMPTY_PATH))
			return 0;	/* no /proc: needs CAP_DAC_READ_SEARCH, root has it */
		if (errno != EEXIST)
			break;
	}
	o->tmp[0] = 0;
	return -1;
}

/* The temp file takes the final name: over nothing or a regular file only
 * (a device, FIFO or link put there during the run is left alone). An
 * unnamed temp file must have been named (name_temp) first. */
static int rename_into_place(struct cm_out *o)
{
	struct stat st;

	if (!fstatat(o->dirfd, o->name, &st, AT_SYMLINK_NOFOLLOW) && !S_ISREG(st.st_mode)) {
		snprintf(o->why, sizeof(o->why), "'%s' was replaced by something that is not a regular "
			 "file during the run: not replacing it", o->name);
		errno = EEXIST;
		return -1;
	}
	if (renameat(o->dirfd, o->tmp, o->dirfd, o->name))
		return -1;
	o->tmp[0] = 0;
	return 0;
}

static void drop_temp(struct cm_out *o)
{
	struct stat st;

	/* only our own file: the name may have been taken over since */
	if (o->tmp[0] && !fstatat(o->dirfd, o->tmp, &st, AT_SYMLINK_NOFOLLOW) && st.st_ino == o->tmp_ino)
		unlinkat(o->dirfd, o->tmp, 0);
	o->tmp[0] = 0;
}

/* A published stream's name, if it still is our file. */
static void drop_published(struct cm_out *o)
{
	struct stat st;

	if (!fstatat(o->dirfd, o->name, &st, AT_SYMLINK_NOFOLLOW) && st.st_ino == o->tmp_ino)
		unlinkat(o->dirfd, o->name, 0);
}

static void out_free(struct cm_out *o)
{
	if (o->dirfd >= 0)
		close(o->dirfd);
	free(o->path);
	free(o->what);
	free(o->option);
	free(o);
}

static bool is_proc(int fd)
{
	struct statfs sf;

	return !fstatfs(fd, &sf) && sf.f_type == PROC_MAGIC;
}

/* Opens an existing non-regular file in place, checking it is what was judged. */
static int open_in_place(struct cm_out *o, const struct stat *judged, bool via_proc)
{
	struct stat st;
	int fd;

	/* a /proc/PID/fd/N link is followed by the kernel to the open file itself */
	fd = openat(o->dirfd, o->name, O_WRONLY | O_NOCTTY | O_CLOEXEC | (via_proc ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || (!via_proc && (st.st_dev != judged->st_dev || st.st_ino != judged->st_ino))) {
		close(fd);
		errno = EAGAIN;
		return -1;
	}
	if (S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode)) {
		close(fd);
		errno = S_ISDIR(st.st_mode) ? EISDIR : ENOTSUP;
		if (S_ISBLK(st.st_mode))
			snprintf(o->why, sizeof(o->why), "it is a block device: contactmap writes files, "
				 "character devices and pipes, never disks");
		return -1;
	}
	/* e.g. /dev/stdout of a shell's `>> file`: add to it, as the shell would */
	if (S_ISREG(st.st_mode))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_APPEND);
	o->in_place = true;
	o->have_file = true;
	o->dev = st.st_dev;
	o->ino = st.st_ino;
	o->type = st.st_mode & S_IFMT;
	return fd;
}

/* The final component: follow trusted links, then decide how to write. */
static int open_final(struct cm_out *o)
{
	for (;;) {
		char link[PATH_MAX];
		struct stat st;
		int ndir;

		if (!strcmp(o->name, ".") || !strcmp(o->name, "..")) {
			errno = EISDIR;
			return -1;
		}
		if (fstatat(o->dirfd, o->name, &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno != ENOENT)
				return -1;
			break;		/* a new file */
		}
		if (S_ISREG(st.st_mode)) {
			o->have_file = true;
			o->dev = st.st_dev;
			o->ino = st.st_ino;
			o->type = S_IFREG;
			break;		/* replaced by rename, never written into */
		}
		if (S_ISDIR(st.st_mode)) {
			errno = EISDIR;
			return -1;
		}
		if (S_ISLNK(st.st_mode) && is_proc(o->dirfd)) {
			if (!trusted(o, &st)) {
				untrusted(o, o->name, &st);
				errno = EPERM;
				return -1;
			}
			return open_in_place(o, &st, true);
		}
		if (S_ISBLK(st.st_mode)) {
			snprintf(o->why, sizeof(o->why), "it is a block device: contactmap writes files, "
				 "character devices and pipes, never disks");
			errno = ENOTSUP;
			return -1;
		}
		if (!S_ISLNK(st.st_mode))
			return open_in_place(o, &st, false);
		if (read_link(o, o->dirfd, o->name, link, sizeof(link)) || walk(o, o->dirfd, link, &ndir))
			return -1;
		close(o->dirfd);
		o->dirfd = ndir;
	}
	int fd = make_temp(o);
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return -1;
	o->tmp_ino = st.st_ino;
	if (!fstat(o->dirfd, &st)) {
		o->have_dir = true;
		o->dir_dev = st.st_dev;
		o->dir_ino = st.st_ino;
	}
	return fd;
}

struct cm_out *cm_out_open(const char *path, const char *what, const char *option)
{
	struct cm_out *o = calloc(1, sizeof(*o));
	int fd = -1;

	if (!o || !(o->path = strdup(path)) || !(o->what = strdup(what)) ||
	    !(o->option = strdup(option))) {
		cm_err("out of memory");
		if (o)
			out_free(o);
		return NULL;
	}
	o->dirfd = -1;
	if (!*path) {
		cm_err("%s needs a file name, and got an empty one", option);
		out_free(o);
		return NULL;
	}
	if (!strcmp(path, "-")) {
		struct stat st;

		o->is_stdout = true;
		o->in_place = true;
		if (fstat(STDOUT_FILENO, &st)) {
			fail(o, errno);
			out_free(o);
			return NULL;
		}
		o->have_file = true;
		o->dev = st.st_dev;
		o->ino = st.st_ino;
		o->type = st.st_mode & S_IFMT;
		o->fp = stdout;
		return o;
	}
	if (walk(o, AT_FDCWD, path, &o->dirfd) == 0)
		fd = open_final(o);
	if (fd < 0 || !(o->fp = fdopen(fd, "w"))) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		fail(o, err);
		drop_temp(o);
		out_free(o);
		return NULL;
	}
	return o;
}

FILE *cm_out_fp(struct cm_out *o)
{
	return o->fp;
}

const char *cm_out_path(const struct cm_out *o)
{
	return o->path;
}

const char *cm_out_option(const struct cm_out *o)
{
	return o->option;
}

bool cm_out_is_stdout(const struct cm_out *o)
{
	return o->is_stdout;
}

int cm_out_publish(struct cm_out *o)
{
	if (o->in_place || o->published)
		return 0;
	if ((!o->tmp[0] && name_temp(o)) || rename_into_place(o)) {
		fail(o, errno);
		return -1;
	}
	o->published = true;
	return 0;
}

int cm_out_commit(struct cm_out *o)
{
	int err = 0;

	if (!o)
		return 0;
	errno = 0;
	if (fflush(o->fp) == EOF || ferror(o->fp))
		err = errno ? errno : EIO;
	if (o->is_stdout) {
		if (err)
			fail(o, err);
		out_free(o);
		return err ? -1 : 0;
	}
	/* synced before the rename: after a crash the path holds the old file
	 * or the whole new one, never a torn one */
	if (!err && !o->in_place && fsync(fileno(o->fp)))
		err = errno;
	/* an O_TMPFILE is named through its fd, so before the close */
	if (!err && !o->in_place && !o->published && !o->tmp[0] && name_temp(o))
		err = errno;
	if (fclose(o->fp) && !err)
		err = errno ? errno : EIO;
	o->fp = NULL;
	if (!err && !o->in_place && !o->published && rename_into_place(o))
		err = errno;
	if (err) {
		fail(o, err);
		drop_temp(o);
		if (o->published)
			drop_published(o);	/* a torn stream is no stream */
	}
	out_free(o);
	return err ? -1 : 0;
}

void cm_out_abort(struct cm_out *o)
{
	if (!o)
		return;
	if (!o->is_stdout && o->fp)
		fclose(o->fp);
	drop_temp(o);
	if (o->published)
		drop_published(o);
	out_free(o);
}

bool cm_out_same(const struct cm_out *a, const struct cm_out *b)
{
	if (a->type == S_IFCHR || b->type == S_IFCHR)
		return false;	/* /dev/null twice, or one terminal, is fine */
	if (a->have_file && b->have_file && a->dev == b->dev && a->ino == b->ino)
		return true;
	return a->have_dir && b->have_dir && a->dir_dev == b->dir_dev && a->dir_ino == b->dir_ino &&
	       !strcmp(a->name, b->name);
}

int cm_out_check_stream(FILE *fp, const char *what, const char *name)
{
	errno = 0;
	if (fflush(fp) == EOF || ferror(fp)) {
		int err = errno ? errno : EIO;

		cm_err("cannot write the %s to %s: %s", what, name, strerror(err));
		return -1;
	}
	return 0;
}
