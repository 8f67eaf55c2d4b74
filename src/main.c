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
#include "procfs.h"


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

static int parse_pids(const char *s, struct cm_run_opts *o)
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

static void parse_args(int argc, char **argv, struct cm_run_opts *o)
{
	enum { OPT_MAX_THREADS = 256, OPT_MAX_ROWS, OPT_ATTACH_TYPE, OPT_STACKS, OPT_MIN_BLOCK, OPT_TRACE,
	       OPT_TRACE_SYS_MIN, OPT_TRACE_RATE, OPT_TRACE_MAX_MB, OPT_JSONL,
	       OPT_GPU, OPT_OBSERVER, OPT_NO_OBSERVER, OPT_BLOCK_CLAIM, OPT_TIER };
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'o' },
		{ "folded", required_argument, NULL, 'f' },
		{ "duration", required_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "threads", no_argument, NULL, 't' },
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
		{ "tier", required_argument, NULL, OPT_TIER },
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
		case OPT_TIER:
		{
			static const int tier[] = { CM_TIER_AUTO, CM_TIER_BPF, CM_TIER_PROCFS };

			o->tier = tier[keyword(optarg, (const char *const[]){ "auto", "bpf", "procfs", NULL },
					       "bad --tier '%s': auto, bpf or procfs")];
			break;
		}
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
		case OPT_MAX_ROWS:
			o->tr.max_syscall_rows = strtoul(optarg, &end, 10);
			if (*end || end == optarg || o->tr.max_syscall_rows < 64 ||
			    o->tr.max_syscall_rows > (1U << 24))
				bad_usage("bad --max-syscall-rows '%s': 64 to 16777216", optarg);
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

/* Whether the BPF tier may run: root, or CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN). */
static bool bpf_privileged(void)
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

static int check_privileges(void)
{
	if (bpf_privileged())
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
	struct cm_pf_caps caps;
	int loaded;

	cm_pf_probe(&caps);
	if (!bpf_privileged()) {
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
				  .keep_threads = 64, .keep_procs = 1024,
				  .min_block_ns = 200000, .trace_sys_min_ns = 100000,
				  .trace_max_per_sec = 100000, .trace_max_bytes = 256ULL << 20 } };
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
	if (o.tier == CM_TIER_AUTO) {
		o.tier = bpf_privileged() ? CM_TIER_BPF : CM_TIER_PROCFS;
		o.tier_reason = "no root or CAP_BPF+CAP_PERFMON";
	}
	if (o.tier == CM_TIER_BPF && check_privileges())
		return 1;
	if (o.tier == CM_TIER_PROCFS && cm_procfs_check_opts(&o))
		return 2;
	if (o.json_path && cm_check_writable(o.json_path))
		return 1;
	if (o.folded_path && cm_check_writable(o.folded_path))
		return 1;
	if (o.tr.trace_path && cm_check_writable(o.tr.trace_path))
		return 1;
	if (o.jsonl_path && !(o.iv = cm_interval_open(o.jsonl_path)))
		return 1;
	if (o.tier == CM_TIER_PROCFS)
		rc = o.argv ? cm_procfs_run_wrap(&o) : cm_procfs_run_attach(&o);
	else
		rc = o.argv ? cm_run_wrap(&o) : cm_run_attach(&o);
	cm_interval_close(o.iv);
	free(o.pids);
	return rc;
}
