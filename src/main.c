// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* contactmap: where a program's wall time goes, across the operating system. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "cm.h"
#include "tracer.h"
#include "stacks.h"
#include "timeline.h"
#include "interval.h"

struct opts {
	const char *json_path;
	const char *folded_path;
	int fold_which;		/* CM_FOLD_* for -f */
	bool fold_pid;		/* --fold-pid */
	double interval;	/* -i seconds */
	const char *jsonl_path;
	struct cm_interval *iv;

	double duration;
	bool threads;
	pid_t *pids;
	int npids;
	char **argv;		/* wrap mode command */
	struct cm_tracer_opts tr;
};

static const char usage[] =
"Usage: contactmap [OPTIONS] -- COMMAND [ARG...]   trace COMMAND and what it starts\n"
"       contactmap [OPTIONS] -p PID[,PID...]       attach to running processes\n"
"       contactmap report [-t] REPORT.json         print a saved report\n"
"       contactmap diff BEFORE.json... [--] AFTER.json...  compare reports\n"
"       contactmap check                           kernel features and fallbacks\n"
"\n"
"Where does a program's wall time go? contactmap prints a ledger per process and\n"
"thread (on-CPU, run-queue wait, blocked time by cause) and the OS contact map.\n"
"\n"
"Options:\n"
"  -o, --json FILE        write the JSON report (contactmap/1) to FILE ('-' = stdout)\n"
"  -f, --folded FILE      write folded stacks, on-CPU and off-CPU in one file\n"
"  -F, --freq HZ          on-CPU samples per second with stacks (default 99)\n"
"      --stacks WHICH     collect stacks: oncpu, offcpu or both (implied by -f)\n"
"      --min-block USEC   off-CPU stacks only for blocks this long (default 200)\n"
"      --fold-pid         root each folded stack at comm-PID, not comm\n"
"      --no-python        no Python frames in stacks and no 'gil' cause\n"
"  -i, --interval SECS    a JSON line per interval (JSONL) to --jsonl FILE\n"
"      --jsonl FILE       where -i writes ('-' = stdout, the default when attaching)\n"
"      --trace FILE       timeline in Chrome Trace Event JSON (Perfetto, chrome://tracing)\n"
"      --trace-syscall-min USEC  syscalls on the timeline from this long (default 100)\n"
"      --trace-rate N     timeline events per second per CPU at most (default 100000)\n"
"      --trace-max-mb MB  cap the timeline file (default 256)\n"
"  -d, --duration SECS    stop tracing after SECS seconds\n"
"  -p, --pid PID[,PID]    attach to these processes (all threads, and children)\n"
"  -t, --threads          per-thread rows in the text map\n"
"      --observer-cost MODE  contactmap's own cost, from BPF run-time statistics\n"
"                         (two clock reads per BPF program run on every CPU while\n"
"                         on): sampled (default: on 50 ms of every second;\n"
"                         estimated), full, or off\n"
"      --no-observer-cost the same as --observer-cost off\n"
"      --max-threads N    traced-thread map size (default 4096)\n"
"      --attach-type T    force tp_btf or raw_tp (default: best available)\n"
"      --block-claim insert_issue  claim block requests at insert/issue, as\n"
"                         on kernels before 6.5 (default: block_io_start)\n"
"      --gpu MODE         CUDA work: auto (default: CUPTI agent when wrapping,\n"
"                         uprobes when attaching), cupti, uprobes, or off\n"
"  -v, --verbose          more messages; -vv adds libbpf's log\n"
"  -h, --help             this help\n"
"  -V, --version          print the version\n"
"\n"
"Examples:\n"
"  contactmap -- python3 infer.py          # wrap a command and its children\n"
"  contactmap -o run.json -- make -j2      # also save the JSON report\n"
"  contactmap -p 4242 -d 10                # attach to a running process for 10 s\n"
"\n"
"Needs root (or CAP_BPF+CAP_PERFMON) and a kernel with BTF.\n";

static void bad_usage(const char *fmt, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg);
	cm_err("%s (see contactmap --help)", msg);
	exit(2);
}

/* arg's index among the NULL-terminated words; else the usage error `fmt`
 * (which names them) and exit 2. */
static int keyword(const char *arg, const char *const *words, const char *fmt)
{
	for (int i = 0; words[i]; i++)
		if (!strcmp(arg, words[i]))
			return i;
	bad_usage(fmt, arg);
	return -1;
}

static int parse_pids(const char *s, struct opts *o)
{
	char *copy = strdup(s), *save = NULL, *tok;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		long v;

		errno = 0;
		v = strtol(tok, &end, 10);
		if (errno || *end || end == tok || v <= 0 || v > INT_MAX) {
			free(copy);
			return -1;
		}
		o->pids = realloc(o->pids, (o->npids + 1) * sizeof(*o->pids));
		o->pids[o->npids++] = (pid_t)v;
	}
	free(copy);
	return o->npids ? 0 : -1;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { OPT_MAX_THREADS = 256, OPT_ATTACH_TYPE, OPT_STACKS, OPT_MIN_BLOCK, OPT_TRACE,
	       OPT_TRACE_SYS_MIN, OPT_TRACE_RATE, OPT_TRACE_MAX_MB, OPT_JSONL,
	       OPT_GPU, OPT_OBSERVER, OPT_NO_OBSERVER, OPT_BLOCK_CLAIM,
	       OPT_FOLD_PID, OPT_NO_PYTHON };
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'o' },
		{ "folded", required_argument, NULL, 'f' },
		{ "duration", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "threads", no_argument, NULL, 't' },
		{ "max-threads", required_argument, NULL, OPT_MAX_THREADS },
		{ "attach-type", required_argument, NULL, OPT_ATTACH_TYPE },
		{ "block-claim", required_argument, NULL, OPT_BLOCK_CLAIM },
		{ "freq", required_argument, NULL, 'F' },
		{ "stacks", required_argument, NULL, OPT_STACKS },
		{ "min-block", required_argument, NULL, OPT_MIN_BLOCK },
		{ "trace", required_argument, NULL, OPT_TRACE },
		{ "interval", required_argument, NULL, 'i' },
		{ "jsonl", required_argument, NULL, OPT_JSONL },
		{ "trace-syscall-min", required_argument, NULL, OPT_TRACE_SYS_MIN },
		{ "trace-rate", required_argument, NULL, OPT_TRACE_RATE },
		{ "trace-max-mb", required_argument, NULL, OPT_TRACE_MAX_MB },
		{ "gpu", required_argument, NULL, OPT_GPU },
		{ "observer-cost", required_argument, NULL, OPT_OBSERVER },
		{ "no-observer-cost", no_argument, NULL, OPT_NO_OBSERVER },
		{ "fold-pid", no_argument, NULL, OPT_FOLD_PID },
		{ "no-python", no_argument, NULL, OPT_NO_PYTHON },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	char *end;
	int c;

	opterr = 0;
	/* '+': stop at the command's name, so its own options stay its own */
	while ((c = getopt_long(argc, argv, "+:o:f:F:d:i:p:tvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->json_path = optarg;
			break;
		case 'f':
			o->folded_path = optarg;
			break;
		case 'd':
			errno = 0;
			o->duration = strtod(optarg, &end);
			if (errno || *end || end == optarg || o->duration <= 0 || o->duration > 1e7)
				bad_usage("bad duration '%s': give seconds, e.g. -d 10", optarg);
			break;
		case 'p':
			if (parse_pids(optarg, o))
				bad_usage("bad pid list '%s': give PID[,PID...]", optarg);
			break;
		case 't':
			o->threads = true;
			break;
		case 'F':
			o->tr.sample_hz = strtoul(optarg, &end, 10);
			if (*end || end == optarg || o->tr.sample_hz < 1 || o->tr.sample_hz > 10000)
				bad_usage("bad frequency '%s': 1 to 10000 Hz", optarg);
			break;
		case OPT_STACKS:
		{
			static const unsigned which[] = { CM_FOLD_ONCPU, CM_FOLD_OFFCPU,
							   CM_FOLD_ONCPU | CM_FOLD_OFFCPU };

			o->fold_which = which[keyword(optarg, (const char *const[]){ "oncpu", "offcpu", "both", NULL },
						      "bad --stacks '%s': oncpu, offcpu or both")];
			break;
		}
		case OPT_OBSERVER:
		{
			static const enum cm_observer_mode mode[] = { CM_OBS_SAMPLED, CM_OBS_FULL, CM_OBS_OFF };

			o->tr.observer = mode[keyword(optarg, (const char *const[]){ "sampled", "full", "off", NULL },
						      "bad --observer-cost '%s': sampled, full or off")];
			break;
		}
		case OPT_NO_OBSERVER:
			o->tr.observer = CM_OBS_OFF;
			break;
		case OPT_FOLD_PID:
			o->fold_pid = true;
			break;
		case OPT_NO_PYTHON:
			o->tr.python = false;
			break;
		case 'i':
			errno = 0;
			o->interval = strtod(optarg, &end);
			if (errno || *end || end == optarg || o->interval < 0.01 || o->interval > 1e6)
				bad_usage("bad interval '%s': seconds, at least 0.01", optarg);
			break;
		case OPT_JSONL:
			o->jsonl_path = optarg;
			break;
		case OPT_TRACE:
			o->tr.trace_path = optarg;
			break;
		case OPT_TRACE_SYS_MIN:
			o->tr.trace_sys_min_ns = strtoull(optarg, &end, 10) * 1000;
			if (*end || end == optarg)
				bad_usage("bad --trace-syscall-min '%s': microseconds", optarg);
			break;
		case OPT_TRACE_RATE:
			o->tr.trace_max_per_sec = strtoull(optarg, &end, 10);
			if (*end || end == optarg || !o->tr.trace_max_per_sec)
				bad_usage("bad --trace-rate '%s': events per second per CPU", optarg);
			break;
		case OPT_TRACE_MAX_MB:
			o->tr.trace_max_bytes = strtoull(optarg, &end, 10) << 20;
			if (*end || end == optarg || !o->tr.trace_max_bytes)
				bad_usage("bad --trace-max-mb '%s': megabytes", optarg);
			break;
		case OPT_MIN_BLOCK:
			o->tr.min_block_ns = strtoull(optarg, &end, 10) * 1000;
			if (*end || end == optarg)
				bad_usage("bad --min-block '%s': microseconds", optarg);
			break;
		case OPT_MAX_THREADS:
			o->tr.max_threads = strtoul(optarg, &end, 10);
			if (*end || o->tr.max_threads < 16 || o->tr.max_threads > (1U << 22))
				bad_usage("bad --max-threads '%s': 16 to 4194304", optarg);
			break;
		case OPT_ATTACH_TYPE:
			keyword(optarg, (const char *const[]){ "tp_btf", "raw_tp", NULL },
				"bad --attach-type '%s': tp_btf or raw_tp");
			o->tr.force_attach = optarg;
			break;
		case OPT_BLOCK_CLAIM:
			keyword(optarg, (const char *const[]){ "insert_issue", NULL },
				"bad --block-claim '%s': insert_issue");
			o->tr.block_claim_insert = true;
			break;
		case OPT_GPU:
		{
			static const enum cm_gpu_mode mode[] = { CM_GPU_AUTO, CM_GPU_CUPTI, CM_GPU_UPROBES,
								 CM_GPU_OFF };

			o->tr.gpu_mode = mode[keyword(optarg,
						      (const char *const[]){ "auto", "cupti", "uprobes", "off", NULL },
						      "bad --gpu '%s': auto, cupti, uprobes or off")];
			break;
		}
		case 'v':
			cm_verbose++;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case 'V':
			printf("contactmap %s\n", CM_VERSION);
			exit(0);
		case ':':
			bad_usage("option '%s' needs a value", argv[optind - 1]);
			break;
		default:
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		o->argv = &argv[optind];
	if (o->argv && o->npids)
		bad_usage("%s", "give either -p PID or -- COMMAND, not both");
	if (!o->argv && !o->npids)
		bad_usage("%s", "nothing to trace: give -- COMMAND or -p PID");
	if (o->interval && !o->jsonl_path) {
		if (o->argv)
			bad_usage("%s", "-i with a command needs --jsonl FILE: stdout is the command's");
		o->jsonl_path = "-";
	}
	if (o->jsonl_path && !o->interval)
		bad_usage("%s", "--jsonl needs -i SECONDS");
	if (o->folded_path && !o->fold_which)
		o->fold_which = CM_FOLD_ONCPU | CM_FOLD_OFFCPU;
	if (o->fold_which & CM_FOLD_ONCPU) {
		if (!o->tr.sample_hz)
			o->tr.sample_hz = 99;
	} else {
		o->tr.sample_hz = 0;
	}
	o->tr.offcpu_stacks = (o->fold_which & CM_FOLD_OFFCPU) != 0;
}

static int check_privileges(void)
{
	unsigned long long eff = 0;
	char line[256];
	FILE *fp;

	if (geteuid() == 0)
		return 0;
	fp = fopen("/proc/self/status", "re");
	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (fp)
		fclose(fp);
	/* CAP_SYS_ADMIN = 21, CAP_PERFMON = 38, CAP_BPF = 39 */
	if ((eff & (1ULL << 21)) || ((eff & (1ULL << 38)) && (eff & (1ULL << 39))))
		return 0;
	cm_err("needs root or CAP_BPF+CAP_PERFMON: run it with sudo");
	return -1;
}

/* Resolves COMMAND as execvp would, so a typo fails before anything loads. */
static int resolve_command(const char *cmd, char *out, size_t sz)
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

/* Emits the text map and the JSON report. */
/* One interval line: a cumulative report as of now, without the costly parts. */
static void interval_tick(struct cm_tracer *tr, struct opts *o)
{
	struct cm_tracer view = *tr;
	struct cm_snapshot snap;
	json_object *r;

	view.stacks = NULL;
	view.timeline = NULL;
	if (cm_tracer_peek(&view, &snap))
		return;
	r = cm_build_report(&view, &snap, NULL, NULL);
	cm_snapshot_free(&snap);
	if (cm_interval_emit(o->iv, r))
		cm_warn("could not write an interval line: %s", strerror(errno));
	json_object_put(r);
}

/* Milliseconds to the next interval tick (or -1), ticking when due. */
static int interval_due(struct cm_tracer *tr, struct opts *o, uint64_t *next)
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

static int emit(struct cm_tracer *tr, const struct opts *o, json_object *target,
		json_object *exitj, bool text_to_stderr)
{
	struct cm_render_opts ro = { .threads = o->threads, .width = 80 };
	struct cm_snapshot snap;
	json_object *report;
	int rc = 0;

	if (cm_tracer_stop(tr, &snap)) {
		json_object_put(target);
		json_object_put(exitj);
		return -1;
	}
	report = cm_build_report(tr, &snap, target, exitj);
	if (o->iv && cm_interval_emit(o->iv, report))
		rc = -1;
	for (size_t i = 0; tr->timeline && i < snap.nthreads; i++) {
		const struct cm_thread *t = &snap.threads[i];

		cm_timeline_final_seq(tr->timeline, t->pid, t->tid, t->trace_seq,
				      t->end_ns ? t->end_ns : tr->end_ns);
	}
	if (tr->timeline &&
	    cm_timeline_close(tr->timeline, report,
			      snap.counters.trace_ringbuf_full + snap.counters.trace_rate_limited))
		rc = -1;
	tr->timeline = NULL;
	cm_snapshot_free(&snap);
	if (o->json_path && cm_write_json(report, o->json_path))
		rc = -1;
	if (o->folded_path && tr->stacks &&
	    cm_stacks_write_folded(tr->stacks, o->folded_path, o->fold_which | (o->fold_pid ? CM_FOLD_PID : 0)))
		rc = -1;
	if (cm_render_text(report, &ro, text_to_stderr || (o->json_path && !strcmp(o->json_path, "-"))
					     ? stderr : stdout))
		rc = -1;
	json_object_put(report);
	return rc;
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

static int run_wrap(struct opts *o)
{
	struct cm_tracer tr = { 0 };
	char exe[PATH_MAX];
	int go[2], errp[2], sfd, rc, status = 0, child_errno = 0;
	bool exited = false;
	sigset_t oldmask;
	pid_t child;

	rc = resolve_command(o->argv[0], exe, sizeof(exe));
	if (rc)
		return rc;
	if (cm_tracer_start(&tr, &o->tr))
		return 1;
	if (cm_gpu_wrap_prepare(&tr)) {
		cm_err("out of memory setting up GPU tracing");
		return 1;
	}
	if (pipe2(go, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
		cm_err("pipe: %s", strerror(errno));
		return 1;
	}
	sfd = signal_fd(&oldmask);
	child = fork();
	if (child < 0) {
		cm_err("fork: %s", strerror(errno));
		return 1;
	}
	if (child == 0) {
		char c;

		sigprocmask(SIG_SETMASK, &oldmask, NULL);
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
	cm_tracer_open_window(&tr);
	if (cm_tracer_seed_process(&tr, child, true))
		cm_warn("could not register the command's process %d", child);
	/* before exec: the environment and cgroup that exec keeps */
	json_object *tenv = cm_target_env(child);
	if (write(go[1], "g", 1) != 1) {
		cm_err("could not start the command: %s", strerror(errno));
		kill(child, SIGKILL);
		return 1;
	}
	close(go[1]);
	if (read(errp[0], &child_errno, sizeof(child_errno)) == sizeof(child_errno)) {
		waitpid(child, NULL, 0);
		cm_err("cannot run %s: %s", o->argv[0], strerror(child_errno));
		cm_tracer_close(&tr);
		return 127;
	}
	close(errp[0]);

	int pidfd = syscall(SYS_pidfd_open, child, 0);
	uint64_t deadline = o->duration > 0 ? cm_now_ns() + (uint64_t)(o->duration * 1e9) : 0;
	uint64_t next_tick = 0;
	int stop_sig = 0;

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
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				stop_sig = si.ssi_signo;
		}
		if (waitpid(child, &status, WNOHANG) == child)
			exited = true;
	}

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
	rc = emit(&tr, o, target, exitj, true) ? 1 : 0;
	cm_tracer_close(&tr);

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

static int run_attach(struct opts *o)
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
	}
	/* while the target certainly lives: an exited one's environ is empty */
	json_object *tenv = cm_target_env(o->pids[0]);

	if (cm_tracer_start(&tr, &o->tr)) {
		json_object_put(tenv);
		return 1;
	}
	sfd = signal_fd(&oldmask);
	cm_tracer_open_window(&tr);
	for (int i = 0; i < o->npids; i++) {
		if (cm_tracer_seed_process(&tr, o->pids[i], false)) {
			cm_err("no such process: %d (it exited before tracing began)", o->pids[i]);
			cm_tracer_close(&tr);
			return 1;
		}
	}
	for (int i = 0; i < o->npids; i++)
		cm_gpu_watch_pid(&tr, o->pids[i]);
	deadline = o->duration > 0 ? tr.start_ns + (uint64_t)(o->duration * 1e9) : 0;
	uint64_t next_tick = 0;
	if (!deadline)
		cm_info("tracing %d process(es); Ctrl-C to stop", o->npids);
	while (!stop_sig) {
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN },
					 { .fd = cm_tracer_event_fd(&tr), .events = POLLIN } };
		uint64_t now = cm_now_ns();
		int timeout = 100;

		if (cm_tracer_live_threads(&tr) <= 0)
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
		if (cm_tracer_poll_ms(&tr) >= 0 && cm_tracer_poll_ms(&tr) < timeout)
			timeout = cm_tracer_poll_ms(&tr);
		if (poll(pfd, 2, timeout) > 0 && (pfd[0].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				stop_sig = si.ssi_signo;
		}
		cm_tracer_consume(&tr);	/* readable or not: see cm_tracer_poll_ms */
		cm_gpu_poll(&tr);
	}

	json_object *target = json_object_new_object(), *pids = json_object_new_array();

	json_object_object_add(target, "mode", json_object_new_string("attach"));
	for (int i = 0; i < o->npids; i++)
		json_object_array_add(pids, json_object_new_int(o->pids[i]));
	json_object_object_add(target, "pids", pids);
	json_object_object_add(target, "environment", tenv);
	int rc = emit(&tr, o, target, NULL, false) ? 1 : 0;

	cm_tracer_close(&tr);
	return rc;
}

static int cmd_report(int argc, char **argv)
{
	struct cm_render_opts ro = { .width = 80 };
	const char *path = NULL;
	json_object *r;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads"))
			ro.threads = true;
		else if (argv[i][0] == '-' && argv[i][1])
			bad_usage("unknown option '%s' for report", argv[i]);
		else if (path)
			bad_usage("report takes one file, got '%s' too", argv[i]);
		else
			path = argv[i];
	}
	if (!path)
		bad_usage("%s", "report needs a file: contactmap report REPORT.json");
	r = cm_read_json(path);
	if (!r)
		return 1;
	rc = cm_render_text(r, &ro, stdout) ? 1 : 0;
	json_object_put(r);
	return rc;
}

static void print_feature(const char *name, bool on, const char *what)
{
	printf("  %-24s %-4s %s\n", name, on ? "yes" : "no", what);
}

static int cmd_check(void)
{
	struct cm_tracer_opts to = { .max_threads = 64, .max_syscall_rows = 64 };
	struct cm_tracer tr = { 0 };
	struct cm_features *f = &tr.feat;
	int loaded;

	if (check_privileges())
		return 1;
	loaded = cm_tracer_start(&tr, &to);
	cm_probe_features(f, true);	/* with the costly probes the run skips */
	printf("contactmap %s: kernel features\n", CM_VERSION);
	print_feature("BTF", f->btf, "/sys/kernel/btf/vmlinux (CO-RE, tp_btf)");
	print_feature("tp_btf", f->tp_btf, f->tp_btf ? "BTF-typed tracepoints: in use" : f->tp_btf_error);
	print_feature("raw_tp", f->raw_tp || f->tp_btf, f->raw_tp ? "raw tracepoints: in use (fallback)" : "raw tracepoints: fallback when tp_btf fails");
	print_feature("fentry/fexit", f->fentry, f->fentry ? "available (not needed: every hook is a tracepoint)" : "not available here (not needed: every hook is a tracepoint)");
	print_feature("kprobes", f->kprobes, "not needed");
	print_feature("ring buffer", f->ringbuf, "for event streams");
	print_feature("task storage", f->task_storage, "");
	print_feature("perf cpu-clock", f->perf_cpu_clock, "software sampling for stacks");
	print_feature("hardware counters", f->hw_counters, "");
	print_feature("page_fault_user", f->page_fault_tp, f->page_fault_tp ? "tracepoint: fault blocking attributed" : "no tracepoint: fault blocking counted as 'other'");
	print_feature("block tracepoints", f->block_tp,
		      f->block_io_start_tp ? "requests claimed at block_io_start, in the submitter's context"
					   : "requests claimed at insert/issue (block_io_start: 6.5+)");
	print_feature("GPU programs", f->gpu, f->gpu ? "CUPTI agent hook and CUDA library uprobes"
						    : f->gpu_error[0] ? f->gpu_error : "not loaded");
	print_feature("uprobe_multi", f->uprobe_multi, f->uprobe_multi ? "one link per CUDA library (fast detach)"
								      : "one perf uprobe per function (slow detach)");
	print_feature("CUPTI agent", cm_gpu_agent_found(), cm_gpu_agent_found() ? "libcontactmap-cupti.so found: wrap mode uses CUPTI"
									     : "not installed: GPU work from uprobes only");
	printf("attach type in use: %s\n", f->attach_type ? f->attach_type : "none (programs did not load)");
	cm_tracer_close(&tr);
	return loaded ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .tr = { .max_threads = 4096, .max_syscall_rows = 8192,
				  .min_block_ns = 200000, .trace_sys_min_ns = 100000,
				  .trace_max_per_sec = 100000, .trace_max_bytes = 256ULL << 20,
				  .python = true } };
	int rc;

	/* report output and pipes: a closed reader must not kill us mid-write */
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && !strcmp(argv[1], "report"))
		return cmd_report(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "check"))
		return cmd_check();
	if (argc > 1 && !strcmp(argv[1], "diff"))
		return cm_diff_main(argc - 1, argv + 1);
	parse_args(argc, argv, &o);
	if (check_privileges())
		return 1;
	if (o.json_path && cm_check_writable(o.json_path))
		return 1;
	if (o.folded_path && cm_check_writable(o.folded_path))
		return 1;
	if (o.tr.trace_path && cm_check_writable(o.tr.trace_path))
		return 1;
	if (o.jsonl_path && !(o.iv = cm_interval_open(o.jsonl_path)))
		return 1;
	rc = o.argv ? run_wrap(&o) : run_attach(&o);
	cm_interval_close(o.iv);
	free(o.pids);
	return rc;
}
