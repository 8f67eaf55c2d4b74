// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * contactmap experiment [OPTIONS] --knob KNOB... [--knob KNOB...] -- COMMAND
 *
 * From a contact map to a tested hypothesis: COMMAND runs as the baseline (A)
 * and with each knob set (B, C ...), interleaved A B A B ... --runs times,
 * each run a child `contactmap -o RUN.json -- contactmap experiment --apply
 * KNOBS -- COMMAND` of this same binary. The outer child traces (this
 * process loads no BPF of its own); the inner one sets the per-process knobs
 * in the traced process itself and execs COMMAND, on every side alike, so
 * the only difference between the sides is the knobs. System-wide knobs are
 * set from here around each run and restored after it (knobstate.c keeps the
 * originals on disk first). experiment_out.c compares the sides.
 */
#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#define DEFAULT_RUNS 5
#define MAX_RUNS 1000
#define MAX_VARIANTS 25		/* B .. Z */
#define STOP_GRACE_MS 5000	/* a stopped run's contactmap gets this long to write its report */
#define SCHED_POLL_MS 10	/* sched=...@COMM: how often new threads are looked for */
#define OUTPUT_MAX (64 << 20)	/* of a run's output, scanned for the metric */

static const char exp_usage[] =
"Usage: contactmap experiment [OPTIONS] --knob KNOB... [--knob KNOB...] -- COMMAND [ARG...]\n"
"       contactmap experiment --list-knobs\n"
"       contactmap experiment --restore\n"
"       contactmap experiment --apply KNOB... -- COMMAND [ARG...]\n"
"\n"
"Runs COMMAND under contactmap as the baseline (A) and with each knob set (B,\n"
"C ...), interleaved A B A B ..., and prints the noise-aware diff of each set\n"
"against the baseline, with COMMAND's own figure when --metric names it.\n"
"System-wide knobs are recorded in a state file before they change and\n"
"restored after every run, on error, Ctrl-C and SIGTERM; if contactmap is\n"
"killed, `contactmap experiment --restore` puts them back.\n"
"\n"
"Options:\n"
"  -k, --knob KNOB...     one knob set: the knobs that follow, up to the next\n"
"                         option; repeat it for more sets (--list-knobs)\n"
"  -n, --runs N           runs of each side (default 5)\n"
"  -w, --warmup N         baseline runs first, left out of the comparison\n"
"  -m, --metric REGEX     COMMAND's own figure: in every line of its output\n"
"                         that REGEX (POSIX extended) matches, the first group,\n"
"                         or the first number of the match; a run's value is the\n"
"                         mean of its matches\n"
"  -o, --json FILE        the experiment as JSON (contactmap-experiment/1; '-' = stdout)\n"
"      --dir DIR          where the runs' reports and outputs go (default: a new\n"
"                         directory contactmap-experiment-XXXXXX in $TMPDIR or /tmp)\n"
"      --timeout SECS     a run that takes longer stops the experiment\n"
"  -a, --all              every row in the diff text\n"
"      --list-knobs       the knobs, what each changes and how it is restored\n"
"      --restore          put back what a killed experiment left changed\n"
"      --apply KNOB...    run COMMAND once with these per-process knobs (what\n"
"                         every run does inside the traced process), no tracing\n"
"  -v, --verbose          a line per run\n"
"  -h, --help             this help\n"
"\n"
"COMMAND's stdin is /dev/null; its stdout and stderr go to RUN.out and RUN.err\n"
"in the run directory, next to each run's report RUN.json and contactmap's own\n"
"text map RUN.log. Plot it: scripts/plot.py EXPERIMENT.json -o DIR.\n"
"\n"
"Examples:\n"
"  contactmap experiment --knob malloc:notrim --knob thp=always -- python3 infer.py\n"
"  contactmap experiment -n 3 --knob cpus=0 env:OMP_NUM_THREADS=1 -- ./server --bench\n"
"  contactmap experiment -m 'p99 ([0-9.]+) ms' --knob sysctl:kernel.sched_autogroup_enabled=0 -- ./bench\n";

/* The state of system knobs while runs go: restored at any exit. */
static struct cm_knob_state *g_state;

static void restore_at_exit(void)
{
	if (g_state) {
		cm_state_finish(g_state);
		g_state = NULL;
	}
}

static void usage_err(const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	cm_err("%s (see contactmap experiment --help)", msg);
	exit(2);
}

static uint64_t now_ns(void)
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

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		cm_err("out of memory");
		exit(1);
	}
	return s;
}

/* ---- checks before anything runs ----------------------------------------------- */

static bool may_trace(void)
{
	unsigned long long eff = 0;
	char line[256];
	FILE *fp;

	if (geteuid() == 0)
		return true;
	fp = fopen("/proc/self/status", "re");
	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (fp)
		fclose(fp);
	/* CAP_SYS_ADMIN = 21, CAP_PERFMON = 38, CAP_BPF = 39 */
	return (eff & (1ULL << 21)) || ((eff & (1ULL << 38)) && (eff & (1ULL << 39)));
}

/* As execvp would find it; the message says what is wrong. */
static int check_command(const char *cmd)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	struct stat st;

	if (strchr(cmd, '/')) {
		if (stat(cmd, &st) || !S_ISREG(st.st_mode) || access(cmd, X_OK)) {
			cm_err("command not found or not executable: %s", cmd);
			return -1;
		}
		return 0;
	}
	for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
		const char *colon = strchrnul(p, ':');
		int n = (int)(colon - p);

		snprintf(buf, sizeof(buf), "%.*s%s%s", n, p, n ? "/" : "", cmd);
		if (!stat(buf, &st) && S_ISREG(st.st_mode) && !access(buf, X_OK))
			return 0;
		p = *colon ? colon + 1 : colon;
	}
	cm_err("command not found: %s (not in PATH)", cmd);
	return -1;
}

static int make_dir(struct exp *e, const char *given)
{
	struct stat st;

	if (given) {
		if (mkdir(given, 0755) && errno != EEXIST) {
			cm_err("cannot create --dir %s: %s", given, strerror(errno));
			return -1;
		}
		if (lstat(given, &st) || !S_ISDIR(st.st_mode)) {
			cm_err("--dir %s is not a directory", given);
			return -1;
		}
		e->dir = strdup(given);
		return 0;
	}
	const char *tmp = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/contactmap-experiment-XXXXXX", tmp && *tmp ? tmp : "/tmp");

	/* mkdtemp: a fresh name, mode 0700, never one someone prepared */
	if (!mkdtemp(tmpl)) {
		cm_err("cannot create a run directory %s: %s (give --dir DIR)", tmpl, strerror(errno));
		free(tmpl);
		return -1;
	}
	e->dir = tmpl;
	return 0;
}

/* ---- the helper: --apply ------------------------------------------------------- */

/* contactmap experiment --apply KNOB... [--stderr-fd N] -- COMMAND: what
 * every run executes inside the traced process. */
static int apply_main(int argc, char **argv, int i)
{
	int stderr_fd = -1;

	for (; i < argc && strcmp(argv[i], "--"); i++) {
		struct cm_knob k;

		if (!strcmp(argv[i], "--stderr-fd") && i + 1 < argc) {
			/* the run's COMMAND stderr, apart from contactmap's own text */
			stderr_fd = atoi(argv[++i]);
			continue;
		}
		if (argv[i][0] == '-')
			usage_err("unknown option '%s' for --apply", argv[i]);
		if (cm_knob_parse(argv[i], &k))
			return 1;
		if (k.system) {
			cm_err("--apply takes per-process knobs only: '%s' changes the whole machine "
			       "(contactmap experiment --knob sets and restores it)", k.spec);
			return 1;
		}
		if (cm_knob_apply_here(&k))
			return 1;
		cm_knob_free(&k);
	}
	if (i + 1 >= argc)
		usage_err("%s", "--apply needs -- COMMAND");
	if (stderr_fd > 2 && fcntl(stderr_fd, F_GETFD) >= 0) {
		dup2(stderr_fd, 2);
		close(stderr_fd);
	}
	execvp(argv[i + 1], &argv[i + 1]);
	cm_err("cannot run %s: %s", argv[i + 1], strerror(errno));
	return 127;
}

/* ---- options -------------------------------------------------------------------- */

static double parse_num(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s ? s : "", &end);
	if (!s || errno || *end || end == s || v < lo || v > hi) {
		char msg[128];

		snprintf(msg, sizeof(msg), "bad %s '%%s': %g to %g", opt, lo, hi);
		usage_err(msg, s ? s : "");
	}
	return v;
}

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"), or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *s, const char *l)
{
	const char *a = argv[*i];
	size_t n = strlen(l);

	if (!strcmp(a, s) || !strcmp(a, l)) {
		if (*i + 1 >= argc)
			usage_err("option '%s' needs a value", a);
		return argv[++*i];
	}
	if (!strncmp(a, l, n) && a[n] == '=')
		return a + n + 1;
	return NULL;
}

static void add_side(struct exp *e)
{
	struct exp_side *s = realloc(e->sides, (e->nsides + 1) * sizeof(*s));

	if (!s) {
		cm_err("out of memory");
		exit(1);
	}
	e->sides = s;
	s = &e->sides[e->nsides];
	*s = (struct exp_side){ 0 };
	s->name[0] = (char)('A' + e->nsides);
	e->nsides++;
}

/* Knob specs of every set, as given; parsed after the options. */
struct spec_set { char **w; int n; };

static void parse_args(int argc, char **argv, struct exp *e, struct spec_set **sets, int *nsets,
		       const char **dir)
{
	const char *v;
	int i;

	e->runs_per_side = DEFAULT_RUNS;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-k") || !strcmp(a, "--knob")) {
			struct spec_set *s;

			*sets = realloc(*sets, (*nsets + 1) * sizeof(**sets));
			s = &(*sets)[(*nsets)++];
			*s = (struct spec_set){ .w = &argv[i + 1] };
			while (i + 1 < argc && argv[i + 1][0] != '-') {
				s->n++;
				i++;
			}
			if (!s->n)
				usage_err("%s needs one knob or more, e.g. --knob sysctl:vm.swappiness=10", a);
			if (*nsets > MAX_VARIANTS)
				usage_err("at most 25 knob sets, got more at '%s'", a);
		} else if ((v = opt_value(argc, argv, &i, "-n", "--runs"))) {
			e->runs_per_side = (int)parse_num("--runs", v, 1, MAX_RUNS);
		} else if ((v = opt_value(argc, argv, &i, "-w", "--warmup"))) {
			e->warmup = (int)parse_num("--warmup", v, 0, MAX_RUNS);
		} else if ((v = opt_value(argc, argv, &i, "-m", "--metric"))) {
			e->metric_src = v;
		} else if ((v = opt_value(argc, argv, &i, "-o", "--json"))) {
			e->json_path = v;
		} else if ((v = opt_value(argc, argv, &i, "--dir", "--dir"))) {
			*dir = v;
		} else if ((v = opt_value(argc, argv, &i, "--timeout", "--timeout"))) {
			e->timeout = parse_num("--timeout", v, 0.01, 1e7);
		} else if (!strcmp(a, "-a") || !strcmp(a, "--all")) {
			e->all = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			cm_verbose++;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(exp_usage, stdout);
			exit(0);
		} else {
			usage_err("unknown option '%s' for experiment", a);
		}
	}
	if (i >= argc)
		usage_err("%s", "nothing to run: give -- COMMAND [ARG...]");
	if (!*nsets)
		usage_err("%s", "no knobs: give --knob KNOB... (contactmap experiment --list-knobs)");
	e->cmd = &argv[i];
}

static int parse_knobs(struct exp *e, struct spec_set *sets, int nsets)
{
	add_side(e);	/* A, the baseline */
	for (int i = 0; i < nsets; i++) {
		struct exp_side *s;

		add_side(e);
		s = &e->sides[e->nsides - 1];
		s->knobs = xcalloc(sets[i].n, sizeof(*s->knobs));
		for (int k = 0; k < sets[i].n; k++) {
			struct cm_knob *kn = &s->knobs[k];

			if (cm_knob_parse(sets[i].w[k], kn))
				return -1;
			s->nknobs++;
			s->system |= kn->system;
			s->named_sched |= kn->comm[0] != '\0';
			/* one set writing one file twice would leave the first write untested */
			for (int j = 0; j < k; j++) {
				for (int a = 0; a < kn->nfiles; a++)
					for (int b = 0; b < s->knobs[j].nfiles; b++)
						if (!strcmp(kn->files[a].path, s->knobs[j].files[b].path)) {
							cm_err("knobs '%s' and '%s' of one set both write %s: give them "
							       "as two sets (--knob A --knob B)", s->knobs[j].spec, kn->spec,
							       kn->files[a].path);
							return -1;
						}
				if (!kn->system && !strcmp(kn->kind, "cpus=") && !strcmp(s->knobs[j].kind, "cpus=")) {
					cm_err("knobs '%s' and '%s' of one set both set the CPUs", s->knobs[j].spec,
					       kn->spec);
					return -1;
				}
			}
			for (int f = 0; f < kn->nfiles; f++)
				if (!strcmp(kn->files[f].value, kn->files[f].original))
					cm_warn("knob '%s': %s is '%s' already: set %s runs like the baseline",
						kn->spec, kn->files[f].path, kn->files[f].original, s->name);
		}
	}
	return 0;
}

/* ---- one run ------------------------------------------------------------------------ */

static int apply_side(const struct exp_side *s)
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
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000;

	for (;;) {
		struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		uint64_t now = now_ns();

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
static int run_one(struct exp *e, struct exp_run *r, const char *helper, int sfd, const sigset_t *oldmask)
{
	const struct exp_side *s = &e->sides[r->side];
	int fds[4] = { -1, -1, -1, -1 }, pidfd, status = 0, rc = -1;
	char **av = child_argv(e, r, helper);
	uint64_t deadline = e->timeout > 0 ? now_ns() + (uint64_t)(e->timeout * 1e9) : 0;
	pid_t child;

	fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fds[0] < 0 || (fds[1] = open_new(r->out)) < 0 || (fds[2] = open_new(r->log)) < 0 ||
	    (fds[3] = open_new(r->err)) < 0)
		goto out;
	if (s->system && apply_side(s)) {
		cm_state_restore(g_state);
		goto out;
	}
	cm_info("run %d/%d: %s%s", r->round + 1, e->runs_per_side, s->name, r->round < 0 ? " (warm-up)" : "");
	child = fork();
	if (child < 0) {
		cm_err("fork: %s", strerror(errno));
		cm_state_restore(g_state);
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
			uint64_t now = now_ns();

			if (now >= deadline) {
				cm_state_restore(g_state);
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
				cm_state_restore(g_state);
				stop_run(child, pidfd, sfd, e->stop_sig);
				rc = 1;
				goto out_pidfd;
			}
		}
	}
	if (s->system && cm_state_restore(g_state))
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

/* ---- the experiment ----------------------------------------------------------------- */

static void plan_runs(struct exp *e)
{
	int n = 0;

	e->nruns = e->warmup + e->runs_per_side * e->nsides;
	e->runs = xcalloc(e->nruns, sizeof(*e->runs));
	for (int w = 0; w < e->warmup; w++)
		e->runs[n++] = (struct exp_run){ .round = -1, .side = 0 };
	/* interleaved, so that drift of the machine lands on every side alike */
	for (int round = 0; round < e->runs_per_side; round++)
		for (int s = 0; s < e->nsides; s++)
			e->runs[n++] = (struct exp_run){ .round = round, .side = s };
	for (int i = 0; i < e->nruns; i++) {
		struct exp_run *r = &e->runs[i];
		char *base = r->round < 0 ? xasprintf("%s/warmup-%02d-A", e->dir, i + 1)
					  : xasprintf("%s/run-%02d-%s", e->dir, r->round + 1,
						      e->sides[r->side].name);

		r->report = xasprintf("%s.json", base);
		r->out = xasprintf("%s.out", base);
		r->err = xasprintf("%s.err", base);
		r->log = xasprintf("%s.log", base);
		r->metric = NAN;
		free(base);
	}
}

static char *joined_command(char **cmd)
{
	char *s = strdup("");

	for (int i = 0; s && cmd[i]; i++) {
		char *n = xasprintf("%s%s%s", s, i ? " " : "", cmd[i]);

		free(s);
		s = n;
	}
	return s;
}

/* Writes every system knob of every set once and puts it back, so a value
 * the kernel refuses is found before the first run. */
static int trial_writes(struct exp *e)
{
	for (int i = 1; i < e->nsides; i++) {
		if (!e->sides[i].system)
			continue;
		int rc = apply_side(&e->sides[i]);

		if (cm_state_restore(g_state) || rc)
			return -1;
	}
	return 0;
}

static void free_exp(struct exp *e)
{
	for (int i = 0; i < e->nruns; i++) {
		struct exp_run *r = &e->runs[i];

		free(r->report);
		free(r->out);
		free(r->err);
		free(r->log);
		json_object_put(r->contact_map);
	}
	free(e->runs);
	for (int s = 0; s < e->nsides; s++) {
		for (int k = 0; k < e->sides[s].nknobs; k++)
			cm_knob_free(&e->sides[s].knobs[k]);
		free(e->sides[s].knobs);
	}
	free(e->sides);
	free(e->dir);
	if (e->metric_src)
		regfree(&e->metric_re);
}

int cm_experiment_main(int argc, char **argv)
{
	struct exp e = { 0 };
	struct spec_set *sets = NULL;
	const char *dir = NULL;
	char helper[PATH_MAX], *cmdline;
	struct cm_knob **all;
	int nsets = 0, nall = 0, sfd, rc = 1, done = 0, created;
	sigset_t mask, oldmask;
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--list-knobs")) {
		cm_knobs_list(stdout);
		return fflush(stdout) == EOF;
	}
	if (argc > 1 && !strcmp(argv[1], "--restore")) {
		if (argc > 2)
			usage_err("--restore takes no arguments, got '%s'", argv[2]);
		return cm_state_restore_main();
	}
	if (argc > 1 && !strcmp(argv[1], "--apply"))
		return apply_main(argc, argv, 2);
	parse_args(argc, argv, &e, &sets, &nsets, &dir);
	if (parse_knobs(&e, sets, nsets))
		goto out;
	if (e.metric_src) {
		int err = regcomp(&e.metric_re, e.metric_src, REG_EXTENDED | REG_NEWLINE);

		if (err) {
			char msg[256];

			regerror(err, &e.metric_re, msg, sizeof(msg));
			cm_err("bad --metric '%s': %s", e.metric_src, msg);
			e.metric_src = NULL;
			goto out;
		}
	}
	if (!may_trace()) {
		cm_err("needs root or CAP_BPF+CAP_PERFMON to trace the runs: run it with sudo");
		goto out;
	}
	if (check_command(e.cmd[0]))
		goto out;
	if (e.json_path && cm_check_writable(e.json_path))
		goto out;
	n = readlink("/proc/self/exe", helper, sizeof(helper) - 1);
	if (n <= 0 || n >= (ssize_t)sizeof(helper) - 1 || (helper[n] = '\0', access(helper, X_OK)))
		snprintf(helper, sizeof(helper), "/proc/self/exe");	/* replaced while we run */
	if (make_dir(&e, dir))
		goto out;
	plan_runs(&e);

	/* from here on a signal is read, never acted on half-way */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGQUIT);	/* Ctrl-\ too must not leave knobs changed */
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		cm_err("signalfd: %s", strerror(errno));
		goto out;
	}
	for (int s = 1; s < e.nsides; s++)
		nall += e.sides[s].nknobs;
	all = xcalloc(nall, sizeof(*all));
	nall = 0;
	for (int s = 1; s < e.nsides; s++)
		for (int k = 0; k < e.sides[s].nknobs; k++)
			if (e.sides[s].knobs[k].system)
				all[nall++] = &e.sides[s].knobs[k];
	cmdline = joined_command(e.cmd);
	created = cm_state_create(all, nall, cmdline ? cmdline : "", &g_state);
	free(cmdline);
	free(all);
	if (created)
		goto out_sfd;
	atexit(restore_at_exit);
	if (g_state)
		cm_info("original values saved in %s (contactmap experiment --restore puts them back "
			"if this process is killed)", cm_state_path(g_state));
	if (trial_writes(&e))
		goto out_state;

	e.start_ns = now_ns();
	for (int i = 0; i < e.nruns; i++) {
		struct signalfd_siginfo si;
		int r;

		if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			e.stop_sig = (int)si.ssi_signo;
			break;
		}
		r = run_one(&e, &e.runs[i], helper, sfd, &oldmask);
		if (r < 0)
			goto out_state;
		if (r > 0)
			break;
		done++;
	}
	e.end_ns = now_ns();
	if (cm_state_finish(g_state)) {
		g_state = NULL;
		goto out_sfd;
	}
	g_state = NULL;
	if (e.stop_sig)
		cm_warn("experiment stopped by %s after %d of %d runs%s", strsignal(e.stop_sig), done,
			e.nruns, nall ? ": knobs restored" : "");
	rc = exp_output(&e) ? 1 : 0;
	if (e.stop_sig)
		rc = 128 + e.stop_sig;
	goto out_sfd;
out_state:
	if (cm_state_finish(g_state) == 0 && nall)
		cm_info("knobs restored");
	g_state = NULL;
out_sfd:
	close(sfd);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
out:
	free(sets);
	free_exp(&e);
	return rc;
}
