// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The procfs tier's ground floor (procfs.h): what this kernel lets an
 * unprivileged user read, the task files kept open and re-read with pread
 * (an open+read+close of a /proc file costs 3-6 times a pread of the same
 * file on the test VM), their parsers, and the off-CPU cause of a sample.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include "cm.h"
#include "contactmap.h"
#include "procfs.h"

uint64_t cm_pf_reads, cm_pf_opens;

/* ---- probing -------------------------------------------------------------- */

static int read_int_file(const char *path, int *v)
{
	char buf[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	*v = (int)strtol(buf, NULL, 10);
	return 0;
}

static bool pretend(const char *what)
{
	const char *env = getenv(CM_PF_PRETEND_ENV);
	size_t n = strlen(what);

	for (const char *p = env; p && *p;) {
		const char *end = strchrnul(p, ',');

		if ((size_t)(end - p) == n && !strncmp(p, what, n))
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

/* CAP_SYS_ADMIN = 21, CAP_PERFMON = 38: perf_event_paranoid does not apply */
static bool perf_capable(void)
{
	return cm_cap_effective() & ((1ULL << 21) | (1ULL << 38));
}

void cm_pf_probe(struct cm_pf_caps *c)
{
	char path[64];
	int v;

	memset(c, 0, sizeof(*c));
	c->uid = getuid();
	c->clk_tck = sysconf(_SC_CLK_TCK);
	if (c->clk_tck <= 0)
		c->clk_tck = 100;
	c->paranoid = read_int_file("/proc/sys/kernel/perf_event_paranoid", &v) ? INT32_MIN : v;
	c->ptrace_scope = read_int_file("/proc/sys/kernel/yama/ptrace_scope", &v) ? -1 : v;
	c->delayacct = read_int_file("/proc/sys/kernel/task_delayacct", &v) ? -1 : v;
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)gettid());
	/* the file exists only with CONFIG_SCHED_INFO, and reads "0 0 0" while
	 * sched_info is off (delay accounting off and no schedstats consumer) */
	if (access(path, R_OK) == 0) {
		char buf[128];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		uint64_t ex, rd, pc;

		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = 0;
			c->schedstat = !cm_pf_parse_schedstat(buf, &ex, &rd, &pc) && (ex || pc);
		}
	}
	if (c->schedstat && pretend("no-schedstat")) {
		c->schedstat = false;
		c->schedstat_pretend = true;
	}
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)gettid());
	c->children_file = access(path, R_OK) == 0;

	if (pretend("no-perf")) {
		c->perf_pretend = true;
		snprintf(c->perf_error, sizeof(c->perf_error), "%s=no-perf", CM_PF_PRETEND_ENV);
		return;
	}
	/* Debian's and Ubuntu's kernels refuse every unprivileged perf event at
	 * 3 and above; mainline treats them as 2. The tier follows the stricter. */
	if (!perf_capable() && c->paranoid > 2) {
		snprintf(c->perf_error, sizeof(c->perf_error),
			 "kernel.perf_event_paranoid=%d: no perf events for unprivileged users "
			 "(2 or lower allows them on your own processes)", c->paranoid);
		return;
	}
	struct perf_event_attr a = {
		.size = sizeof(a), .type = PERF_TYPE_SOFTWARE, .config = PERF_COUNT_SW_DUMMY,
		.disabled = 1, .exclude_kernel = 1, .exclude_hv = 1,
	};
	int fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);

	if (fd < 0) {
		snprintf(c->perf_error, sizeof(c->perf_error), "perf_event_open: %s%s", strerror(errno),
			 errno == EACCES || errno == EPERM ? " (kernel.perf_event_paranoid, or a security module)" : "");
		return;
	}
	close(fd);
	c->perf = true;
}

json_object *cm_pf_caps_json(const struct cm_pf_caps *c)
{
	json_object *o = json_object_new_object();

	if (c->paranoid != INT32_MIN)
		json_object_object_add(o, "perf_event_paranoid", json_object_new_int(c->paranoid));
	json_object_object_add(o, "perf_events", json_object_new_boolean(c->perf));
	if (!c->perf)
		json_object_object_add(o, "perf_error", json_object_new_string(c->perf_error));
	json_object_object_add(o, "ptrace_scope", c->ptrace_scope >= 0 ? json_object_new_int(c->ptrace_scope)
								 : json_object_new_string("no yama"));
	json_object_object_add(o, "schedstat", json_object_new_boolean(c->schedstat));
	if (c->schedstat_pretend)
		json_object_object_add(o, "schedstat_pretend_missing", json_object_new_boolean(true));
	json_object_object_add(o, "delay_accounting", c->delayacct >= 0 ? json_object_new_boolean(c->delayacct == 1)
								    : json_object_new_string("unknown"));
	json_object_object_add(o, "children_file", json_object_new_boolean(c->children_file));
	json_object_object_add(o, "clock_ticks_per_s", json_object_new_int64(c->clk_tck));
	return o;
}

static void line(FILE *out, const char *name, const char *value, const char *what)
{
	fprintf(out, "  %-24s %-5s %s\n", name, value, what);
}

void cm_pf_check_print(FILE *out, const struct cm_pf_caps *c, bool bpf)
{
	char v[32], what[256];

	fprintf(out, "tiers (how each figure is obtained):\n");
	snprintf(what, sizeof(what), bpf ? "eBPF tracepoints: exact counts and latencies of every event"
					 : "needs root or CAP_BPF+CAP_PERFMON (you are uid %u)", (unsigned)c->uid);
	line(out, "bpf", bpf ? "yes" : "no", what);
	line(out, "procfs", "yes", "your own processes, from /proc (and perf_event_open where allowed)");
	fprintf(out, "procfs tier sources:\n");
	line(out, "schedstat", c->schedstat ? "yes" : "no",
	     c->schedstat ? "/proc/PID/task/TID/schedstat (CONFIG_SCHED_INFO): exact on-CPU and run-queue time"
	     : c->schedstat_pretend ? "present, but " CM_PF_PRETEND_ENV "=no-schedstat: on-CPU from the process CPU clock and stat ticks, no run-queue time"
	     : "missing (no CONFIG_SCHED_INFO): on-CPU from the process CPU clock and stat ticks, no run-queue time");
	line(out, "stat, status, io", "yes", "utime/stime split, faults, switches, I/O bytes: the kernel's per-task counters");
	if (c->paranoid == INT32_MIN)
		snprintf(v, sizeof(v), "?");
	else
		snprintf(v, sizeof(v), "%d", c->paranoid);
	snprintf(what, sizeof(what), "%s", c->perf ? "perf_event_open on your own processes: user-mode stack samples (-f), fork/exit records"
						  : c->perf_error);
	line(out, "perf_event_paranoid", v, what);
	if (c->ptrace_scope < 0)
		snprintf(v, sizeof(v), "none");
	else
		snprintf(v, sizeof(v), "%d", c->ptrace_scope);
	line(out, "ptrace scope (Yama)", v,
	     c->ptrace_scope <= 0 ? "/proc/PID/syscall of any of your processes: off-CPU causes by syscall"
	     : c->ptrace_scope == 1 ? "/proc/PID/syscall only of descendants: attach mode names causes from wchan"
				    : "/proc/PID/syscall refused: off-CPU causes from wchan only");
	line(out, "delay accounting", c->delayacct == 1 ? "on" : c->delayacct == 0 ? "off" : "?",
	     c->delayacct == 1 ? "kernel.task_delayacct=1: per-task block I/O delay in stat"
			       : "kernel.task_delayacct is not 1: I/O wait from uninterruptible (D) samples");
	line(out, "children file", c->children_file ? "yes" : "no",
	     c->children_file ? "/proc/PID/task/TID/children: new processes found by polling"
			      : "no CONFIG_PROC_CHILDREN: new processes found by scanning /proc");
}

/* ---- task files ------------------------------------------------------------- */

static const char *const file_names[PF_NFILES] = {
	[PF_SCHEDSTAT] = "schedstat", [PF_STAT] = "stat", [PF_STATUS] = "status",
	[PF_SYSCALL] = "syscall", [PF_WCHAN] = "wchan", [PF_IO] = "io", [PF_CHILDREN] = "children",
};

int cm_pf_task_open(struct cm_pf_task *t, pid_t pid, pid_t tid)
{
	char path[64];

	for (int i = 0; i < PF_NFILES; i++)
		t->fd[i] = -1;
	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)pid, (int)tid);
	else
		snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	t->dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cm_pf_opens++;
	return t->dir >= 0 ? 0 : -errno;
}

void cm_pf_task_close(struct cm_pf_task *t)
{
	for (int i = 0; i < PF_NFILES; i++) {
		if (t->fd[i] >= 0)
			close(t->fd[i]);
		t->fd[i] = -1;
	}
	if (t->dir >= 0)
		close(t->dir);
	t->dir = -1;
}

ssize_t cm_pf_read(struct cm_pf_task *t, enum cm_pf_file f, char *buf, size_t sz)
{
	ssize_t n;

	if (t->dir < 0)
		return -ESRCH;
	if (t->fd[f] < 0) {
		t->fd[f] = openat(t->dir, file_names[f], O_RDONLY | O_CLOEXEC);
		cm_pf_opens++;
		if (t->fd[f] < 0)
			return -errno;
	}
	cm_pf_reads++;
	/* a seq_file read at offset 0 generates the file anew */
	n = pread(t->fd[f], buf, sz - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return n;
}

/* ---- parsers -------------------------------------------------------------------- */

int cm_pf_parse_schedstat(const char *s, uint64_t *exec_ns, uint64_t *run_delay_ns, uint64_t *pcount)
{
	unsigned long long a, b, c;

	if (sscanf(s, "%llu %llu %llu", &a, &b, &c) != 3)
		return -1;
	*exec_ns = a;
	*run_delay_ns = b;
	*pcount = c;
	return 0;
}

/* Field n (3 = state) of a stat line after the comm, as a string. */
#define STAT_FIELDS 52

int cm_pf_parse_stat(const char *s, struct cm_pf_stat *st)
{
	const char *open = strchr(s, '('), *close = strrchr(s, ')'), *p;
	long long f[STAT_FIELDS + 1] = { 0 };
	int n = 3;

	memset(st, 0, sizeof(*st));
	/* comm may hold spaces and parentheses: it ends at the last ')' */
	if (!open || !close || close < open || close[1] != ' ' || !close[2])
		return -1;
	cm_sanitize_comm(open + 1, (size_t)(close - open - 1), st->comm, sizeof(st->comm));
	st->state = close[2];
	for (p = close + 3; *p && n < STAT_FIELDS;) {
		char *end;

		while (*p == ' ')
			p++;
		if (!*p || *p == '\n')
			break;
		f[++n] = strtoll(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	if (n < 22)
		return -1;
	st->ppid = (int)f[4];
	st->minflt = (uint64_t)f[10];
	st->cminflt = (uint64_t)f[11];
	st->majflt = (uint64_t)f[12];
	st->cmajflt = (uint64_t)f[13];
	st->utime = (uint64_t)f[14];
	st->stime = (uint64_t)f[15];
	st->cutime = f[16] > 0 ? (uint64_t)f[16] : 0;
	st->cstime = f[17] > 0 ? (uint64_t)f[17] : 0;
	st->num_threads = (long)f[20];
	st->starttime = (uint64_t)f[22];
	if (n >= 42)
		st->blkio_ticks = (uint64_t)f[42];
	if (n >= 52) {
		st->exit_code = (int)f[52];
		st->has_exit_code = true;
	}
	return 0;
}

static int find_u64(const char *s, const char *key, uint64_t *v)
{
	size_t k = strlen(key);

	for (const char *p = s; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, k) && p[k] == ':') {
			*v = strtoull(p + k + 1, NULL, 10);
			return 0;
		}
	}
	return -1;
}

int cm_pf_parse_switches(const char *status, uint64_t *vol, uint64_t *invol)
{
	return find_u64(status, "voluntary_ctxt_switches", vol) ||
	       find_u64(status, "nonvoluntary_ctxt_switches", invol) ? -1 : 0;
}

int cm_pf_parse_uids(const char *status, uid_t *ruid, uid_t *euid)
{
	const char *p = strstr(status, "\nUid:");
	unsigned long r, e;

	if (!p || sscanf(p + 5, "%lu %lu", &r, &e) != 2)
		return -1;
	*ruid = (uid_t)r;
	*euid = (uid_t)e;
	return 0;
}

int cm_pf_parse_io(const char *s, struct cm_pf_io *io)
{
	memset(io, 0, sizeof(*io));
	return find_u64(s, "rchar", &io->rchar) || find_u64(s, "wchar", &io->wchar) ||
	       find_u64(s, "syscr", &io->syscr) || find_u64(s, "syscw", &io->syscw) ||
	       find_u64(s, "read_bytes", &io->read_bytes) || find_u64(s, "write_bytes", &io->write_bytes) ||
	       find_u64(s, "cancelled_write_bytes", &io->cancelled_write_bytes) ? -1 : 0;
}

long cm_pf_parse_syscall(const char *s)
{
	char *end;
	long nr;

	if (!strncmp(s, "running", 7))
		return CM_PF_SYS_RUNNING;
	nr = strtol(s, &end, 10);
	if (end == s || (*end != ' ' && *end != '\n' && *end))
		return CM_PF_SYS_BAD;
	return nr < 0 ? CM_PF_SYS_NONE : nr;
}

/* ---- causes ------------------------------------------------------------------------- */

/*
 * Uninterruptible sleeps that are not I/O waits. /proc shows no in_iowait,
 * and wchan names the first function outside the scheduler, so a lock taken
 * in the middle of a filesystem call reads like that call: these are the
 * sleeps in D that name themselves.
 */
static bool not_io_wait(const char *w)
{
	static const char *const names[] = {
		"wait_for_vfork_done", "kernel_clone", "synchronize_rcu", "__synchronize_srcu",
		"rcu_barrier", "msleep", "__refrigerator", "do_freezer_trap", "coredump_wait",
		"exit_mm", "kthread_stop", "__flush_work", "flush_work", "usleep_range_state",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(w, names[i]))
			return true;
	return false;
}

/* Where /proc/PID/syscall is refused (Yama), wchan still names the wait of
 * the usual blocking calls. */
static long syscall_from_wchan(const char *w)
{
	static const struct { const char *wchan, *sys; } map[] = {
		{ "futex_wait_queue", "futex" }, { "futex_wait_queue_me", "futex" },
		{ "__futex_wait", "futex" }, { "futex_wait", "futex" },
		{ "do_nanosleep", "clock_nanosleep" }, { "hrtimer_nanosleep", "clock_nanosleep" },
		{ "do_wait", "wait4" }, { "kernel_wait4", "wait4" },
		{ "ep_poll", "epoll_wait" }, { "do_epoll_wait", "epoll_wait" },
		{ "do_sys_poll", "poll" }, { "do_poll", "poll" }, { "do_select", "select" },
		{ "pipe_read", "read" }, { "pipe_write", "write" }, { "n_tty_read", "read" },
		{ "do_sigtimedwait", "rt_sigtimedwait" }, { "sigsuspend", "rt_sigsuspend" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(w, map[i].wchan))
			return cm_syscall_nr(map[i].sys);
	return CM_PF_SYS_NONE;
}

uint32_t cm_pf_classify(char state, long nr, const char *wchan)
{
	uint32_t io = 0;
	const char *w = wchan ? wchan : "";

	switch (state) {
	case 'D':
		io = not_io_wait(w) ? 0 : CM_PF_IOWAIT;
		break;
	case 'S':
		break;
	case 'T':
	case 't':
		return CM_PF_OTHER;	/* stopped (job control, a tracer) */
	default:
		return CM_PF_NOT_BLOCKED;	/* running, runnable, dead, idle */
	}
	if (nr == CM_PF_SYS_RUNNING)
		return CM_PF_NOT_BLOCKED;	/* woke between the two reads */
	if (nr == CM_PF_SYS_BAD)
		nr = syscall_from_wchan(w);
	if (nr == CM_PF_SYS_NONE)
		/* blocked in user mode, outside any call: a fault when it cannot be
		 * interrupted (a page read in), anything else otherwise */
		return (state == 'D' ? CM_PF_FAULT : CM_PF_OTHER) | io;
	return cm_sys_used_bit((uint32_t)nr) | io;
}

uint64_t cm_pf_user_part(uint64_t rtime, uint64_t uticks, uint64_t sticks)
{
	if (!sticks)
		return rtime;
	if (!uticks)
		return 0;
	/* cputime_adjust: stime = rtime * stime / (stime + utime), utime the rest */
	return rtime - (uint64_t)((unsigned __int128)rtime * sticks / (sticks + uticks));
}

void cm_pf_apportion(uint64_t total, const uint64_t *w, size_t n, uint64_t *out)
{
	unsigned __int128 sum = 0;
	uint64_t given = 0, *rem;

	for (size_t i = 0; i < n; i++)
		sum += w[i];
	if (!sum) {
		memset(out, 0, n * sizeof(*out));
		return;
	}
	rem = calloc(n, sizeof(*rem));
	for (size_t i = 0; i < n; i++) {
		unsigned __int128 x = (unsigned __int128)total * w[i];

		out[i] = (uint64_t)(x / sum);
		if (rem)
			rem[i] = (uint64_t)(x % sum) + (w[i] ? 1 : 0);	/* +1: a weight is never passed over for 0 */
		given += out[i];
	}
	/* the floors leave fewer than n ns: one each to the largest remainders */
	while (given < total) {
		size_t best = 0;

		for (size_t i = 1; rem && i < n; i++)
			if (rem[i] > rem[best])
				best = i;
		if (rem)
			rem[best] = 0;
		out[best]++;
		given++;
	}
	free(rem);
}
