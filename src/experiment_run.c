// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * One run of contactmap experiment: its files (RUN.out and RUN.err for the
 * command, RUN.log for contactmap's own text, RUN.json the report), the
 * system knobs of its side set around it, the child contactmap started in a
 * process group of its own and waited for with a pidfd and the signalfd (a
 * signal restores the knobs at once, then stops the run in order), threads
 * named by sched=...@COMM set as they appear, and what the run left: the
 * command's status, the report's window and contact map, the metric.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "experiment.h"

#define STOP_GRACE_MS 5000	/* a stopped run's contactmap gets this long to write its report */
#define SCHED_POLL_MS 10	/* sched=...@COMM: how often new threads are looked for */
#define OUTPUT_MAX (64 << 20)	/* of a run's output, scanned for the metric */

uint64_t exp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (!p) {
		cm_err("out of memory");
		exit(1);
	}
	return p;
}

int exp_apply_side(const struct exp_side *s)
{
	for (int k = 0; k < s->nknobs; k++) {
		for (int f = 0; f < s->knobs[k].nfiles; f++) {
			const struct cm_knob_file *kf = &s->knobs[k].files[f];

			if (cm_knob_write(kf->path, kf->value)) {
				int err = errno;

				cm_err("knob '%s': the kernel refuses '%s' for %s (%s)%s", s->knobs[k].spec,
				       kf->value, kf->path, strerror(err),
				       err == EINVAL || err == ERANGE ? ": out of range or not a value it takes" : "");
				return -1;
			}
		}
	}
	return 0;
}

static int open_new(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);

	if (fd < 0)
		cm_err("cannot create %s: %s%s", path, strerror(errno),
		       errno == EEXIST ? " (give an empty or new --dir)" : "");
	return fd;
}

/* The last "contactmap: error:" line of a run's files, to say why it failed. */
static char *last_error(const struct exp_run *r)
{
	const char *files[] = { r->err, r->log };
	char *found = NULL, line[1024];

	for (size_t i = 0; i < 2 && !found; i++) {
		FILE *f = fopen(files[i], "re");

		while (f && fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "contactmap: error: ", 19)) {
				line[strcspn(line, "\n")] = '\0';
				free(found);
				found = strdup(line + 19);
			}
		}
		if (f)
			fclose(f);
	}
	return found;
}

/* Threads named by sched=...@COMM knobs, anywhere under the run's contactmap
 * (its own threads excepted), get their policy. */
static void sched_named(const struct exp_side *s, pid_t root)
{
	pid_t stack[4096];
	int n = 0;

	stack[n++] = root;
	while (n) {
		pid_t pid = stack[--n];
		char path[96], buf[4096];
		struct dirent *de;
		DIR *d;

		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		if (!(d = opendir(path)))
			continue;
		while ((de = readdir(d))) {
			int tid = atoi(de->d_name), fd;
			ssize_t len;

			if (tid <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, tid);
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
				len = read(fd, buf, sizeof(buf) - 1);
				close(fd);
				buf[len > 0 ? len : 0] = '\0';
				for (char *p = buf, *end; *p; p = end) {
					long c = strtol(p, &end, 10);

					if (end == p)
						break;
					if (c > 0 && n < (int)(sizeof(stack) / sizeof(*stack)))
						stack[n++] = (pid_t)c;
				}
			}
			if (pid == root)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, tid);
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				continue;
			len = read(fd, buf, 32);
			close(fd);
			buf[len > 0 ? len : 0] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			for (int k = 0; k < s->nknobs; k++)
				if (s->knobs[k].comm[0] && !strcmp(s->knobs[k].comm, buf) &&
				    cm_knob_sched_thread(&s->knobs[k], tid) && errno != ESRCH)
					cm_warn("knob '%s': thread %d: %s", s->knobs[k].spec, tid, strerror(errno));
		}
		closedir(d);
	}
}

static char **child_argv(const struct exp *e, const struct exp_run *r, const char *helper)
{
	const struct exp_side *s = &e->sides[r->side];
	int ncmd = 0, n = 0;
	char **av;

	while (e->cmd[ncmd])
		ncmd++;
	av = xcalloc(12 + s->nknobs + ncmd, sizeof(char *));
	av[n++] = "contactmap";
	av[n++] = "-o";
	av[n++] = r->report;
	av[n++] = "--";
	av[n++] = (char *)helper;
	av[n++] = "experiment";
	av[n++] = "--apply";
	for (int k = 0; k < s->nknobs; k++)
		if (!s->knobs[k].system)
			av[n++] = s->knobs[k].spec;
	av[n++] = "--stderr-fd";
	av[n++] = "3";
	av[n++] = "--";
	for (int i = 0; i < ncmd; i++)
		av[n++] = e->cmd[i];
	return av;
}

static void child_exec(char **av, const int fds[4], const sigset_t *oldmask)
{
	int high[4];

	/* out of the way first, so that no dup2 overwrites a source */
	for (int i = 0; i < 4; i++)
		high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
	for (int i = 0; i < 4; i++)
		if (high[i] < 0 || dup2(high[i], i) < 0)
			_exit(126);
	/* a group of its own: a run that outlives its stop is killed whole, and
	 * a terminal's Ctrl-C reaches this process, which stops the run in order */
	setpgid(0, 0);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, oldmask, NULL);
	execv("/proc/self/exe", av);
	dprintf(2, "contactmap: error: cannot run contactmap again (/proc/self/exe): %s\n", strerror(errno));
	_exit(127);
}

static int wait_exit(pid_t child, int pidfd, int sfd, int ms, int *status)
{
	uint64_t deadline = exp_now_ns() + (uint64_t)ms * 1000000;

	for (;;) {
		struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		uint64_t now = exp_now_ns();

		if (waitpid(child, status, WNOHANG) == child)
			return 0;
		if (now >= deadline)
			return -1;
		if (poll(p, 2, pidfd < 0 ? 20 : (int)((deadline - now) / 1000000) + 1) > 0 && (p[1].revents & POLLIN)) {
			struct signalfd_siginfo si;

			/* a second Ctrl-C: no more waiting */
			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				return -1;
		}
	}
}

/* Stops a run: the signal to its contactmap, which passes it on and writes
 * the report, then SIGKILL if it does not end in time. */
static void stop_run(pid_t child, int pidfd, int sfd, int sig)
{
	int status;

	kill(child, sig);
	if (wait_exit(child, pidfd, sfd, STOP_GRACE_MS, &status)) {
		kill(-child, SIGKILL);
		waitpid(child, &status, 0);
	}
}

static double first_number(const char *s, size_t n, bool *ok)
{
	char buf[128];

	*ok = false;
	for (size_t i = 0; i < n; i++) {
		if (isdigit((unsigned char)s[i]) ||
		    ((s[i] == '-' || s[i] == '+' || s[i] == '.') && i + 1 < n && isdigit((unsigned char)s[i + 1]))) {
			char *end;
			double v;

			snprintf(buf, sizeof(buf), "%.*s", (int)(n - i < 127 ? n - i : 127), s + i);
			v = strtod(buf, &end);
			*ok = end != buf && isfinite(v);
			return v;
		}
	}
	return 0;
}

static void scan_metric(struct exp *e, struct exp_run *r)
{
	const char *files[] = { r->out, r->err };
	double sum = 0;

	r->nmetric = 0;
	r->metric = NAN;
	for (size_t i = 0; i < 2; i++) {
		int fd = open(files[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		char *buf;

		if (fd < 0 || fstat(fd, &st)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		size_t len = st.st_size > OUTPUT_MAX ? OUTPUT_MAX : (size_t)st.st_size;
		ssize_t got;

		buf = xcalloc(1, len + 1);
		got = pread(fd, buf, len, 0);
		close(fd);
		buf[got > 0 ? got : 0] = '\0';
		for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			regmatch_t m[2];
			bool ok;
			double v;

			nl = strchr(line, '\n');
			if (nl)
				*nl = '\0';
			if (regexec(&e->metric_re, line, 2, m, 0))
				continue;
			if (m[1].rm_so >= 0)
				v = first_number(line + m[1].rm_so, m[1].rm_eo - m[1].rm_so, &ok);
			else
				v = first_number(line + m[0].rm_so, m[0].rm_eo - m[0].rm_so, &ok);
			if (ok) {
				sum += v;
				r->nmetric++;
			}
		}
		free(buf);
	}
	if (r->nmetric)
		r->metric = sum / r->nmetric;
}

/* What the run left: its report, the command's status, the metric. */
static int collect(struct exp *e, struct exp_run *r, int wstatus)
{
	const char *side = e->sides[r->side].name;
	json_object *rep, *ex, *cm;
	struct stat st;
	char *why;

	if (stat(r->report, &st)) {
		why = last_error(r);
		cm_err("run %d (%s): contactmap wrote no report%s%s (see %s)", r->round + 1, side,
		       why ? ": " : "", why ? why : "", r->log);
		free(why);
		return -1;
	}
	if (!(rep = cm_read_json(r->report)))
		return -1;
	ex = cm_json_get_type(rep, "exit", json_type_object);
	r->status = ex ? json_object_get_int(cm_json_get(ex, "status")) : -1;
	r->window_ns = (uint64_t)json_object_get_int64(cm_json_get(cm_json_get(rep, "window"), "duration_ns"));
	if ((cm = cm_json_get_type(rep, "contact_map", json_type_array)))
		r->contact_map = json_object_get(cm);
	json_object_put(rep);
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != r->status) {
		why = last_error(r);
		cm_err("run %d (%s): contactmap failed%s%s (see %s)", r->round + 1, side, why ? ": " : "",
		       why ? why : "", r->log);
		free(why);
		return -1;
	}
	if (r->status) {
		why = last_error(r);
		cm_err("run %d (%s): the command exited with status %d%s%s (its stderr: %s)", r->round + 1,
		       side, r->status, why ? ": " : "", why ? why : "", r->err);
		free(why);
		return -1;
	}
	if (e->metric_src)
		scan_metric(e, r);
	r->done = true;
	return 0;
}

/* 0 done, -1 failed (printed), 1 stopped by a signal (e->stop_sig). */
int exp_run_one(struct exp *e, struct exp_run *r, const char *helper, int sfd, const sigset_t *oldmask)
{
	const struct exp_side *s = &e->sides[r->side];
	int fds[4] = { -1, -1, -1, -1 }, pidfd, status = 0, rc = -1;
	char **av = child_argv(e, r, helper);
	uint64_t deadline = e->timeout > 0 ? exp_now_ns() + (uint64_t)(e->timeout * 1e9) : 0;
	pid_t child;

	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fds[0] < 0 || (fds[1] = open_new(r->out)) < 0 || (fds[2] = open_new(r->log)) < 0 ||
	    (fds[3] = open_new(r->err)) < 0)
		goto out;
	if (s->system && exp_apply_side(s)) {
		cm_state_restore(e->state);
		goto out;
	}
	/* progress where someone watches, or with -v */
	if (cm_verbose || isatty(2))
		fprintf(stderr, "contactmap: experiment: run %d of %d: side %s%s\n", (int)(r - e->runs) + 1,
			e->nruns, s->name, r->round < 0 ? " (warm-up)" : "");
	child = fork();
	if (child < 0) {
		cm_err("fork: %s", strerror(errno));
		cm_state_restore(e->state);
		goto out;
	}
	if (child == 0)
		child_exec(av, fds, oldmask);
	setpgid(child, child);	/* as the child does: whichever runs first */
	pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
		int timeout = pidfd < 0 ? 20 : -1;

		if (waitpid(child, &status, WNOHANG) == child)
			break;
		if (s->named_sched) {
			sched_named(s, child);
			timeout = SCHED_POLL_MS;
		}
		if (deadline) {
			uint64_t now = exp_now_ns();

			if (now >= deadline) {
				cm_state_restore(e->state);
				cm_err("run %d (%s) took longer than --timeout %g s: stopped", r->round + 1,
				       s->name, e->timeout);
				stop_run(child, pidfd, sfd, SIGTERM);
				goto out_pidfd;
			}
			if (timeout < 0 || (deadline - now) / 1000000 + 1 < (uint64_t)timeout)
				timeout = (int)((deadline - now) / 1000000) + 1;
		}
		if (poll(p, 2, timeout) > 0 && (p[0].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				/* the knobs first: the user wants the machine back */
				e->stop_sig = (int)si.ssi_signo;
				cm_state_restore(e->state);
				stop_run(child, pidfd, sfd, e->stop_sig);
				rc = 1;
				goto out_pidfd;
			}
		}
	}
	if (s->system && cm_state_restore(e->state))
		goto out_pidfd;
	rc = collect(e, r, status);
out_pidfd:
	if (pidfd >= 0)
		close(pidfd);
out:
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(av);
	return rc;
}
