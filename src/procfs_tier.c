// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The procfs tier's run loop (procfs.h): wrap and attach mode for a user
 * without the privileges BPF needs. The same options, the same report: the
 * tables of pftrack.c fill what the BPF tier's maps would, and
 * cm_build_report makes the contactmap/1 report of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "cm.h"
#include "outfile.h"
#include "sigstate.h"
#include "session.h"
#include "books.h"
#include "interval.h"
#include "procfs.h"
#include "pftrack.h"
#include "stacks.h"
#include "sym.h"

#define DEFAULT_HZ 100

struct tier {
	struct cm_tracer tr;
	struct cm_pf *pf;
	struct cm_pf_caps caps;
};

int cm_procfs_check_opts(const struct cm_run_opts *o)
{
	if (o->tr.trace_path) {
		cm_err("--trace needs the BPF tier (root or CAP_BPF+CAP_PERFMON): the procfs tier has no timeline");
		return -1;
	}
	if (o->serve || o->pprof_path || o->cgroup_path) {
		cm_err("%s needs the BPF tier (root or CAP_BPF+CAP_PERFMON) for now",
		       o->serve ? "--serve" : o->pprof_path ? "--pprof" : "--cgroup");
		return -1;
	}
	if (o->fold_which == CM_FOLD_OFFCPU) {
		cm_err("off-CPU stacks need the BPF tier (root or CAP_BPF+CAP_PERFMON); "
		       "the procfs tier has on-CPU stacks only (--stacks oncpu)");
		return -1;
	}
	if (o->tr.gpu_mode == CM_GPU_CUPTI || o->tr.gpu_mode == CM_GPU_UPROBES) {
		cm_err("--gpu %s needs the BPF tier (root or CAP_BPF+CAP_PERFMON)",
		       o->tr.gpu_mode == CM_GPU_CUPTI ? "cupti" : "uprobes");
		return -1;
	}
	return 0;
}

/* A thread per file descriptor or so: as many as the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void tier_close(struct tier *t)
{
	cm_pf_free(t->pf);
	t->pf = NULL;
	cm_books_free(t->tr.books);
	t->tr.books = NULL;
	cm_stacks_free(t->tr.stacks);
	t->tr.stacks = NULL;
	cm_sym_free(t->tr.sym);
	t->tr.sym = NULL;
}

static int tier_start(struct tier *t, const struct cm_run_opts *o)
{
	struct cm_pf_opts po = {
		.hz = o->freq ? o->freq : DEFAULT_HZ,
		.budget = 0.01,
		.reason = o->tier_reason,
		.stacks_asked = o->tr.sample_hz != 0,
	};

	cm_pf_probe(&t->caps);
	raise_nofile();
	t->tr.books = cm_books_new(o->tr.keep_threads, o->tr.keep_procs);
	if (!t->tr.books)
		goto oom;
	if (o->tr.sample_hz) {
		if (t->caps.perf) {
			t->tr.sym = cm_sym_new();
			t->tr.stacks = t->tr.sym ? cm_stacks_new(t->tr.sym, -1) : NULL;
			if (!t->tr.stacks)
				goto oom;
			po.stack_hz = o->tr.sample_hz;
		} else {
			cm_warn("no on-CPU stacks, %s is not written: %s", o->folded_path ? o->folded_path : "-f",
				t->caps.perf_error);
		}
	}
	t->pf = cm_pf_new(&t->tr, &t->caps, &po);
	if (!t->pf)
		goto oom;
	if (t->tr.stacks && !cm_pf_has_perf(t->pf)) {
		cm_warn("no on-CPU stacks, %s is not written: %s", o->folded_path ? o->folded_path : "-f",
			cm_pf_perf_error(t->pf));
		cm_stacks_free(t->tr.stacks);
		t->tr.stacks = NULL;
	}
	t->tr.tier = t->pf;
	t->tr.tier_report = cm_pf_report;
	cm_note("procfs tier (%s): exact on-CPU%s, faults and switches from /proc; off-CPU causes sampled "
		"at %u Hz%s; see contactmap check", o->tier_reason ? o->tier_reason : "--tier procfs",
		t->caps.schedstat ? ", run queue" : "", po.hz, t->tr.stacks ? "; user-mode stacks from perf_event_open" : "");
	return 0;
oom:
	cm_err("out of memory");
	tier_close(t);
	return -1;
}

static int signal_fd(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, old);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static int read_signal(int sfd)
{
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof(si)) == sizeof(si))
		return (int)si.ssi_signo;
	return 0;
}

/* An interval line: the cumulative report as of now (not the stacks). */
static void interval_tick(struct tier *t, const struct cm_run_opts *o)
{
	struct cm_tracer view = t->tr;
	struct cm_snapshot snap;
	json_object *r;

	view.stacks = NULL;
	if (cm_pf_snapshot(t->pf, &snap))
		return;
	view.end_ns = t->tr.end_ns;
	r = cm_build_report(&view, &snap, NULL, NULL);
	cm_snapshot_free(&snap);
	cm_interval_emit(o->iv, r);	/* a failure is said once, and fails the run at the end */
	json_object_put(r);
}

/* ms to the next thing to do: the sampler, an interval line, the deadline */
static int loop_timeout(struct tier *t, const struct cm_run_opts *o, uint64_t deadline, uint64_t *next_iv)
{
	uint64_t now = cm_now_ns();
	int ms = cm_pf_next_ms(t->pf);

	if (o->iv) {
		if (!*next_iv)
			*next_iv = t->tr.start_ns + (uint64_t)(o->interval * 1e9);
		if (now >= *next_iv) {
			interval_tick(t, o);
			while (*next_iv <= now)
				*next_iv += (uint64_t)(o->interval * 1e9);
		}
		if ((int)((*next_iv - now) / 1000000) < ms)
			ms = (int)((*next_iv - now) / 1000000) + 1;
	}
	if (deadline) {
		if (now >= deadline)
			return -2;
		if ((int)((deadline - now) / 1000000) < ms)
			ms = (int)((deadline - now) / 1000000) + 1;
	}
	return ms;
}

/* The report and every output, committed as the BPF tier's are (session.c). */
static int emit(struct tier *t, struct cm_run_opts *o, json_object *target, json_object *exitj)
{
	struct cm_snapshot snap;
	json_object *report;
	int rc;

	if (cm_pf_snapshot(t->pf, &snap)) {
		json_object_put(target);
		json_object_put(exitj);
		return -1;
	}
	report = cm_build_report(&t->tr, &snap, target, exitj);
	cm_snapshot_free(&snap);
	rc = cm_run_emit_report(o, report);
	if (o->folded_out && !t->tr.stacks) {
		/* no perf events here: said at the start, and the file not written */
		cm_out_abort(o->folded_out);
		o->folded_out = NULL;
	} else if (o->folded_out) {
		rc |= cm_run_settle(&o->folded_out,
			cm_stacks_write_folded(t->tr.stacks, cm_out_fp(o->folded_out),
					       (o->fold_which & CM_FOLD_ONCPU) |
					       (o->fold_pid ? CM_FOLD_PID : 0)));
	}
	rc |= cm_run_emit_text(o, report);
	json_object_put(report);
	return rc ? -1 : 0;
}

static json_object *wrap_target(char **argv, pid_t child, json_object *tenv)
{
	json_object *target = json_object_new_object(), *argvj = json_object_new_array();

	json_object_object_add(target, "mode", json_object_new_string("wrap"));
	for (char **a = argv; *a; a++) {
		char clean[4096];

		cm_sanitize_comm(*a, strnlen(*a, 1000), clean, sizeof(clean));
		json_object_array_add(argvj, json_object_new_string(clean));
	}
	json_object_object_add(target, "command", argvj);
	json_object_object_add(target, "pid", json_object_new_int(child));
	json_object_object_add(target, "environment", tenv);
	return target;
}

/* The status word of an exit waitid reported, as wait4 would give it. */
static int status_word(const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		return (si->si_status & 0xff) << 8;
	return (si->si_status & 0x7f) | (si->si_code == CLD_DUMPED ? 0x80 : 0);
}

int cm_procfs_run_wrap(struct cm_run_opts *o)
{
	struct tier t = { 0 };
	char exe[PATH_MAX];
	int go[2], errp[2], sfd, rc, status = 0, child_errno = 0, stop_sig = 0;
	bool exited = false;
	sigset_t oldmask;
	uint64_t deadline, next_iv = 0;
	pid_t child;

	rc = cm_resolve_command(o->argv[0], exe, sizeof(exe));
	if (rc)
		return rc;
	if (tier_start(&t, o))
		return 1;
	if (pipe2(go, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
		cm_err("pipe: %s", strerror(errno));
		tier_close(&t);
		return 1;
	}
	sfd = signal_fd(&oldmask);
	child = fork();
	if (child < 0) {
		cm_err("fork: %s", strerror(errno));
		tier_close(&t);
		return 1;
	}
	if (child == 0) {
		char c;

		/* the signal state contactmap was given, not its own (sigstate.c) */
		cm_sig_restore();
		close(go[1]);
		close(errp[0]);
		/* wait until its counters are read and its perf events wait for the exec */
		if (read(go[0], &c, 1) != 1)
			_exit(127);
		execv(exe, o->argv);
		int e = errno;
		if (write(errp[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(go[0]);
	close(errp[1]);
	t.tr.start_ns = cm_now_ns();
	cm_pf_open_window(t.pf, t.tr.start_ns);
	/* counted from its fork, as the rusage that closes its books is */
	if (cm_pf_add_process(t.pf, child, false, true, true))
		cm_warn("could not read the command's process %d in /proc", child);
	cm_pf_perf_follow(t.pf, child, true);
	json_object *tenv = cm_target_env(child);
	if (write(go[1], "g", 1) != 1) {
		cm_err("could not start the command: %s", strerror(errno));
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		json_object_put(tenv);
		tier_close(&t);
		return 1;
	}
	close(go[1]);
	if (read(errp[0], &child_errno, sizeof(child_errno)) == sizeof(child_errno)) {
		waitpid(child, NULL, 0);
		cm_err("cannot run %s: %s", o->argv[0], strerror(child_errno));
		json_object_put(tenv);
		tier_close(&t);
		return 127;
	}
	close(errp[0]);

	int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	deadline = o->duration > 0 ? cm_now_ns() + (uint64_t)(o->duration * 1e9) : 0;
	while (!exited && !stop_sig) {
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
		int timeout = loop_timeout(&t, o, deadline, &next_iv);
		siginfo_t si = { 0 };

		if (timeout == -2)
			break;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			stop_sig = read_signal(sfd);
		/* WNOWAIT: a zombie until its last figures are read */
		if (!waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT) && si.si_pid == child) {
			exited = true;
			cm_pf_final(t.pf);
			cm_pf_command_exited(t.pf, child, status_word(&si));
			break;
		}
		cm_pf_tick(t.pf);
	}
	if (exited) {
		struct rusage ru;

		if (wait4(child, &status, 0, &ru) == child)
			cm_pf_command_rusage(t.pf, &ru);
	} else {
		cm_pf_final(t.pf);
	}
	if (pidfd >= 0)
		close(pidfd);

	json_object *exitj = NULL;
	if (exited) {
		exitj = json_object_new_object();
		if (WIFSIGNALED(status)) {
			json_object_object_add(exitj, "signal", json_object_new_int(WTERMSIG(status)));
			json_object_object_add(exitj, "status", json_object_new_int(128 + WTERMSIG(status)));
		} else {
			json_object_object_add(exitj, "status", json_object_new_int(WEXITSTATUS(status)));
		}
	}
	rc = emit(&t, o, wrap_target(o->argv, child, tenv), exitj) ? 1 : 0;
	tier_close(&t);
	if (!exited) {
		/* stopped by a signal: pass it on; stopped by -d: let the command finish */
		if (stop_sig)
			kill(child, stop_sig);
		if (waitpid(child, &status, 0) != child)
			return stop_sig ? 128 + stop_sig : 1;
	}
	if (rc)
		return 1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* tgid of a thread id, and whether the process is this user's (-1: gone). */
static int own_process(pid_t *pid, uid_t *owner)
{
	char path[64], buf[4096];
	unsigned long u[4];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)*pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	if ((p = strstr(buf, "\nTgid:")))
		*pid = (pid_t)strtol(p + 6, NULL, 10);
	p = strstr(buf, "\nUid:");
	if (!p || sscanf(p + 5, "%lu %lu %lu %lu", &u[0], &u[1], &u[2], &u[3]) != 4)
		return -1;
	*owner = (uid_t)u[0];
	if (geteuid() == 0)
		return 1;
	/* what the kernel asks before it shows another process's counters
	 * (ptrace_may_access): every one of its user ids is ours */
	for (int i = 0; i < 4; i++)
		if ((uid_t)u[i] != getuid()) {
			*owner = (uid_t)u[i];
			return 0;
		}
	return 1;
}

int cm_procfs_run_attach(struct cm_run_opts *o)
{
	struct tier t = { 0 };
	uint64_t deadline, next_iv = 0;
	int sfd, stop_sig = 0, rc;
	sigset_t oldmask;

	for (int i = 0; i < o->npids; i++) {
		uid_t owner = 0;
		int own = own_process(&o->pids[i], &owner);

		if (own < 0) {
			cm_err("no such process: %d", o->pids[i]);
			return 1;
		}
		if (!own) {
			cm_err("process %d belongs to another user (uid %u): without root, contactmap "
			       "traces only your own processes", o->pids[i], (unsigned)owner);
			return 1;
		}
	}
	json_object *tenv = cm_target_env(o->pids[0]);

	if (tier_start(&t, o)) {
		json_object_put(tenv);
		return 1;
	}
	sfd = signal_fd(&oldmask);
	t.tr.start_ns = cm_now_ns();
	cm_pf_open_window(t.pf, t.tr.start_ns);
	for (int i = 0; i < o->npids; i++) {
		int err = cm_pf_add_process(t.pf, o->pids[i], true, false, false);

		if (err == -EACCES || err == -EPERM) {
			cm_err("cannot read process %d in /proc: %s (not dumpable?)", o->pids[i], strerror(-err));
			json_object_put(tenv);
			tier_close(&t);
			return 1;
		}
		if (err) {
			cm_err("no such process: %d (it exited before tracing began)", o->pids[i]);
			json_object_put(tenv);
			tier_close(&t);
			return 1;
		}
		cm_pf_perf_follow(t.pf, o->pids[i], false);
	}
	deadline = o->duration > 0 ? t.tr.start_ns + (uint64_t)(o->duration * 1e9) : 0;
	if (!deadline)
		cm_info("tracing %d process(es); Ctrl-C to stop", o->npids);
	while (!stop_sig && cm_pf_live(t.pf)) {
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };
		int timeout = loop_timeout(&t, o, deadline, &next_iv);

		if (timeout == -2)
			break;
		if (poll(&pfd, 1, timeout) > 0 && (pfd.revents & POLLIN))
			stop_sig = read_signal(sfd);
		cm_pf_tick(t.pf);
	}
	cm_pf_final(t.pf);

	json_object *target = json_object_new_object(), *pids = json_object_new_array();

	json_object_object_add(target, "mode", json_object_new_string("attach"));
	for (int i = 0; i < o->npids; i++)
		json_object_array_add(pids, json_object_new_int(o->pids[i]));
	json_object_object_add(target, "pids", pids);
	json_object_object_add(target, "environment", tenv);
	rc = emit(&t, o, target, NULL) ? 1 : 0;
	tier_close(&t);
	return rc;
}
