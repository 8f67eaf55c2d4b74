// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* contactmap: where a program's wall time goes, across the operating system. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"
#include "session.h"
#include "gpu.h"
#include "stacks.h"
#include "interval.h"
#include "numarg.h"
#include "outfile.h"
#include "sigstate.h"
#include "exporter.h"
#include "cgroup.h"
#include "procfs.h"


static const char usage[] =
"Usage: contactmap [OPTIONS] -- COMMAND [ARG...]   trace COMMAND and what it starts\n"
"       contactmap [OPTIONS] -p PID[,PID...]       attach to running processes\n"
"       contactmap [OPTIONS] --cgroup PATH         every process of a cgroup v2 subtree\n"
"       contactmap report [-t [N]] REPORT.json     print a saved report\n"
"       contactmap diff BEFORE.json... [--] AFTER.json...  compare reports\n"
"       contactmap check                           kernel features and fallbacks\n"
"       contactmap experiment [OPTIONS] --knob KNOB... [--knob ...] -- COMMAND\n"
"                                                  A/B runs with OS knobs, restored\n"
"       contactmap advise REPORT.json              the experiments a report suggests\n"
"       contactmap metrics REPORT.json             a saved report as Prometheus metrics\n"
"\n"
"Where does a program's wall time go? contactmap prints a ledger per process and\n"
"thread (on-CPU, run-queue wait, blocked time by cause) and the OS contact map.\n"
"\n"
"Options:\n"
"  -o, --json FILE        write the JSON report (contactmap/1) to FILE ('-' = stdout)\n"
"  -f, --folded FILE      write folded stacks, on-CPU and off-CPU in one file\n"
"      --pprof FILE       write the same stacks as a gzipped pprof profile\n"
"  -F, --freq HZ          on-CPU samples per second with stacks (default 99)\n"
"      --stacks WHICH     collect stacks: oncpu, offcpu or both (implied by -f)\n"
"      --min-block USEC   off-CPU stacks only for blocks this long (default 200)\n"
"  -i, --interval SECS    a JSON line per interval (JSONL) to --jsonl FILE\n"
"      --jsonl FILE       where -i writes ('-' = stdout)\n"
"      --trace FILE       timeline in Chrome Trace Event JSON (Perfetto, chrome://tracing)\n"
"      --trace-syscall-min USEC  syscalls on the timeline from this long (default 100)\n"
"      --trace-rate N     timeline events per second per CPU at most (default 100000)\n"
"      --trace-max-mb MB  cap the timeline file (default 256)\n"
"  -d, --duration SECS    stop tracing after SECS seconds\n"
"      --serve [HOST:]PORT  serve /metrics (Prometheus) while tracing, until\n"
"                         stopped; HOST is 127.0.0.1 unless given, PORT 0 picks one\n"
"  -p, --pid PID[,PID]    attach to these processes (all threads, and children)\n"
"      --cgroup PATH      trace every process in this cgroup v2 directory and below,\n"
"                         those that join later too, until Ctrl-C or -d (PATH is\n"
"                         absolute, or relative to the cgroup2 mount)\n"
"  -t, --threads [N]      per-thread rows in the text map, longest wall time first:\n"
"                         at most N (default 20), threads of one name grouped\n"
"      --text FILE        the text map to FILE ('-' = stdout; default stderr)\n"
"      --observer-cost MODE  contactmap's own cost, from BPF run-time statistics\n"
"                         (two clock reads per BPF program run on every CPU while\n"
"                         on): sampled (default: on 50 ms of every second;\n"
"                         estimated), full, or off\n"
"      --no-observer-cost the same as --observer-cost off\n"
"      --no-critical-path no wake-up graph, critical path or request markers\n"
"      --fold-pid         root each folded stack at comm-PID, not comm\n"
"      --no-python        no Python frames in stacks and no 'gil' cause\n"
"      --marker-lib PATH  the libcontactmap-mark.so to probe for request markers\n"
"                         (default: the one next to contactmap and in PREFIX/lib)\n"
"      --max-threads N    threads alive at once that can be traced (default 65536;\n"
"                         entries are freed at exit and not preallocated)\n"
"      --max-syscall-rows N  (thread, syscall) rows alive at once (default 262144)\n"
"      --attach-type T    force tp_btf or raw_tp (default: best available)\n"
"      --block-claim insert_issue  claim block requests at insert/issue, as\n"
"                         on kernels before 6.5 (default: block_io_start)\n"
"      --gpu MODE         CUDA work: auto (default: CUPTI agent when wrapping,\n"
"                         uprobes when attaching), cupti, uprobes, or off\n"
"      --tier TIER        how figures are obtained: bpf (root or CAP_BPF+CAP_PERFMON),\n"
"                         procfs (your own processes, no privileges: /proc and\n"
"                         perf_event_open; -F sets its off-CPU sampling rate,\n"
"                         default 100 Hz), or auto (default: bpf where allowed)\n"
"  -v, --verbose          more messages; -vv adds libbpf's log\n"
"  -h, --help             this help\n"
"  -V, --version          print the version\n"
"\n"
"Examples:\n"
"  contactmap -- python3 infer.py          # wrap a command and its children\n"
"  contactmap -o run.json -- make -j2      # also save the JSON report\n"
"  contactmap -p 4242 -d 10                # attach to a running process for 10 s\n"
"\n"
"The BPF tier needs root (or CAP_BPF+CAP_PERFMON) and a kernel with BTF; without\n"
"them contactmap runs the procfs tier on your own processes (contactmap check).\n";

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

/* A whole number for option opt in [min, max], or one error line and exit 2. */
static uint64_t uint_opt(const char *opt, const char *arg, uint64_t min, uint64_t max,
			 const char *unit)
{
	uint64_t v;

	if (cm_parse_uint(arg, min, max, &v)) {
		cm_err("bad %s '%s': %s, a whole number from %llu to %llu (see contactmap --help)",
		       opt, arg, unit, (unsigned long long)min, (unsigned long long)max);
		exit(2);
	}
	return v;
}

static double secs_opt(const char *opt, const char *arg, double min, double max)
{
	double v;

	if (cm_parse_secs(arg, min, max, &v)) {
		cm_err("bad %s '%s': seconds, from %.15g to %.15g, e.g. %s 10 or %s 0.5 (see contactmap --help)",
		       opt, arg, min, max, opt, opt);
		exit(2);
	}
	return v;
}

/* A file name for option opt: never empty ('-' is stdout where allowed). */
static const char *path_opt(const char *opt, const char *arg)
{
	if (!*arg) {
		cm_err("%s needs a file name, and got an empty one (see contactmap --help)", opt);
		exit(2);
	}
	return arg;
}

/* pid_max is at most 2^22 (PID_MAX_LIMIT) */
#define CM_PID_MAX 4194304

/* PID[,PID...]: every item a pid, so "1,", ",2" and "1,,2" are refused. */
static int parse_pids(const char *s, struct cm_run_opts *o)
{
	char *copy = strdup(s), *p = copy;

	while (p) {
		char *comma = strchr(p, ',');
		uint64_t v;

		if (comma)
			*comma = 0;
		if (cm_parse_uint(p, 1, CM_PID_MAX, &v)) {
			free(copy);
			return -1;
		}
		o->pids = realloc(o->pids, (o->npids + 1) * sizeof(*o->pids));
		o->pids[o->npids++] = (pid_t)v;
		p = comma ? comma + 1 : NULL;
	}
	free(copy);
	return o->npids ? 0 : -1;
}

/* -t, -tN, --threads[=N], or -t N (a bare number after -t is its count). */
static unsigned threads_opt(const char *arg, int argc, char **argv)
{
	if (!arg && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
		arg = argv[optind++];
	return arg ? (unsigned)uint_opt("-t", arg, 1, 1000000, "thread rows") : CM_THREAD_ROWS;
}

static void parse_args(int argc, char **argv, struct cm_run_opts *o)
{
	enum { OPT_MAX_THREADS = 256, OPT_MAX_ROWS, OPT_ATTACH_TYPE, OPT_STACKS, OPT_MIN_BLOCK, OPT_TRACE,
	       OPT_TRACE_SYS_MIN, OPT_TRACE_RATE, OPT_TRACE_MAX_MB, OPT_JSONL,
	       OPT_GPU, OPT_OBSERVER, OPT_NO_OBSERVER, OPT_BLOCK_CLAIM, OPT_NO_CRITPATH,
	       OPT_MARKER_LIB, OPT_TEXT, OPT_FOLD_PID, OPT_NO_PYTHON, OPT_PPROF, OPT_SERVE,
	       OPT_CGROUP, OPT_TIER };
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'o' },
		{ "folded", required_argument, NULL, 'f' },
		{ "pprof", required_argument, NULL, OPT_PPROF },
		{ "serve", required_argument, NULL, OPT_SERVE },
		{ "cgroup", required_argument, NULL, OPT_CGROUP },
		{ "duration", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "threads", optional_argument, NULL, 't' },
		{ "text", required_argument, NULL, OPT_TEXT },
		{ "max-threads", required_argument, NULL, OPT_MAX_THREADS },
		{ "max-syscall-rows", required_argument, NULL, OPT_MAX_ROWS },
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
		{ "no-critical-path", no_argument, NULL, OPT_NO_CRITPATH },
		{ "marker-lib", required_argument, NULL, OPT_MARKER_LIB },
		{ "fold-pid", no_argument, NULL, OPT_FOLD_PID },
		{ "no-python", no_argument, NULL, OPT_NO_PYTHON },
		{ "tier", required_argument, NULL, OPT_TIER },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int c;

	opterr = 0;
	/* '+': stop at the command's name, so its own options stay its own */
	while ((c = getopt_long(argc, argv, "+:o:f:F:d:i:p:tvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->json_path = path_opt("-o", optarg);
			break;
		case 'f':
			o->folded_path = path_opt("-f", optarg);
			break;
		case OPT_TEXT:
			o->text_path = path_opt("--text", optarg);
			break;
		case OPT_PPROF:
			o->pprof_path = path_opt("--pprof", optarg);
			break;
		case OPT_SERVE:
			o->serve = optarg;
			break;
		case OPT_CGROUP:
			o->cgroup_path = optarg;	/* resolved in main() */
			break;
		case 'd':
			o->duration = secs_opt("-d", optarg, 0.001, 1e7);
			break;
		case 'p':
			if (parse_pids(optarg, o))
				bad_usage("bad -p '%s': give PID[,PID...], each a whole number from 1 to 4194304", optarg);
			break;
		case 't':
			o->threads = true;
			o->thread_rows = threads_opt(optarg, argc, argv);
			break;
		case 'F':
			o->tr.sample_hz = (unsigned)uint_opt("-F", optarg, 1, 10000, "samples per second");
			o->freq = o->tr.sample_hz;
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
		case OPT_NO_CRITPATH:
			o->tr.critpath = false;
			break;
		case OPT_MARKER_LIB:
			o->tr.marker_lib = optarg;
			break;
		case OPT_FOLD_PID:
			o->fold_pid = true;
			break;
		case OPT_NO_PYTHON:
			o->tr.python = false;
			break;
		case OPT_TIER:
		{
			static const int tier[] = { CM_TIER_AUTO, CM_TIER_BPF, CM_TIER_PROCFS };

			o->tier = tier[keyword(optarg, (const char *const[]){ "auto", "bpf", "procfs", NULL },
					       "bad --tier '%s': auto, bpf or procfs")];
			break;
		}
		case 'i':
			o->interval = secs_opt("-i", optarg, 0.01, 1e6);
			break;
		case OPT_JSONL:
			o->jsonl_path = path_opt("--jsonl", optarg);
			break;
		case OPT_TRACE:
			/* streamed during the run, then renamed into place: a file */
			if (!strcmp(optarg, "-"))
				bad_usage("%s", "--trace needs a file: the timeline cannot go to stdout");
			o->tr.trace_path = path_opt("--trace", optarg);
			break;
		/* microseconds up to an hour, so that *1000 cannot wrap */
		case OPT_TRACE_SYS_MIN:
			o->tr.trace_sys_min_ns = uint_opt("--trace-syscall-min", optarg, 0, 3600000000ULL,
							  "microseconds") * 1000;
			break;
		case OPT_TRACE_RATE:
			o->tr.trace_max_per_sec = uint_opt("--trace-rate", optarg, 1, 1000000000ULL,
							   "events per second per CPU");
			break;
		case OPT_TRACE_MAX_MB:
			o->tr.trace_max_bytes = uint_opt("--trace-max-mb", optarg, 1, 1048576, "megabytes") << 20;
			break;
		case OPT_MIN_BLOCK:
			o->tr.min_block_ns = uint_opt("--min-block", optarg, 0, 3600000000ULL,
						      "microseconds") * 1000;
			break;
		case OPT_MAX_THREADS:
			o->tr.max_threads = (unsigned)uint_opt("--max-threads", optarg, 16, 1U << 22, "threads");
			break;
		case OPT_MAX_ROWS:
			o->tr.max_syscall_rows = (unsigned)uint_opt("--max-syscall-rows", optarg, 64, 1U << 24, "rows");
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
	if (o->argv && o->cgroup_path)
		bad_usage("%s", "give either --cgroup PATH or -- COMMAND, not both");
	if (!o->argv && !o->npids && !o->cgroup_path)
		bad_usage("%s", "nothing to trace: give -- COMMAND, -p PID or --cgroup PATH");
	/* machine-readable lines go where they are sent, never by default */
	if (o->interval && !o->jsonl_path)
		bad_usage("%s", "-i needs --jsonl FILE ('--jsonl -' for stdout)");
	if (o->jsonl_path && !o->interval)
		bad_usage("%s", "--jsonl needs -i SECONDS");
	if ((o->folded_path || o->pprof_path) && !o->fold_which)
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
	if (cm_bpf_privileged())
		return 0;
	cm_err("the BPF tier needs root or CAP_BPF+CAP_PERFMON: run it with sudo, or without "
	       "--tier bpf for the procfs tier");
	return -1;
}

static int cmd_report(int argc, char **argv)
{
	struct cm_render_opts ro = { .width = 80 };
	const char *path = NULL;
	json_object *r;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) {
			ro.threads = true;
			if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9')
				ro.thread_rows = (int)uint_opt("-t", argv[++i], 1, 1000000, "thread rows");
		} else if (!strncmp(argv[i], "--threads=", 10)) {
			ro.threads = true;
			ro.thread_rows = (int)uint_opt("-t", argv[i] + 10, 1, 1000000, "thread rows");
		} else if (argv[i][0] == '-' && argv[i][1])
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
	rc = cm_render_text(r, &ro, stdout) || cm_out_check_stream(stdout, "text map", "stdout") ? 1 : 0;
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
	struct cm_pf_caps caps;
	int loaded;

	cm_pf_probe(&caps);
	if (!cm_bpf_privileged()) {
		printf("contactmap %s: no root or CAP_BPF+CAP_PERFMON, so no BPF\n", CM_VERSION);
		cm_pf_check_print(stdout, &caps, false);
		printf("tier in use: procfs\n");
		return 0;
	}
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
	print_feature("bpf_mem_alloc", f->mem_alloc, f->mem_alloc ? "tables allocated as threads come (6.1+): memory follows the live set"
								: "tables preallocated (before 6.1): --max-threads is capped at 8192");
	print_feature("kernel split", true, "kernel time outside syscalls from the kernel's tick accounting (task->stime), per segment");
	print_feature("uprobe_multi", f->uprobe_multi, f->uprobe_multi ? "one link per CUDA library (fast detach)"
								      : "one perf uprobe per function (slow detach)");
	print_feature("CUPTI agent", cm_gpu_agent_found(), cm_gpu_agent_found() ? "libcontactmap-cupti.so found: wrap mode uses CUPTI"
									     : "not installed: GPU work from uprobes only");
	printf("attach type in use: %s\n", f->attach_type ? f->attach_type : "none (programs did not load)");
	cm_pf_check_print(stdout, &caps, !loaded);
	printf("tier in use: %s\n", loaded ? "procfs (the BPF programs did not load)" : "bpf");
	cm_tracer_close(&tr);
	return loaded ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct cm_run_opts o = { .tr = { .max_threads = 65536, .max_syscall_rows = 262144,
				  .keep_threads = 64, .keep_procs = 1024, .critpath = true,
				  .python = true,
				  .min_block_ns = 200000, .trace_sys_min_ns = 100000,
				  .trace_max_per_sec = 100000, .trace_max_bytes = 256ULL << 20 } };
	char cgroup[PATH_MAX];
	int rc;

	/* first: the wrapped command starts with what contactmap was given */
	cm_sig_save();
	/* report output and pipes: a closed reader must not kill us mid-write */
	signal(SIGPIPE, SIG_IGN);
	/* inherited as ignored, it would reap the command before we can wait */
	signal(SIGCHLD, SIG_DFL);
	if (argc > 1 && !strcmp(argv[1], "report"))
		return cmd_report(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "check"))
		return cmd_check();
	if (argc > 1 && !strcmp(argv[1], "diff"))
		return cm_diff_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "experiment"))
		return cm_experiment_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "advise"))
		return cm_advise_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "metrics"))
		return cm_metrics_main(argc - 1, argv + 1);
	parse_args(argc, argv, &o);
	if (o.tier == CM_TIER_AUTO) {
		o.tier = cm_bpf_privileged() ? CM_TIER_BPF : CM_TIER_PROCFS;
		o.tier_reason = "no root or CAP_BPF+CAP_PERFMON";
	}
	if (o.tier == CM_TIER_BPF && check_privileges())
		return 1;
	if (o.cgroup_path) {
		if (cm_cgroup_resolve(o.cgroup_path, cgroup, sizeof(cgroup), &o.tr.cgroup_id))
			return 1;
		o.cgroup_path = cgroup;
	}
	/* every output opened (and checked) before anything runs; the metrics
	 * port bound too, so one in use fails at once */
	if (o.tier == CM_TIER_PROCFS && cm_procfs_check_opts(&o))
		return 2;
	rc = cm_run_open_outputs(&o) || (o.serve && !(o.exp = cm_exporter_open(o.serve))) ? 1
	     : o.tier == CM_TIER_PROCFS ? (o.argv ? cm_procfs_run_wrap(&o) : cm_procfs_run_attach(&o))
	     : o.argv ? cm_run_wrap(&o) : cm_run_attach(&o);
	cm_exporter_close(o.exp);
	cm_run_close_outputs(&o);
	free(o.pids);
	return rc;
}
