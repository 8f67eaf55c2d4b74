// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The run loop of wrap and attach mode (session.h). It starts the core tracer,
 * then the subsystems in order (stacks, timeline, GPU, observer cost), and
 * stops, reads and closes them in the reverse order; tracer.c knows none of
 * them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "session.h"
#include "gpu.h"
#include "observer.h"
#include "books.h"
#include "life.h"
#include "critpath.h"
#include "requests.h"
#include "python.h"
#include "contactmap.skel.h"
#include "stacks.h"
#include "pprof.h"
#include "sym.h"
#include "timeline.h"
#include "interval.h"
#include "outfile.h"
#include "sigstate.h"
#include "exporter.h"
#include "cgroup.h"

static int on_stack_event(void *ctx, void *data, size_t len)
{
	struct cm_tracer *tr = ctx;

	cm_python_event(tr->py, data, len);	/* first: a new process may be Python */
	return tr->stacks ? cm_stacks_event(tr->stacks, data, len) : 0;
}

/* One cpu-clock event per CPU, sampling at hz, each running cpu_sample. */
static int start_sampling(struct cm_tracer *tr, unsigned hz)
{
	int ncpu = libbpf_num_possible_cpus();

	if (ncpu <= 0)
		return -1;
	tr->perf_links = calloc(ncpu, sizeof(*tr->perf_links));
	tr->perf_fds = calloc(ncpu, sizeof(*tr->perf_fds));
	if (!tr->perf_links || !tr->perf_fds)
		return -1;
	for (int cpu = 0; cpu < ncpu; cpu++) {
		struct perf_event_attr attr = {
			.size = sizeof(attr), .type = PERF_TYPE_SOFTWARE,
			.config = PERF_COUNT_SW_CPU_CLOCK, .freq = 1, .sample_freq = hz,
		};
		int fd = syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);

		if (fd < 0) {
			if (errno == ENODEV)
				continue;	/* possible but offline */
			cm_err("cannot open a cpu-clock perf event on CPU %d: %s (perf_event_paranoid?)",
			       cpu, strerror(errno));
			return -1;
		}
		tr->perf_fds[tr->nperf] = fd;
		tr->perf_links[tr->nperf] = bpf_program__attach_perf_event(tr->skel->progs.cpu_sample, fd);
		if (!tr->perf_links[tr->nperf]) {
			cm_err("cannot attach the sampling program on CPU %d: %s", cpu, strerror(errno));
			close(fd);
			return -1;
		}
		tr->nperf++;
	}
	return 0;
}

static void stop_sampling(struct cm_tracer *tr)
{
	/* the links own the perf event fds: destroying one closes its fd */
	for (int i = 0; i < tr->nperf; i++)
		bpf_link__destroy(tr->perf_links[i]);
	tr->nperf = 0;
}

static int start_stacks(struct cm_tracer *tr, const struct cm_tracer_opts *o)
{
	tr->min_block_ns = o->offcpu_stacks ? o->min_block_ns : 0;
	tr->sym = cm_sym_new();
	tr->stacks = tr->sym ? cm_stacks_new(tr->sym, bpf_map__fd(tr->skel->maps.stacks)) : NULL;
	if (!tr->stacks) {
		cm_err("out of memory for stacks");
		return -1;
	}
	if (cm_tracer_add_ring(tr, tr->skel->maps.stack_events, on_stack_event, tr)) {
		cm_err("cannot open the stack ring buffer: %s", strerror(errno));
		return -1;
	}
	if (o->sample_hz && start_sampling(tr, o->sample_hz))
		return -1;
	return 0;
}

/* Switch-in records to the histories, markers to the requests. */
static int on_cp_event(void *ctx, void *data, size_t len)
{
	struct cm_tracer *tr = ctx;
	const struct cm_cp_event *e = data;

	if (len < sizeof(*e))
		return 0;
	if (e->type == CM_EV_SWITCH_IN)
		cm_critpath_switch_in(tr->cp, e);
	else if (e->type == CM_EV_REQ_BEGIN || e->type == CM_EV_REQ_END)
		cm_requests_event(tr->requests, e);
	return 0;
}

static void critpath_thread_exit(void *ctx, const struct cm_thread *t)
{
	cm_critpath_thread_end(ctx, t);
}

/* Wake-ups, histories and request markers: the critical path. */
static int start_critpath(struct cm_tracer *tr, const struct cm_tracer_opts *o)
{
	const char *lib;

	tr->cp = cm_critpath_new();
	tr->requests = tr->cp ? cm_requests_new(tr->cp) : NULL;
	if (!tr->requests) {
		cm_err("out of memory for the critical path");
		return -1;
	}
	if (cm_tracer_add_ring(tr, tr->skel->maps.cp_events, on_cp_event, tr)) {
		cm_err("cannot open the switch-in ring buffer: %s", strerror(errno));
		return -1;
	}
	cm_life_on_exit(tr, critpath_thread_exit, tr->cp);
	lib = cm_requests_attach(tr->requests, tr, o->marker_lib);
	if (o->marker_lib && !lib)
		return -1;
	/* commands started here find the library contactmap probes */
	if (lib)
		setenv("CONTACTMAP_MARK_LIB", lib, 0);
	return 0;
}

/* Histories no open request needs go; requests whose histories are in resolve. */
static void poll_critpath(struct cm_tracer *tr)
{
	uint64_t now = cm_now_ns();

	if (!tr->cp)
		return;
	cm_requests_poll(tr->requests, now, false);
	cm_critpath_poll(tr->cp, now, cm_requests_keep_from(tr->requests, now));
}

/* Python (python.c): names frames with the stacks' symbolizer, and reads the
 * maps events from the stack ring buffer, which it opens when stacks are off. */
static int start_python(struct cm_tracer *tr)
{
	tr->py = cm_python_new(bpf_map__fd(tr->skel->maps.py_procs), tr->sym);
	if (!tr->py) {
		cm_err("out of memory for Python support");
		return -1;
	}
	if (tr->stacks)
		cm_stacks_set_python(tr->stacks, tr->py);
	else if (cm_tracer_add_ring(tr, tr->skel->maps.stack_events, on_stack_event, tr)) {
		cm_err("cannot open the stack ring buffer: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int on_slice_event(void *ctx, void *data, size_t len)
{
	return cm_timeline_event(ctx, data, len);
}

/* An ended thread's last sequence number: drops after its last event are
 * marked as a gap on its track. */
static void timeline_thread_exit(void *ctx, const struct cm_thread *t)
{
	cm_timeline_final_seq(ctx, t->pid, t->tid, t->trace_seq, t->end_ns ? t->end_ns : t->exit_ts,
			      t->comm);
}

static void timeline_request(void *ctx, uint32_t pid, uint32_t tid, uint64_t id, uint64_t b,
			     uint64_t e)
{
	cm_timeline_request(ctx, pid, tid, id, b, e);
}

static int start_timeline(struct cm_tracer *tr, const struct cm_run_opts *ro)
{
	const struct cm_tracer_opts *o = &ro->tr;

	tr->timeline = cm_timeline_open(cm_out_fp(ro->trace_out), cm_now_ns(), o->trace_max_bytes);
	if (!tr->timeline)
		return -1;
	if (cm_tracer_add_ring(tr, tr->skel->maps.trace_events, on_slice_event, tr->timeline)) {
		cm_err("cannot open the timeline ring buffer: %s", strerror(errno));
		return -1;
	}
	cm_life_on_exit(tr, timeline_thread_exit, tr->timeline);
	if (tr->requests)
		cm_requests_on_request(tr->requests, timeline_request, tr->timeline);
	return 0;
}

/* Everything off, freed, and nothing half-written left behind. */
static void session_close(struct cm_tracer *tr)
{
	cm_observer_free(tr);
	cm_requests_free(tr->requests);
	tr->requests = NULL;
	cm_critpath_free(tr->cp);
	tr->cp = NULL;
	cm_life_free(tr);
	cm_books_free(tr->books);
	tr->books = NULL;
	stop_sampling(tr);
	free(tr->perf_links);
	free(tr->perf_fds);
	tr->perf_links = NULL;
	tr->perf_fds = NULL;
	cm_timeline_abort(tr->timeline);	/* never finished: its output is dropped */
	tr->timeline = NULL;
	cm_python_free(tr->py);
	tr->py = NULL;
	cm_stacks_free(tr->stacks);
	tr->stacks = NULL;
	cm_sym_free(tr->sym);
	tr->sym = NULL;
	cm_gpu_close(tr);
	cm_tracer_close(tr);
}

/* The core, then each subsystem; any failure undoes the whole start. */
static int session_start(struct cm_tracer *tr, const struct cm_run_opts *ro)
{
	const struct cm_tracer_opts *o = &ro->tr;

	if (cm_tracer_start(tr, o))
		return -1;
	tr->books = cm_books_new(o->keep_threads, o->keep_procs);
	if (!tr->books) {
		cm_err("out of memory");
		goto fail;
	}
	if (cm_life_start(tr, tr->books))
		goto fail;
	if (o->critpath && start_critpath(tr, o))
		goto fail;
	if ((o->sample_hz || o->offcpu_stacks) && start_stacks(tr, o))
		goto fail;
	if (o->python && start_python(tr))
		goto fail;
	if (ro->trace_out && start_timeline(tr, ro))
		goto fail;
	if (cm_gpu_start(tr, o)) {
		cm_err("out of memory setting up GPU tracing");
		goto fail;
	}
	/* last: the sampling thread must not outlive a failed start */
	if (cm_observer_start(tr, o->observer))
		goto fail;
	tr->start_ns = cm_now_ns();
	return 0;
fail:
	session_close(tr);
	return -1;
}

/* Opens the window: stamps start_ns, and sampled statistics start at it. */
static void session_open_window(struct cm_tracer *tr)
{
	tr->start_ns = cm_now_ns();
	/* the timeline's zero is the report's window start */
	cm_timeline_set_base(tr->timeline, tr->start_ns);
	cm_observer_window(tr);
}

static void session_snapshot_free(struct cm_snapshot *s)
{
	cm_gpu_snapshot_free(s);
	cm_snapshot_free(s);
}

/* Everything the programs and the subsystems hold, as of tr->end_ns. */
static int session_read(struct cm_tracer *tr, struct cm_snapshot *s)
{
	if (cm_tracer_read(tr, s))
		return -1;
	cm_observer_read(tr, s);
	if (cm_gpu_read(tr, s)) {
		cm_err("out of memory reading the GPU maps");
		session_snapshot_free(s);
		return -1;
	}
	return 0;
}

/* Reads while tracing goes on (an interval line): the exit records that
 * wait in the ring first, as their threads are no longer in the map. */
static int session_peek(struct cm_tracer *tr, struct cm_snapshot *s)
{
	cm_tracer_consume(tr);
	tr->end_ns = cm_now_ns();
	return session_read(tr, s);
}

/* Detaches everything, stamps end_ns and reads the final figures. */
static int session_stop(struct cm_tracer *tr, struct cm_snapshot *s)
{
	stop_sampling(tr);
	cm_gpu_detach(tr);
	if (tr->requests)
		cm_requests_detach(tr->requests);
	cm_tracer_detach(tr);
	/* statistics off before the counters are read: nothing runs any more */
	cm_observer_stop(tr);
	/* what the programs wrote before they were detached */
	cm_tracer_consume(tr);
	cm_life_final(tr);
	if (session_read(tr, s))
		return -1;
	/* every history ends here: the requests still waiting resolve */
	if (tr->cp) {
		cm_critpath_finish(tr->cp, s->threads, s->nthreads, tr->end_ns);
		cm_requests_poll(tr->requests, tr->end_ns, true);
	}
	return 0;
}

/* Resolves COMMAND as execvp would, so a typo fails before anything loads. */
int cm_resolve_command(const char *cmd, char *out, size_t sz)
{
	const char *path = getenv("PATH");
	struct stat st;

	if (strchr(cmd, '/')) {
		if (stat(cmd, &st)) {
			cm_err("command not found: %s (%s)", cmd, strerror(errno));
			return 127;
		}
		if (!S_ISREG(st.st_mode) || access(cmd, X_OK)) {
			cm_err("not an executable file: %s", cmd);
			return 126;
		}
		snprintf(out, sz, "%s", cmd);
		return 0;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		const char *colon = strchrnul(p, ':');
		int n = (int)(colon - p);

		snprintf(out, sz, "%.*s%s%s", n, p, n ? "/" : "", cmd);
		if (!stat(out, &st) && S_ISREG(st.st_mode) && !access(out, X_OK))
			return 0;
		p = *colon ? colon + 1 : colon;
	}
	cm_err("command not found: %s (not in PATH)", cmd);
	return 127;
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

/* A cumulative report as of now, without the costly parts; NULL on error. */
static json_object *peek_report(struct cm_tracer *tr, json_object *target)
{
	struct cm_tracer view = *tr;
	struct cm_snapshot snap;
	json_object *r;

	view.stacks = NULL;
	view.timeline = NULL;
	if (session_peek(&view, &snap)) {
		json_object_put(target);
		return NULL;
	}
	r = cm_build_report(&view, &snap, target, NULL);
	session_snapshot_free(&snap);
	return r;
}

/* --serve: /metrics from a report of every second (at most a second old). */
static int serve_due(struct cm_tracer *tr, struct cm_run_opts *o, const char *mode, uint64_t *next)
{
	uint64_t now = cm_now_ns();

	if (!o->exp)
		return -1;
	if (now >= *next) {
		json_object *target = json_object_new_object();
		json_object *r;

		json_object_object_add(target, "mode", json_object_new_string(mode));
		r = peek_report(tr, target);
		if (r)
			cm_exporter_publish(o->exp, r);
		json_object_put(r);
		*next = now + 1000000000ULL;
	}
	return (int)((*next - now) / 1000000) + 1;
}

/* One interval line: a cumulative report as of now, without the costly parts. */
static void interval_tick(struct cm_tracer *tr, struct cm_run_opts *o)
{
	json_object *r = peek_report(tr, NULL);

	if (!r)
		return;
	cm_interval_emit(o->iv, r);	/* a failure is said once, and fails the run at the end */
	json_object_put(r);
}

/* Milliseconds to the next interval tick (or -1), ticking when due. */
static int interval_due(struct cm_tracer *tr, struct cm_run_opts *o, uint64_t *next)
{
	uint64_t now = cm_now_ns();

	if (!o->iv)
		return -1;
	if (!*next)
		*next = tr->start_ns + (uint64_t)(o->interval * 1e9);
	if (now >= *next) {
		interval_tick(tr, o);
		while (*next <= now)
			*next += (uint64_t)(o->interval * 1e9);
	}
	return (int)((*next - now) / 1000000) + 1;
}

/* Writes every output; each one committed (or dropped) and cleared in o. */
static int emit(struct cm_tracer *tr, struct cm_run_opts *o, json_object *target,
		json_object *exitj)
{
	struct cm_snapshot snap;
	json_object *report;
	int rc;

	if (session_stop(tr, &snap)) {
		json_object_put(target);
		json_object_put(exitj);
		return -1;
	}
	report = cm_build_report(tr, &snap, target, exitj);
	rc = cm_run_emit_report(o, report);
	for (size_t i = 0; tr->timeline && i < snap.nthreads; i++) {
		const struct cm_thread *t = &snap.threads[i];

		cm_timeline_final_seq(tr->timeline, t->pid, t->tid, t->trace_seq,
				      t->end_ns ? t->end_ns : tr->end_ns, NULL);
	}
	if (tr->timeline) {
		cm_timeline_close(tr->timeline, report,
				  snap.counters.trace_ringbuf_full + snap.counters.trace_rate_limited);
		tr->timeline = NULL;
		rc |= cm_run_settle(&o->trace_out, 0);
	}
	session_snapshot_free(&snap);
	if (o->folded_out)
		rc |= cm_run_settle(&o->folded_out, !tr->stacks ||
			cm_stacks_write_folded(tr->stacks, cm_out_fp(o->folded_out),
					       o->fold_which | (o->fold_pid ? CM_FOLD_PID : 0)));
	if (o->pprof_out)
		rc |= cm_run_settle(&o->pprof_out, !tr->stacks ||
			cm_pprof_write(tr->stacks, cm_out_fp(o->pprof_out), &(struct cm_pprof_info){
				.sample_hz = o->tr.sample_hz, .start_ns = tr->start_ns,
				.duration_ns = tr->end_ns - tr->start_ns,
				.min_block_ns = tr->min_block_ns, .which = o->fold_which }));
	rc |= cm_run_emit_text(o, report);
	json_object_put(report);
	return rc ? -1 : 0;
}

/* Waits (briefly) until the held child sleeps on the go pipe, so it is seeded
 * in a known state rather than as "runnable since before tracing". */
static void wait_blocked(pid_t child)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	for (int i = 0; i < 2000; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return;
		buf[n] = 0;
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'S')
			return;
		usleep(100);
	}
}

/* "SIGINT" for SIGINT, in a static buffer. */
static const char *sig_name(int sig)
{
	static char buf[32];
	const char *abbr = sigabbrev_np(sig);

	if (abbr)
		snprintf(buf, sizeof(buf), "SIG%s", abbr);
	else
		snprintf(buf, sizeof(buf), "signal %d", sig);
	return buf;
}

/* A stop signal for a wrapped command: passed on to it, unless it came from
 * the terminal to the process group the command shares with contactmap
 * (then the command has it already, and a second one could interrupt its
 * own handling of the first). */
static void pass_on(pid_t child, const struct signalfd_siginfo *si)
{
	if (si->ssi_code == SI_KERNEL && getpgid(child) == getpgrp())
		return;
	kill(child, (int)si->ssi_signo);
}

/* The signal read from sfd, or 0. */
static int read_signal(int sfd, struct signalfd_siginfo *si)
{
	return read(sfd, si, sizeof(*si)) == sizeof(*si) ? (int)si->ssi_signo : 0;
}

/* After the report, a command still running (-d ended the window) is waited
 * for; a signal is passed on to it, a second one leaves it running. Its
 * exit status, or 128+signal when it was left. */
static int wait_command(pid_t child, int sfd, int pidfd, bool *left, int *status)
{
	int nsig = 0;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
		struct signalfd_siginfo si;
		int sig;

		if (waitpid(child, status, WNOHANG) == child)
			return 0;
		/* without a pidfd, poll for the exit */
		if (poll(pfd, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 100) < 0 && errno != EINTR)
			return -1;
		if (!(pfd[0].revents & POLLIN) || !(sig = read_signal(sfd, &si)))
			continue;
		if (++nsig == 1) {
			pass_on(child, &si);
			continue;
		}
		*left = true;
		return sig;
	}
}

/* Builds the report's target and exit objects and writes the outputs. */
static int emit_wrap(struct cm_tracer *tr, struct cm_run_opts *o, pid_t child, json_object *tenv,
		     bool exited, int status)
{
	json_object *target = json_object_new_object(), *argvj = json_object_new_array();
	json_object *exitj = NULL;

	json_object_object_add(target, "mode", json_object_new_string("wrap"));
	for (char **a = o->argv; *a; a++) {
		char clean[4096];

		cm_sanitize_comm(*a, strnlen(*a, 1000), clean, sizeof(clean));
		json_object_array_add(argvj, json_object_new_string(clean));
	}
	json_object_object_add(target, "command", argvj);
	json_object_object_add(target, "pid", json_object_new_int(child));
	json_object_object_add(target, "environment", tenv);
	if (exited) {
		exitj = json_object_new_object();
		if (WIFSIGNALED(status)) {
			json_object_object_add(exitj, "signal", json_object_new_int(WTERMSIG(status)));
			json_object_object_add(exitj, "status", json_object_new_int(128 + WTERMSIG(status)));
		} else {
			json_object_object_add(exitj, "status", json_object_new_int(WEXITSTATUS(status)));
		}
	}
	return emit(tr, o, target, exitj);
}

int cm_run_wrap(struct cm_run_opts *o)
{
	struct cm_tracer tr = { 0 };
	char exe[PATH_MAX];
	int go[2], errp[2], sfd, rc, status = 0, child_errno = 0;
	bool exited = false, left = false;
	sigset_t oldmask;
	pid_t child;

	rc = cm_resolve_command(o->argv[0], exe, sizeof(exe));
	if (rc)
		return rc;
	if (session_start(&tr, o))
		return 1;
	if (cm_gpu_wrap_prepare(&tr)) {
		cm_err("out of memory setting up GPU tracing");
		session_close(&tr);
		return 1;
	}
	if (pipe2(go, O_CLOEXEC)) {
		cm_err("pipe: %s", strerror(errno));
		session_close(&tr);
		return 1;
	}
	if (pipe2(errp, O_CLOEXEC)) {
		cm_err("pipe: %s", strerror(errno));
		close(go[0]);
		close(go[1]);
		session_close(&tr);
		return 1;
	}
	sfd = signal_fd(&oldmask);
	child = fork();
	if (child < 0) {
		cm_err("fork: %s", strerror(errno));
		session_close(&tr);
		return 1;
	}
	if (child == 0) {
		char c;

		/* the mask and ignored signals contactmap was given, not its own */
		cm_sig_restore();
		cm_gpu_child_env(&tr);
		close(go[1]);
		close(errp[0]);
		/* wait until every program is attached and this task is traced */
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
	wait_blocked(child);
	/* the window opens before the first thread is seeded, so every thread's
	 * start lies inside it */
	session_open_window(&tr);
	if (tr.cp)
		cm_critpath_set_main(tr.cp, (uint32_t)child);
	if (cm_tracer_seed_process(&tr, child, true))
		cm_warn("could not register the command's process %d", child);
	/* before exec: the environment and cgroup that exec keeps */
	json_object *tenv = cm_target_env(child);
	if (write(go[1], "g", 1) != 1) {
		cm_err("could not start the command: %s", strerror(errno));
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		json_object_put(tenv);
		session_close(&tr);
		return 1;
	}
	close(go[1]);
	if (read(errp[0], &child_errno, sizeof(child_errno)) == sizeof(child_errno)) {
		waitpid(child, NULL, 0);
		cm_err("cannot run %s: %s", o->argv[0], strerror(child_errno));
		json_object_put(tenv);
		session_close(&tr);
		return 127;
	}
	close(errp[0]);

	int pidfd = syscall(SYS_pidfd_open, child, 0);
	uint64_t deadline = o->duration > 0 ? cm_now_ns() + (uint64_t)(o->duration * 1e9) : 0;
	uint64_t next_tick = 0, next_pub = 0;
	int nsig = 0, stop_sig = 0;

	int gpufd = cm_gpu_poll_fd(&tr);

	while (!exited && !stop_sig) {
		/* the GPU ring buffer: an agent that cannot use CUPTI waits for its
		 * uprobes, so it is served as soon as it asks */
		struct pollfd pfd[4] = { { .fd = sfd, .events = POLLIN }, { .fd = gpufd, .events = POLLIN },
					 { .fd = pidfd, .events = POLLIN },
					 { .fd = cm_tracer_event_fd(&tr), .events = POLLIN } };
		int timeout = -1;

		if (deadline) {
			uint64_t now = cm_now_ns();

			if (now >= deadline)
				break;
			timeout = (int)((deadline - now) / 1000000) + 1;
		}
		if (pidfd < 0 && (timeout < 0 || timeout > 100))
			timeout = 100;	/* no pidfd: poll for the exit */
		int tick = interval_due(&tr, o, &next_tick);
		if (tick >= 0 && (timeout < 0 || tick < timeout))
			timeout = tick;
		tick = serve_due(&tr, o, "wrap", &next_pub);
		if (tick >= 0 && (timeout < 0 || tick < timeout))
			timeout = tick;
		int rb_ms = cm_tracer_poll_ms(&tr);
		if (rb_ms >= 0 && (timeout < 0 || rb_ms < timeout))
			timeout = rb_ms;
		if (pidfd < 0)
			pfd[2].fd = -1;	/* poll ignores negative fds */
		if (poll(pfd, 4, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			cm_gpu_poll(&tr);
		cm_tracer_consume(&tr);	/* readable or not: see cm_tracer_poll_ms */
		cm_python_poll(tr.py);
		cm_life_sweep(&tr);
		poll_critpath(&tr);
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			int sig = read_signal(sfd, &si);

			/* the first is the command's to handle, and its way out is
			 * traced; the second stops tracing, whatever the command does */
			if (sig && ++nsig == 1) {
				pass_on(child, &si);
				if (isatty(STDERR_FILENO))
					cm_warn("%s passed on to the command; again to stop tracing and "
						"leave it running", sig_name(sig));
			} else if (sig) {
				stop_sig = sig;
			}
		}
		if (waitpid(child, &status, WNOHANG) == child)
			exited = true;
	}

	rc = emit_wrap(&tr, o, child, tenv, exited, status) ? 1 : 0;
	session_close(&tr);

	int sig = stop_sig;
	if (!exited && !stop_sig)	/* -d ended the window: the command goes on */
		sig = wait_command(child, sfd, pidfd, &left, &status);
	else
		left = !exited;
	if (pidfd >= 0)
		close(pidfd);
	if (left) {
		cm_warn("the command (pid %d) is still running: it did not exit on %s, and "
			"contactmap leaves it running", child, sig_name(sig));
		return rc ? 1 : 128 + sig;
	}
	if (rc)
		return 1;
	if (sig < 0)
		return 1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static pid_t tgid_of(pid_t pid)
{
	char path[64], line[128];
	pid_t tgid = pid;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	fp = fopen(path, "re");
	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	if (fp)
		fclose(fp);
	return tgid;
}

int cm_run_attach(struct cm_run_opts *o)
{
	struct cm_tracer tr = { 0 };
	uint64_t deadline;
	int sfd, stop_sig = 0;
	sigset_t oldmask;

	for (int i = 0; i < o->npids; i++) {
		if (kill(o->pids[i], 0) && errno == ESRCH) {
			cm_err("no such process: %d", o->pids[i]);
			return 1;
		}
		/* a thread id means its whole process */
		o->pids[i] = tgid_of(o->pids[i]);
		if (cm_check_attach_target(o->pids[i]))
			return 1;
	}
	/* while the target certainly lives: an exited one's environ is empty */
	json_object *tenv = o->npids ? cm_target_env(o->pids[0]) : NULL;
	pid_t *cg_pids = NULL;
	int ncg = 0;

	if (session_start(&tr, o)) {
		json_object_put(tenv);
		return 1;
	}
	sfd = signal_fd(&oldmask);
	session_open_window(&tr);
	for (int i = 0; i < o->npids; i++) {
		if (cm_tracer_seed_process(&tr, o->pids[i], false)) {
			cm_err("no such process: %d (it exited before tracing began)", o->pids[i]);
			session_close(&tr);
			return 1;
		}
	}
	if (o->cgroup_path && cm_cgroup_start(&tr, o->cgroup_path, &cg_pids, &ncg)) {
		json_object_put(tenv);
		session_close(&tr);
		return 1;
	}
	if (!tenv)
		tenv = ncg ? cm_target_env(cg_pids[0]) : json_object_new_object();
	for (int i = 0; i < o->npids; i++) {
		cm_gpu_watch_pid(&tr, o->pids[i]);
		/* a running interpreter is described now (a new one at its exec) */
		cm_python_add_process(tr.py, o->pids[i]);
	}
	for (int i = 0; i < ncg; i++) {
		cm_gpu_watch_pid(&tr, cg_pids[i]);
		cm_python_add_process(tr.py, cg_pids[i]);
	}
	deadline = o->duration > 0 ? tr.start_ns + (uint64_t)(o->duration * 1e9) : 0;
	uint64_t next_tick = 0, next_pub = 0;
	if (!deadline)
		cm_info("tracing %d process(es); Ctrl-C to stop", o->npids + ncg);
	while (!stop_sig) {
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN },
					 { .fd = cm_tracer_event_fd(&tr), .events = POLLIN } };
		uint64_t now = cm_now_ns();
		int timeout = 100;

		/* a server keeps serving what its targets did after they are gone */
		if (!o->exp && !o->cgroup_path && cm_tracer_live_threads(&tr) <= 0)
			break;
		if (deadline) {
			if (now >= deadline)
				break;
			if ((deadline - now) / 1000000 < 100)
				timeout = (int)((deadline - now) / 1000000) + 1;
		}
		int tick = interval_due(&tr, o, &next_tick);
		if (tick >= 0 && tick < timeout)
			timeout = tick;
		tick = serve_due(&tr, o, o->cgroup_path ? "cgroup" : "attach", &next_pub);
		if (tick >= 0 && tick < timeout)
			timeout = tick;
		if (cm_tracer_poll_ms(&tr) >= 0 && cm_tracer_poll_ms(&tr) < timeout)
			timeout = cm_tracer_poll_ms(&tr);
		if (poll(pfd, 2, timeout) > 0 && (pfd[0].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				stop_sig = si.ssi_signo;
		}
		cm_tracer_consume(&tr);	/* readable or not: see cm_tracer_poll_ms */
		cm_python_poll(tr.py);
		cm_life_sweep(&tr);
		poll_critpath(&tr);
		cm_gpu_poll(&tr);
	}

	json_object *target = json_object_new_object(), *pids = json_object_new_array();

	json_object_object_add(target, "mode", json_object_new_string(o->cgroup_path ? "cgroup" : "attach"));
	for (int i = 0; i < o->npids; i++)
		json_object_array_add(pids, json_object_new_int(o->pids[i]));
	/* the cgroup's processes at the start; those that joined are in processes */
	for (int i = 0; i < ncg; i++)
		json_object_array_add(pids, json_object_new_int(cg_pids[i]));
	free(cg_pids);
	json_object_object_add(target, "pids", pids);
	if (o->cgroup_path)
		json_object_object_add(target, "cgroup", json_object_new_string(o->cgroup_path));
	json_object_object_add(target, "environment", tenv);
	int rc = emit(&tr, o, target, NULL) ? 1 : 0;

	session_close(&tr);
	return rc;
}

