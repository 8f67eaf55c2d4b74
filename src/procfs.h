/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The procfs tier: the contact map of one's own processes without root, from
 * the kernel's per-task counters in /proc (exact where the kernel is exact),
 * off-CPU causes sampled from blocked threads' syscall, wchan and state, and
 * user-mode stacks through perf_event_open where perf_event_paranoid allows.
 *
 *   procfs.c       what the kernel lets this user read; /proc parsers; causes
 *   pftrack.c      threads and processes followed by polling; their ledgers
 *   procfs_tier.c  the run loop of wrap and attach mode, the report's sections
 *   perfsample.c   perf_event_open: fork/exit records and user-stack samples
 */
#ifndef CM_PROCFS_H
#define CM_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <json-c/json.h>

/* ---- what this kernel and this user allow (procfs.c) ------------------------- */

/* CONTACTMAP_PRETEND=no-schedstat[,no-perf] makes the probe act as if the
 * kernel lacked them: how the fallbacks are tested on a kernel that has both. */
#define CM_PF_PRETEND_ENV "CONTACTMAP_PRETEND"

struct cm_pf_caps {
	int paranoid;		/* kernel.perf_event_paranoid; INT32_MIN unreadable */
	int ptrace_scope;	/* kernel.yama.ptrace_scope; -1 without Yama */
	int delayacct;		/* kernel.task_delayacct: 1, 0; -1 unknown */
	bool schedstat;		/* per-task schedstat (CONFIG_SCHED_INFO) */
	bool schedstat_pretend;	/* present, but CONTACTMAP_PRETEND says no */
	bool children_file;	/* /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN) */
	bool perf;		/* a user-only perf event opened on ourselves */
	bool perf_pretend;
	char perf_error[160];	/* why not */
	long clk_tck;		/* USER_HZ: the unit of utime/stime in stat */
	uid_t uid;
};

void cm_pf_probe(struct cm_pf_caps *c);
/* The facts as the report's features keep them. */
json_object *cm_pf_caps_json(const struct cm_pf_caps *c);
/* `contactmap check`'s lines for the tiers and the sources each can use. */
void cm_pf_check_print(FILE *out, const struct cm_pf_caps *c, bool bpf_privileged);

/* ---- one task's files, kept open and re-read with pread ---------------------- */

enum cm_pf_file {
	PF_SCHEDSTAT, PF_STAT, PF_STATUS, PF_SYSCALL, PF_WCHAN, PF_IO, PF_CHILDREN, PF_NFILES
};

/* A task's /proc directory (tid 0: the process's own, /proc/PID) and its
 * files, opened on first use. An open file stays bound to its task: once the
 * task is gone a read fails with ESRCH, even if its tid is reused. */
struct cm_pf_task {
	int dir;
	int fd[PF_NFILES];
};

int cm_pf_task_open(struct cm_pf_task *t, pid_t pid, pid_t tid);
void cm_pf_task_close(struct cm_pf_task *t);
/* Reads file f whole into buf (NUL-terminated); its length, or -errno. */
ssize_t cm_pf_read(struct cm_pf_task *t, enum cm_pf_file f, char *buf, size_t sz);
/* Files opened and reads made, for the sampler's cost figures. */
extern uint64_t cm_pf_reads, cm_pf_opens;

/* ---- parsers (pure: tests/unit/test_procfs.c) --------------------------------- */

struct cm_pf_stat {
	char state;
	int ppid;
	long num_threads;
	uint64_t minflt, cminflt, majflt, cmajflt;
	uint64_t utime, stime, cutime, cstime;	/* clock ticks */
	uint64_t starttime;			/* clock ticks since boot */
	uint64_t blkio_ticks;			/* delayacct_blkio_ticks */
	int exit_code;
	bool has_exit_code;
	char comm[64];				/* sanitized */
};

struct cm_pf_io {
	uint64_t rchar, wchar, syscr, syscw, read_bytes, write_bytes, cancelled_write_bytes;
};

int cm_pf_parse_schedstat(const char *s, uint64_t *exec_ns, uint64_t *run_delay_ns,
			  uint64_t *pcount);
int cm_pf_parse_stat(const char *s, struct cm_pf_stat *st);
int cm_pf_parse_switches(const char *status, uint64_t *vol, uint64_t *invol);
int cm_pf_parse_uids(const char *status, uid_t *ruid, uid_t *euid);
int cm_pf_parse_io(const char *s, struct cm_pf_io *io);
/* /proc/.../syscall: the number, or one of these */
#define CM_PF_SYS_NONE (-1)	/* blocked outside any syscall ("-1 sp pc") */
#define CM_PF_SYS_RUNNING (-2)
#define CM_PF_SYS_BAD (-3)
long cm_pf_parse_syscall(const char *s);

/* ---- off-CPU causes ---------------------------------------------------------- */

/* A sampled cause: a syscall number (as cm_sys_used_bit keeps it), or one of
 * these, with CM_PF_IOWAIT when the thread slept uninterruptibly (D) in an
 * I/O wait. CM_PF_NOT_BLOCKED: the sample found it running or runnable. */
#define CM_PF_FAULT 0x10000u
#define CM_PF_OTHER 0x20000u
#define CM_PF_IOWAIT 0x80000000u
#define CM_PF_NOT_BLOCKED 0xffffffffu

uint32_t cm_pf_classify(char state, long sys_nr, const char *wchan);

/* The user part of rtime as the kernel's cputime_adjust splits it by the tick
 * counts (all of it to user when neither has a tick yet, as the kernel does). */
uint64_t cm_pf_user_part(uint64_t rtime, uint64_t uticks, uint64_t sticks);
/* out[i] = total * w[i] / sum(w), rounded so that the parts add up to total
 * exactly (largest remainders); all 0 when the weights are. */
void cm_pf_apportion(uint64_t total, const uint64_t *w, size_t n, uint64_t *out);

/* ---- run loops (procfs_tier.c) ------------------------------------------------ */

struct cm_run_opts;
int cm_procfs_run_wrap(struct cm_run_opts *o);
int cm_procfs_run_attach(struct cm_run_opts *o);
/* Options the procfs tier cannot honour: one line and non-zero, before anything runs. */
int cm_procfs_check_opts(const struct cm_run_opts *o);

#endif /* CM_PROCFS_H */
