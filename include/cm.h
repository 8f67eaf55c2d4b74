/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* User-space interfaces of contactmap. Kernel type names stay out of here. */
#ifndef CM_H
#define CM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>
#include "contactmap.h"

#define CM_VERSION "0.1.0"
#define CM_SCHEMA "contactmap/1"

/* ---- errors and logging (log.c) ------------------------------------------ */
extern int cm_verbose;
/* Prints "contactmap: error: <msg>" on one line to stderr. */
void cm_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cm_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));	/* -v */
/* "contactmap: <msg>", always: a choice made for the user (the tier). */
void cm_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cm_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));	/* -vv */

/* ---- syscall table (generated from maps/syscalls_<arch>.tsv) ---------------- */
/* Subsystems of the contact map: enum cm_subsys, in contactmap.h (BPF uses it). */

struct cm_syscall_info {
	const char *name;
	enum cm_subsys group;
};

extern const struct cm_syscall_info cm_syscalls[];
extern const unsigned cm_nsyscalls;
/* Name of syscall nr; "syscall_<nr>" (in a static buffer) when unknown. */
const char *cm_syscall_name(unsigned nr);
/* Number of a syscall by name, or -1. */
int cm_syscall_nr(const char *name);
enum cm_subsys cm_syscall_group(unsigned nr);
/* Stable key ("file_io") and label ("file I/O") of a subsystem. */
const char *cm_subsys_key(enum cm_subsys s);
const char *cm_subsys_label(enum cm_subsys s);
/* Subsystem from its key, or -1. */
int cm_subsys_from_key(const char *key);

/* CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns (util.c). */
uint64_t cm_now_ns(void);
/* The effective capability set (all ones for root), and whether it allows
 * the BPF tier: root, CAP_SYS_ADMIN, or CAP_BPF+CAP_PERFMON. */
uint64_t cm_cap_effective(void);
bool cm_bpf_privileged(void);

/* ---- histograms (hist.c) ------------------------------------------------- */
#define CM_NSLOTS 40
/* Value at quantile q (0..1) of a log2 histogram, interpolated linearly inside
 * the bucket and clamped to max_ns when max_ns > 0. 0 for an empty histogram. */
uint64_t cm_hist_quantile(const uint64_t *hist, unsigned nslots, double q, uint64_t max_ns);

/* ---- strings (util.c) ------------------------------------------------------ */
/* Copies a kernel comm (up to n bytes, maybe not NUL-terminated, any bytes)
 * into out as valid UTF-8: printable ASCII kept, other bytes as "\xNN". */
void cm_sanitize_comm(const char *in, size_t n, char *out, size_t outsz);
/* "1.23 s", "456 ms", "7.8 us", "90 ns" into buf. */
const char *cm_fmt_ns(uint64_t ns, char *buf, size_t sz);
/* "1.5 GiB" etc. */
const char *cm_fmt_bytes(uint64_t b, char *buf, size_t sz);

/* Member key of object o, NULL when o is not an object or lacks it. */
json_object *cm_json_get(json_object *o, const char *key);
/* The same, NULL unless the member has type t. */
json_object *cm_json_get_type(json_object *o, const char *key, json_type t);
/* A string member, or NULL. */
const char *cm_json_str(json_object *o, const char *key);

/* Columns a UTF-8 string takes, one per character (no wide CJK in comms). */
int cm_text_cols(const char *s);
/* Prints at most max columns of s, never cutting a UTF-8 sequence; control
 * characters print as '?' (a report holds argv and comm strings, and a stray
 * escape must not drive the terminal). Returns the columns printed. */
int cm_put_text(FILE *out, const char *s, int max);

/* ---- output (render.c) ------------------------------------------------------ */
struct cm_render_opts {
	bool threads;		/* -t: per-thread rows */
	int width;		/* columns, 80 by default */
	int top_syscalls;	/* syscall rows per process */
	int thread_rows;	/* -t N: thread rows per process at most; 0 = CM_THREAD_ROWS */
};
#define CM_THREAD_ROWS 20
/* Prints the text contact map of a contactmap/1 report. 0 or -1 (message printed). */
int cm_render_text(json_object *report, const struct cm_render_opts *o, FILE *out);

/* Writes the report atomically (temp file + rename); "-" means stdout. */
int cm_write_json(json_object *report, const char *path);
struct cm_out;
/* The same into an output opened with cm_out_open (outfile.h), which it
 * commits (or aborts on failure). */
int cm_write_json_out(json_object *report, struct cm_out *out);
/* The largest report `report` and `diff` read: real ones are a few MB. */
#define CM_REPORT_MAX_BYTES (256u << 20)
/* Reads and checks a report ("schema" must be contactmap/1). NULL on error (printed). */
json_object *cm_read_json(const char *path);
/* Fails early (before tracing) if the file cannot be created; leaves nothing behind. */
int cm_check_writable(const char *path);

/* ---- host facts (host.c) --------------------------------------------------- */
json_object *cm_host_facts(void);

/* ---- diff (diff.c) ---------------------------------------------------------- */
int cm_diff_main(int argc, char **argv);

struct cm_diff_opts {
	bool all;		/* every row in text, unchanged ones too (-a) */
	bool no_file_list;	/* text without one line per report (the caller lists them) */
};
/* Compares the reports at before[0..nb) with those at after[0..na): the text
 * goes to out (NULL: none), the contactmap-diff/1 object to *json (NULL: not
 * built). 0, or -1 with the error printed. */
int cm_diff_files(char *const *before, int nb, char *const *after, int na,
		  const struct cm_diff_opts *o, FILE *out, json_object **json);

/* ---- experiments (experiment.c, knobs.c) and advice (advise.c) -------------- */
int cm_experiment_main(int argc, char **argv);
int cm_advise_main(int argc, char **argv);

/* ==== added for diff and environment capture (issue 5) ======================= */
#include <sys/types.h>

/* cm_host_facts() also records, where readable: "cmdline", "cpufreq_governor",
 * "thp", "thp_defrag", "swappiness", "sched" {tunables}, "numa_nodes" and
 * "gpu" {nvidia_driver, count, gpus[{model, bus}], cuda_toolkit}. */

/* The target's context: {"cgroup": v2 path, "cgroup_limits": {cpu.max,
 * memory.max, cpuset.cpus.effective (or their v1 names)}, "env": {a fixed list
 * of threading/allocator/GPU variables that are set}}. Keys that cannot be
 * read are left out; never NULL unless out of memory. Read it while PID lives
 * (a zombie's environ is empty). */
json_object *cm_target_env(pid_t pid);
/* ==== end of issue 5 additions ============================================== */

#endif /* CM_H */
