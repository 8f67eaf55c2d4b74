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
 * originals on disk first). This file is the command line, the checks made
 * before anything changes, and the order of the runs; experiment_run.c runs
 * one, experiment_out.c compares the sides.
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
#include "xalloc.h"

#define DEFAULT_RUNS 5
#define MAX_RUNS 1000
#define MAX_VARIANTS 25		/* B .. Z */

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

/* ---- checks before anything runs ----------------------------------------------- */


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
	e->dir_made = true;
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
		int rc = exp_apply_side(&e->sides[i]);

		if (cm_state_restore(e->state) || rc)
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
	if (!cm_bpf_privileged()) {
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
	e.state = g_state;
	atexit(restore_at_exit);
	if (g_state)
		cm_info("original values saved in %s (contactmap experiment --restore puts them back "
			"if this process is killed)", cm_state_path(g_state));
	if (trial_writes(&e))
		goto out_state;

	e.start_ns = exp_now_ns();
	for (int i = 0; i < e.nruns; i++) {
		struct signalfd_siginfo si;
		int r;

		if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			e.stop_sig = (int)si.ssi_signo;
			break;
		}
		r = exp_run_one(&e, &e.runs[i], helper, sfd, &oldmask);
		if (r < 0)
			goto out_state;
		if (r > 0)
			break;
		done++;
	}
	e.end_ns = exp_now_ns();
	rc = cm_state_finish(g_state);
	g_state = e.state = NULL;
	if (rc) {
		rc = 1;
		goto out_sfd;
	}
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
	g_state = e.state = NULL;
out_sfd:
	close(sfd);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
out:
	if (rc && e.dir_made && !done)
		rmdir(e.dir);	/* only if empty: a failed run's files stay to be read */
	free(sets);
	free_exp(&e);
	return rc;
}

