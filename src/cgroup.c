// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --cgroup PATH: trace every process of a cgroup v2 subtree (a container, a
 * systemd service, a Kubernetes pod), those that join later included.
 *
 * The programs are attached first, then the subtree's cgroup.procs files are
 * read and each process seeded from /proc as attach mode does; from then on
 * nothing that joins is missed: children of traced threads are followed at
 * fork, children an untraced parent starts inside the subtree (clone3 with
 * CLONE_INTO_CGROUP, or a fork by a process we have not seeded yet) are taken
 * at fork by their cgroup (bpf/cgroup.bpf.h), and tasks moved in come from the
 * cgroup_attach_task tracepoint (bpf/cgroup.bpf.c) through a ring buffer. The
 * target is told apart by its kernfs id, the id BPF sees in cgroup->kn->id.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include "cm.h"
#include "cgroup.h"
#include "tracer.h"
#include "contactmap.skel.h"

#define MAX_DEPTH 64	/* directories below the target we descend into */

/* Where the cgroup2 filesystem is mounted ("" when it is not). */
static void cgroup2_mount(char *out, size_t sz)
{
	FILE *fp = setmntent("/proc/self/mounts", "re");
	struct mntent *m;

	*out = 0;
	while (fp && (m = getmntent(fp))) {
		if (!strcmp(m->mnt_type, "cgroup2")) {
			snprintf(out, sz, "%s", m->mnt_dir);
			break;
		}
	}
	if (fp)
		endmntent(fp);
}

static const char *fs_name(long type)
{
	switch (type) {
	case CGROUP_SUPER_MAGIC:
		return "cgroup v1";
	case TMPFS_MAGIC:
		return "tmpfs";
	case SYSFS_MAGIC:
		return "sysfs";
	case PROC_SUPER_MAGIC:
		return "proc";
	default:
		return "non-cgroup";
	}
}

int cm_cgroup_resolve(const char *path, char *out, size_t outsz, uint64_t *id)
{
	union {
		struct file_handle fh;
		char raw[sizeof(struct file_handle) + sizeof(uint64_t)];
	} h;
	char mnt[PATH_MAX], full[PATH_MAX + 256];
	struct statfs sf;
	struct stat st;
	int mount_id;

	cgroup2_mount(mnt, sizeof(mnt));
	if (!*path) {
		cm_err("--cgroup needs a path: a directory of the cgroup v2 hierarchy%s%s", *mnt ? " under " : "", mnt);
		return -1;
	}
	if (path[0] == '/' || !*mnt)
		snprintf(full, sizeof(full), "%s", path);
	else
		snprintf(full, sizeof(full), "%s/%s", mnt, path);
	if (statfs(full, &sf) || stat(full, &st)) {
		if (errno == ENOENT || errno == ENOTDIR)
			cm_err("no such cgroup: %s (give a directory of the cgroup v2 hierarchy%s%s, "
			       "absolute or relative to it)", full, *mnt ? ", here " : "", mnt);
		else
			cm_err("cannot read cgroup %s: %s", full, strerror(errno));
		return -1;
	}
	if (sf.f_type != CGROUP2_SUPER_MAGIC || !S_ISDIR(st.st_mode)) {
		cm_err("not a cgroup v2 directory: %s is %s%s (contactmap follows the unified cgroup v2 hierarchy; %s%s)",
		       full, S_ISDIR(st.st_mode) ? "on a " : "not a directory", S_ISDIR(st.st_mode) ? fs_name(sf.f_type) : "",
		       *mnt ? "it is mounted at " : "no cgroup2 filesystem is mounted on this system", mnt);
		return -1;
	}
	if (!realpath(full, out) || strlen(out) >= outsz) {
		cm_err("cannot resolve cgroup path %s: %s", full, strerror(errno ? errno : ENAMETOOLONG));
		return -1;
	}
	/* cgroupfs file handles are the kernfs node id: what BPF reads as kn->id */
	h.fh.handle_bytes = sizeof(uint64_t);
	if (!name_to_handle_at(AT_FDCWD, out, &h.fh, &mount_id, 0) && h.fh.handle_bytes == sizeof(uint64_t))
		memcpy(id, h.fh.f_handle, sizeof(*id));
	else
		*id = st.st_ino;	/* the same on 64-bit kernels */
	return 0;
}

struct seeding {
	struct cm_tracer *tr;
	pid_t *pids;
	int n, cap;
};

static void seed(struct seeding *sd, pid_t pid)
{
	if (pid <= 0 || pid == getpid())
		return;		/* contactmap inside its own target: never itself */
	if (cm_tracer_seed_process(sd->tr, pid, false))
		return;		/* gone since cgroup.procs listed it */
	if (sd->n == sd->cap) {
		int nc = sd->cap ? sd->cap * 2 : 64;
		pid_t *np = realloc(sd->pids, nc * sizeof(*np));

		if (!np)
			return;
		sd->pids = np;
		sd->cap = nc;
	}
	sd->pids[sd->n++] = pid;
}

/* The processes of the cgroup at dirfd, then of every cgroup below it. */
static void walk(struct seeding *sd, int dirfd, int depth)
{
	int fd = openat(dirfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
	FILE *fp = fd >= 0 ? fdopen(fd, "re") : NULL;
	struct dirent *de;
	long pid;
	DIR *d;

	while (fp && fscanf(fp, "%ld", &pid) == 1)
		seed(sd, (pid_t)pid);
	if (fp)
		fclose(fp);
	else if (fd >= 0)
		close(fd);
	if (depth >= MAX_DEPTH)
		return;
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		int sub;

		if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		walk(sd, sub, depth + 1);
		close(sub);
	}
	closedir(d);
}

static int on_join(void *ctx, void *data, size_t len)
{
	const struct cm_cgroup_event *e = data;
	struct cm_tracer *tr = ctx;

	if (len < sizeof(*e) || e->type != CM_EV_CGROUP_JOIN || (pid_t)e->pid == getpid())
		return 0;
	/* the reported task is traced already; this adds its other threads */
	if (cm_tracer_seed_process(tr, (pid_t)e->pid, false))
		cm_info("process %u joined the cgroup (and exited before its other threads were seeded)", e->pid);
	else
		cm_info("process %u joined the cgroup", e->pid);
	return 0;
}

int cm_cgroup_start(struct cm_tracer *tr, const char *path, pid_t **pids, int *npids)
{
	struct seeding sd = { .tr = tr };
	int fd;

	if (cm_tracer_add_ring(tr, tr->skel->maps.cgroup_events, on_join, tr)) {
		cm_err("cannot open the cgroup ring buffer: %s", strerror(errno));
		return -1;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		cm_err("cannot open cgroup %s: %s", path, strerror(errno));
		return -1;
	}
	walk(&sd, fd, 0);
	close(fd);
	*pids = sd.pids;
	*npids = sd.n;
	return 0;
}
