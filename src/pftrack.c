// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The procfs tier's tables (pftrack.h): threads and processes followed by
 * polling /proc (and perf fork records where perf_event_open is allowed),
 * each thread's counters kept fresh, and its off-CPU state sampled.
 *
 * A tick (default 100 Hz) samples every live thread, as cheaply as it can:
 * a process whose CPU clock did not move ran nothing, so each of its threads
 * is where the last tick found it (no read at all); a thread whose schedstat
 * did not move has not run, so it still waits where it waited (one read);
 * one blocked that way for a while is checked less often (up to every 8th
 * tick, each check booking the ticks it stood for). Only a thread that ran
 * is read in full: wchan (blocked or not), then syscall and stat. The rate
 * itself comes down when the sampler would take more than its budget (1% of
 * one CPU), and the report says so.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"
#include "tracer.h"
#include "books.h"
#include "pftrack_int.h"

#define ADAPT_NS 250000000ULL		/* the rate is set anew this often */
#define PENDING_EXIT_NS 1000000000ULL	/* an exit record's fork record is in a ring drained with it */
#define TRIM_NS 1000000000ULL
#define SCAN_NS 1000000000ULL		/* /proc scan without the children file */
#define BOOKS_GRACE_NS 1000000000ULL
#define MAX_EVERY 8
#define STILL_BEFORE_BACKOFF 3

/* ---- tid -> thread and pid -> process, open addressing ------------------------ */

static uint64_t sub0u(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static size_t hslot(uint32_t k, size_t cap)
{
	return (k * 2654435761u) & (cap - 1);
}

/* keys at ptrs[i] are read through key(); NULL is empty */
static void **hfind(void **tab, size_t cap, uint32_t k, uint32_t (*key)(const void *))
{
	if (!cap)
		return NULL;
	for (size_t j = hslot(k, cap);; j = (j + 1) & (cap - 1)) {
		if (!tab[j])
			return &tab[j];
		if (key(tab[j]) == k)
			return &tab[j];
	}
}

static int hput(void ***tab, size_t *cap, size_t n, void *v, uint32_t (*key)(const void *))
{
	void **slot;

	if ((n + 1) * 2 > *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		void **nt = calloc(nc, sizeof(*nt));

		if (!nt)
			return -1;
		for (size_t i = 0; i < *cap; i++)
			if ((*tab)[i])
				*hfind(nt, nc, key((*tab)[i]), key) = (*tab)[i];
		free(*tab);
		*tab = nt;
		*cap = nc;
	}
	slot = hfind(*tab, *cap, key(v), key);
	*slot = v;
	return 0;
}

/* Linear probing's deletion: the entries after the hole move back. */
static void hdel(void **tab, size_t cap, uint32_t k, uint32_t (*key)(const void *))
{
	void **slot = hfind(tab, cap, k, key);
	size_t i, j;

	if (!slot || !*slot)
		return;
	i = (size_t)(slot - tab);
	tab[i] = NULL;
	for (j = (i + 1) & (cap - 1); tab[j]; j = (j + 1) & (cap - 1)) {
		size_t h = hslot(key(tab[j]), cap);

		/* tab[j] stays unless the hole lies between its home and j */
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			tab[i] = tab[j];
			tab[j] = NULL;
			i = j;
		}
	}
}

static uint32_t tkey(const void *v)
{
	return (uint32_t)((const struct pf_thread *)v)->tid;
}

static struct pf_thread *find_thread(const struct cm_pf *pf, pid_t tid)
{
	void **s = hfind((void **)pf->tmap, pf->tcap, (uint32_t)tid, tkey);

	return s ? *s : NULL;
}

/* The live process with this pid (ended ones stay in pf->procs only). */
struct pf_proc *cm_pf_find_proc(const struct cm_pf *pf, pid_t pid)
{
	for (size_t i = pf->nprocs; i-- > 0;)
		if (pf->procs[i]->pid == pid && !pf->procs[i]->ended)
			return pf->procs[i];
	return NULL;
}

/* ---- pending forks (perf) ----------------------------------------------------------- */

static ssize_t pending_find(const struct cm_pf *pf, uint32_t tid)
{
	for (size_t i = 0; i < pf->npending; i++)
		if (pf->pending[i].tid == tid)
			return (ssize_t)i;
	return -1;
}

static void pending_drop(struct cm_pf *pf, size_t i)
{
	pf->pending[i] = pf->pending[--pf->npending];
}

/* ---- reading a task ---------------------------------------------------------------- */

static uint64_t ticks_ns(const struct cm_pf *pf, uint64_t ticks)
{
	return ticks * 1000000000ULL / (uint64_t)pf->caps.clk_tck;
}

static int read_schedstat(struct cm_pf *pf, struct pf_thread *th)
{
	char buf[128];
	ssize_t n = cm_pf_read(&th->f, PF_SCHEDSTAT, buf, sizeof(buf));
	uint64_t ex, rd, pc;

	if (n < 0)
		return (int)n;
	if (cm_pf_parse_schedstat(buf, &ex, &rd, &pc))
		return -EINVAL;
	th->cur.exec = ex;
	th->cur.rd = rd;
	th->cur.pcount = pc;
	return 0;
}

/* stat: the split, faults, comm, state. */
static int read_stat(struct cm_pf *pf, struct pf_thread *th, char *state)
{
	char buf[2048];
	struct cm_pf_stat st;
	ssize_t n = cm_pf_read(&th->f, PF_STAT, buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	if (cm_pf_parse_stat(buf, &st))
		return -EINVAL;
	if (th->starttime && st.starttime != th->starttime)
		return -ESRCH;	/* not the thread we followed */
	th->starttime = st.starttime;
	*state = st.state;
	th->cur.utime = st.utime;
	th->cur.stime = st.stime;
	th->cur.minflt = st.minflt;
	th->cur.majflt = st.majflt;
	snprintf(th->comm, sizeof(th->comm), "%.*s", (int)sizeof(th->comm) - 1, st.comm);
	if (!pf->caps.schedstat) {
		/* the kernel's own split of its exact runtime, in ticks: the best
		 * a thread has without schedstat (the process total stays exact) */
		th->cur.exec = ticks_ns(pf, st.utime + st.stime);
	}
	return 0;
}

/* stat and status (switches): the exact counters, on the detail cadence. */
static int read_detail(struct cm_pf *pf, struct pf_thread *th, char *state)
{
	char buf[2048];
	int err = read_stat(pf, th, state);
	ssize_t n;

	if (err)
		return err;
	/* a zombie's counters are final, and still there to read */
	n = cm_pf_read(&th->f, PF_STATUS, buf, sizeof(buf));
	if (n >= 0)
		cm_pf_parse_switches(buf, &th->cur.vol, &th->cur.invol);
	return 0;
}

/* Syscalls that wait interruptibly only, never in io_schedule: a thread
 * blocked in one is in S, and its stat need not be read to know it. */
static bool waits_interruptibly(long nr)
{
	static int nrs[24];
	static int n = -1;

	if (n < 0) {
		static const char *const names[] = {
			"futex", "futex_waitv", "clock_nanosleep", "nanosleep", "epoll_wait", "epoll_pwait",
			"epoll_pwait2", "poll", "ppoll", "select", "pselect6", "wait4", "waitid", "pause",
			"rt_sigsuspend", "rt_sigtimedwait", "accept", "accept4", "recvfrom", "recvmsg",
			"recvmmsg", "semtimedop", "msgrcv", "mq_timedreceive",
		};

		n = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			int x = cm_syscall_nr(names[i]);

			if (x >= 0)
				nrs[n++] = x;
		}
	}
	for (int i = 0; i < n; i++)
		if (nrs[i] == nr)
			return true;
	return false;
}

/* Whole-process counters: the CPU clock, stat and io (ended threads included). */
static void read_whole(struct cm_pf *pf, struct pf_proc *p, char *state, long *nthreads)
{
	char buf[2048];
	struct cm_pf_stat st;
	ssize_t n;

	if (p->clk_ok) {
		uint64_t c = pf_clock(p->clk);

		if (c != PF_NO_CLOCK)
			p->cur.clock = c;
	}
	n = cm_pf_read(&p->f, PF_STAT, buf, sizeof(buf));
	if (n < 0) {
		*state = 'X';
		*nthreads = 0;
		return;
	}
	if (!cm_pf_parse_stat(buf, &st)) {
		*state = st.state;
		*nthreads = st.num_threads;
		p->cur.utime = st.utime;
		p->cur.stime = st.stime;
		p->cur.minflt = st.minflt;
		p->cur.majflt = st.majflt;
		p->cur.cminflt = st.cminflt;
		p->cur.cmajflt = st.cmajflt;
		p->ppid = st.ppid;
		p->have_whole = true;
		if (st.state == 'Z' && st.has_exit_code) {
			p->exit_code = st.exit_code;
			p->has_exit_code = true;
		}
		if (!p->clk_ok)
			p->cur.clock = ticks_ns(pf, st.utime + st.stime);
	}
	n = cm_pf_read(&p->f, PF_IO, buf, sizeof(buf));
	if (n >= 0 && !cm_pf_parse_io(buf, &p->cur.io))
		p->have_io = true;
}

/* ---- following ------------------------------------------------------------------------ */

static struct pf_thread *add_thread(struct cm_pf *pf, struct pf_proc *p, pid_t tid, bool seeded);

static uint64_t boot_to_mono(const struct cm_pf *pf, uint64_t starttime)
{
	uint64_t b = ticks_ns(pf, starttime);

	return b > pf->boot_offset_ns ? b - pf->boot_offset_ns : 0;
}

static void thread_start(struct cm_pf *pf, struct pf_thread *th, bool seeded, uint64_t now)
{
	uint64_t est, lo = pf->window_start, hi, used = th->cur.exec + th->cur.rd;
	ssize_t pi = pending_find(pf, (uint32_t)th->tid);

	if (seeded) {
		th->start_ns = now < lo ? lo : now;
		return;
	}
	est = pi >= 0 ? pf->pending[pi].fork_ns : boot_to_mono(pf, th->starttime);
	/* its start is no later than what it has run and waited so far allows */
	hi = now > lo + used ? now - used : lo;
	th->start_ns = est < lo ? lo : est > hi ? hi : est;
}

static struct pf_thread *add_thread_(struct cm_pf *pf, struct pf_proc *p, pid_t tid, bool seeded);
static void flush_quiet(struct pf_thread *th);

/* Meeting a thread costs its files' first reads: counted apart from the
 * sampler's steady cost (and its budget), as threads come and go. */
static struct pf_thread *add_thread(struct cm_pf *pf, struct pf_proc *p, pid_t tid, bool seeded)
{
	uint64_t c0 = pf_clock(CLOCK_THREAD_CPUTIME_ID);
	struct pf_thread *th = add_thread_(pf, p, tid, seeded);

	pf->discover_ns += pf_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
	return th;
}

static struct pf_thread *add_thread_(struct cm_pf *pf, struct pf_proc *p, pid_t tid, bool seeded)
{
	struct pf_thread *th;
	uint64_t now = cm_now_ns();
	ssize_t pi;
	char state = 0;

	if ((th = find_thread(pf, tid)))
		return th->p == p ? th : NULL;
	th = calloc(1, sizeof(*th));
	if (!th)
		return NULL;
	th->tid = tid;
	th->p = p;
	th->s_cause = th->last_cause = CM_PF_NOT_BLOCKED;
	th->every = th->due = 1;
	if (cm_pf_task_open(&th->f, p->pid, tid))
		goto gone;
	if (pf->caps.schedstat && read_schedstat(pf, th))
		goto gone;
	if (read_detail(pf, th, &state) || state == 'Z' || state == 'X')
		goto gone;
	th->detail_ns = now;
	th->detail_pcount = th->cur.pcount;
	th->detail_exec = th->cur.exec;
	th->s_exec = th->cur.exec;
	th->s_pcount = th->cur.pcount;
	if (seeded)
		th->base = th->cur;
	th->last_ns = th->run_ns = now;
	th->run_exec = th->cur.exec;
	th->run_rd = th->cur.rd;
	thread_start(pf, th, seeded, now);
	th->held = p->held;
	th->qbase = p->quiet_ticks;
	th->gen = ++pf->next_gen;
	if (pf->nthreads == pf->capthreads) {
		size_t nc = pf->capthreads ? pf->capthreads * 2 : 64;
		struct pf_thread **n = realloc(pf->threads, nc * sizeof(*n));

		if (!n)
			goto gone;
		pf->threads = n;
		pf->capthreads = nc;
	}
	if (p->ntl == p->captl) {
		size_t nc = p->captl ? p->captl * 2 : 8;
		struct pf_thread **n = realloc(p->tl, nc * sizeof(*n));

		if (!n)
			goto gone;
		p->tl = n;
		p->captl = nc;
	}
	if (hput((void ***)&pf->tmap, &pf->tcap, pf->nthreads, th, tkey))
		goto gone;
	th->idx = pf->nthreads;
	pf->threads[pf->nthreads++] = th;
	th->pidx = p->ntl;
	p->tl[p->ntl++] = th;
	if (pf->nthreads > pf->max_live_threads)
		pf->max_live_threads = pf->nthreads;
	p->nlive++;
	p->threads_seen++;
	if (tid == p->pid)
		p->leader_seen = true;
	if (p->start_ns == 0 || th->start_ns < p->start_ns)
		p->start_ns = th->start_ns;
	if ((pi = pending_find(pf, (uint32_t)tid)) >= 0)
		pending_drop(pf, (size_t)pi);
	return th;
gone:
	cm_pf_task_close(&th->f);
	free(th);
	return NULL;
}

/* Every thread /proc/PID/task lists that the table lacks. */
static void scan_tasks(struct cm_pf *pf, struct pf_proc *p, bool seeded)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)p->pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end;
		long tid = strtol(de->d_name, &end, 10);

		if (*end || tid <= 0)
			continue;
		if (!find_thread(pf, (pid_t)tid))
			add_thread(pf, p, (pid_t)tid, seeded);
	}
	closedir(d);
	p->scan_ns = cm_now_ns();
}

int cm_pf_add_process(struct cm_pf *pf, pid_t pid, bool seeded, bool held, bool command)
{
	struct pf_proc *p;
	char state;
	long nth;

	if (cm_pf_find_proc(pf, pid))
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->pgen = ++pf->next_gen;
	p->seeded = seeded;
	p->held = held;
	p->command = command;
	if (cm_pf_task_open(&p->f, pid, 0)) {
		int err = -errno;

		free(p);
		return err;
	}
	p->clk_ok = clock_getcpuclockid(pid, &p->clk) == 0 && pf_clock(p->clk) != PF_NO_CLOCK;
	read_whole(pf, p, &state, &nth);
	if (!p->have_whole || state == 'Z' || state == 'X') {
		cm_pf_task_close(&p->f);
		free(p);
		return -ESRCH;
	}
	{
		char buf[2048];
		struct cm_pf_stat st;

		if (cm_pf_read(&p->f, PF_STAT, buf, sizeof(buf)) >= 0 && !cm_pf_parse_stat(buf, &st))
			snprintf(p->comm, sizeof(p->comm), "%.*s", (int)sizeof(p->comm) - 1, st.comm);
	}
	if (seeded)
		p->base = p->cur;
	p->tick_clock = p->cur.clock;
	p->last_ns = cm_now_ns();
	if (pf->nprocs == pf->capprocs) {
		size_t nc = pf->capprocs ? pf->capprocs * 2 : 32;
		struct pf_proc **n = realloc(pf->procs, nc * sizeof(*n));

		if (!n) {
			cm_pf_task_close(&p->f);
			free(p);
			return -ENOMEM;
		}
		pf->procs = n;
		pf->capprocs = nc;
	}
	pf->procs[pf->nprocs++] = p;
	pf->procs_seen++;
	scan_tasks(pf, p, seeded);
	p->held = false;	/* only the thread there now waits to exec */
	return 0;
}

void cm_pf_perf_follow(struct cm_pf *pf, pid_t pid, bool enable_on_exec)
{
	struct pf_proc *p = cm_pf_find_proc(pf, pid);

	for (size_t i = 0; pf->perf && p && i < p->ntl; i++) {
		struct pf_thread *th = p->tl[i];
		int err;

		err = cm_perf_follow(pf->perf, th->tid, enable_on_exec);
		if (err && err != -EMFILE && err != -ESRCH)
			cm_debug("perf_event_open on thread %d: %s", (int)th->tid, strerror(-err));
	}
}

/* Children that threads which ran may have started. */
static void scan_children(struct cm_pf *pf, struct pf_thread *th)
{
	char buf[4096], *p, *end;
	ssize_t n = cm_pf_read(&th->f, PF_CHILDREN, buf, sizeof(buf));

	if (n <= 0)
		return;
	for (p = buf; *p; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 0 && !cm_pf_find_proc(pf, (pid_t)pid))
			cm_pf_add_process(pf, (pid_t)pid, false, false, false);
	}
}

/* Without the children file: every process on the host whose parent is followed. */
static void scan_proc_dir(struct cm_pf *pf)
{
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *end, path[64], buf[1024];
		long pid = strtol(de->d_name, &end, 10);
		struct cm_pf_stat st;
		ssize_t n;
		int fd;

		if (*end || pid <= 0 || cm_pf_find_proc(pf, (pid_t)pid))
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		if (!cm_pf_parse_stat(buf, &st) && st.ppid > 0 && cm_pf_find_proc(pf, st.ppid))
			cm_pf_add_process(pf, (pid_t)pid, false, false, false);
	}
	closedir(d);
}

/* ---- ends ------------------------------------------------------------------------------- */

static void free_thread(struct pf_thread *th)
{
	cm_pf_task_close(&th->f);
	free(th->causes);
	free(th);
}

/* Out of the table, the live array and its process's list (swapping the
 * last in: an index loop over either sees the swapped one next). */
static struct pf_thread *unlink_thread(struct cm_pf *pf, struct pf_thread *th)
{
	struct pf_proc *p = th->p;

	hdel((void **)pf->tmap, pf->tcap, (uint32_t)th->tid, tkey);
	pf->threads[th->idx] = pf->threads[--pf->nthreads];
	pf->threads[th->idx]->idx = th->idx;
	p->tl[th->pidx] = p->tl[--p->ntl];
	p->tl[th->pidx]->pidx = th->pidx;
	return th;
}

/*
 * A child reaped before its last figures were read: its parent's stat now
 * holds them, as cminflt and cmajflt (what its reaped children faulted, their
 * own children included). What those grew by beyond the children already
 * accounted is this child's, when it is the only one that can have ended
 * since: no other followed child of the parent is gone, and no child it
 * started ended unseen (perf says; without perf, nothing is taken).
 */
static void faults_from_parent(struct cm_pf *pf, struct pf_proc *p)
{
	struct pf_proc *q = cm_pf_find_proc(pf, p->ppid);
	char buf[2048];
	struct cm_pf_stat st;
	uint64_t mn, mj;

	if (!q || !pf->perf || q == p || cm_pf_read(&q->f, PF_STAT, buf, sizeof(buf)) < 0 ||
	    cm_pf_parse_stat(buf, &st))
		return;
	for (size_t i = 0; i < pf->nprocs; i++) {
		struct pf_proc *r = pf->procs[i];

		if (r != p && !r->ended && r->ppid == q->pid &&
		    cm_pf_read(&r->f, PF_STAT, buf, sizeof(buf)) < 0)
			goto resync;	/* another child gone at the same time */
	}
	if (q->kids_unseen != q->kids_unseen_done)
		goto resync;
	mn = st.cminflt - q->base.cminflt - q->kids_minflt;
	mj = st.cmajflt - q->base.cmajflt - q->kids_majflt;
	if (st.cminflt < q->base.cminflt + q->kids_minflt || st.cmajflt < q->base.cmajflt + q->kids_majflt ||
	    mn < p->cur.minflt + p->cur.cminflt || mj < p->cur.majflt + p->cur.cmajflt)
		goto resync;
	q->kids_minflt += mn;
	q->kids_majflt += mj;
	/* its own: the total less its children's, as last read */
	p->cur.minflt = mn - p->cur.cminflt;
	p->cur.majflt = mj - p->cur.cmajflt;
	p->faults_from_parent = true;
	return;
resync:
	/* what cannot be told apart stays in the closure: count from here */
	q->kids_unseen_done = q->kids_unseen;
	q->kids_minflt = st.cminflt > q->base.cminflt ? st.cminflt - q->base.cminflt : 0;
	q->kids_majflt = st.cmajflt > q->base.cmajflt ? st.cmajflt - q->base.cmajflt : 0;
}

/* The process has no thread left: its final whole-process figures (a zombie
 * still has them), then its rest into the books. */
static void proc_check_end(struct cm_pf *pf, struct pf_proc *p)
{
	char state = 0;
	long nth = 0;

	if (p->ended || p->nlive || p->final_read)
		return;
	read_whole(pf, p, &state, &nth);
	if (state != 'X' && !(state == 'Z' && nth <= 1)) {
		/* threads the table has not met yet: the next scan finds them */
		p->dirty = true;
		return;
	}
	/* its last threads' exit records before its books close */
	cm_perf_drain(pf->perf);
	p->end_ns = p->last_ns;
	if (state == 'X')
		faults_from_parent(pf, p);
	else if (p->ppid > 0) {
		/* a zombie, read: what its parent will take in when it reaps it */
		struct pf_proc *q = cm_pf_find_proc(pf, p->ppid);

		if (q && q != p) {
			q->kids_minflt += p->cur.minflt + p->cur.cminflt;
			q->kids_majflt += p->cur.majflt + p->cur.cmajflt;
		}
	}
	if (p->command && !pf->have_rusage) {
		p->final_read = true;	/* its rusage closes the books: cm_pf_command_rusage */
		return;
	}
	cm_pfl_proc_end(pf, p);
	cm_pf_task_close(&p->f);
}

/* Thread i is gone (its files say so, or it is a zombie whose counters are
 * final): into the books; a leader waits for its process to end. */
static void thread_ended(struct cm_pf *pf, struct pf_thread *th)
{
	struct pf_proc *p = th->p;
	uint64_t est;

	flush_quiet(th);
	unlink_thread(pf, th);

	/* when it ended: perf's exit record says; else, as if it ran and waited
	 * without a break from the last check that saw it run, which its final
	 * counters (a zombie's) say how long */
	if (th->exit_ns) {
		th->last_ns = th->exit_ns;
	} else if (th->run_ns) {
		est = th->run_ns + (th->cur.exec - th->run_exec) + (th->cur.rd - th->run_rd);
		if (est > th->last_ns)
			th->last_ns = est > cm_now_ns() ? cm_now_ns() : est;
	}
	th->ended = true;
	cm_pfl_account_end(pf, th);
	p->nlive--;
	if (th->last_ns > p->last_ns)
		p->last_ns = th->last_ns;
	if (th->tid == p->pid && !p->leader) {
		cm_pf_task_close(&th->f);
		p->leader = th;
	} else {
		cm_pfl_retire(pf, th, 0);
		free_thread(th);
	}
	proc_check_end(pf, p);
}

/* ---- sampling ------------------------------------------------------------------------------ */

static void book(struct pf_thread *th, uint32_t code, uint64_t n)
{
	if (code == CM_PF_NOT_BLOCKED || !n)
		return;
	th->samples += n;
	for (uint32_t i = 0; i < th->ncauses; i++)
		if (th->causes[i].code == code) {
			th->causes[i].n += n;
			return;
		}
	if (th->ncauses == th->capcauses) {
		uint32_t nc = th->capcauses ? th->capcauses * 2 : 4;
		struct pf_cause *c = realloc(th->causes, nc * sizeof(*c));

		if (!c)
			return;
		th->causes = c;
		th->capcauses = nc;
	}
	th->causes[th->ncauses++] = (struct pf_cause){ code, n };
}

/* The cause a full read found, for the samples that cannot read it. */
static uint32_t remember(struct pf_thread *th, uint32_t cause)
{
	if (cause != CM_PF_NOT_BLOCKED)
		th->last_cause = cause;
	return cause;
}

/*
 * Where the thread is now: NOT_BLOCKED, or the cause it waits in.
 *
 * wchan first: the kernel names one only for a task asleep and off the run
 * queue, and then the syscall file answers at once. Without a wchan, the
 * syscall file is not read: for a task that went to sleep but was preempted
 * on its way (still on the run queue) it waits a scheduler tick, and keeps
 * waiting while the CPUs are busy. stat tells such a task (and one the
 * scheduler keeps queued after it slept, delayed dequeue, 6.12) from a
 * running one: asleep, it is booked to the cause its last full read found.
 * A thread waiting in futex, a sleep or a poll needs nothing more than its
 * syscall; stat (is it in D?) only when that can change the answer.
 */
static uint32_t classify_now(struct cm_pf *pf, struct pf_thread *th, int *err)
{
	char wchan[128], sys[256], state = 0;
	ssize_t n = cm_pf_read(&th->f, PF_WCHAN, wchan, sizeof(wchan));
	long nr;

	*err = 0;
	if (n < 0 && n != -EACCES && n != -EPERM) {
		*err = (int)n;
		return CM_PF_NOT_BLOCKED;
	}
	if (n >= 0 && (n == 0 || !strcmp(wchan, "0"))) {
		*err = read_stat(pf, th, &state);
		if (*err)
			return CM_PF_NOT_BLOCKED;
		if (state == 'Z' || state == 'X') {
			*err = -ESRCH;
			return CM_PF_NOT_BLOCKED;
		}
		if (state == 'T' || state == 't')
			return CM_PF_OTHER;
		return state == 'S' || state == 'D' ? th->last_cause : CM_PF_NOT_BLOCKED;
	}
	if (n < 0)
		wchan[0] = 0;
	n = cm_pf_read(&th->f, PF_SYSCALL, sys, sizeof(sys));
	nr = n > 0 ? cm_pf_parse_syscall(sys) : CM_PF_SYS_BAD;
	if (nr == CM_PF_SYS_RUNNING)
		return th->last_cause;	/* asleep when wchan was read, woken since */
	if (waits_interruptibly(nr))
		return remember(th, cm_pf_classify('S', nr, wchan));
	*err = read_stat(pf, th, &state);
	if (*err)
		return CM_PF_NOT_BLOCKED;
	if (state == 'Z' || state == 'X') {
		*err = -ESRCH;
		return CM_PF_NOT_BLOCKED;
	}
	return remember(th, cm_pf_classify(state, nr, wchan));
}

/* The ticks its process stood still (nothing of it ran): the thread was
 * where its last check found it, blocked there, and alive. */
static void flush_quiet(struct pf_thread *th)
{
	struct pf_proc *p = th->p;
	uint64_t n = p->quiet_ticks - th->qbase;

	th->qbase = p->quiet_ticks;
	if (!n || !th->known || th->s_cause == CM_PF_NOT_BLOCKED)
		return;
	book(th, th->s_cause, n);
	if (p->quiet_ns > th->last_ns)
		th->last_ns = p->quiet_ns;
}

void cm_pf_flush(struct cm_pf *pf)
{
	for (size_t i = 0; i < pf->nthreads; i++)
		flush_quiet(pf->threads[i]);
}

/* One check of thread th, for the ticks since its last one. 0, or -errno: gone. */
static int check_thread(struct cm_pf *pf, struct pf_thread *th, uint64_t now)
{
	uint32_t was = th->s_cause, cause;
	uint64_t weight = th->since;
	bool changed = true;
	int err;

	th->since = 0;
	if (pf->caps.schedstat) {
		err = read_schedstat(pf, th);
		if (err)
			return err;
		changed = th->cur.exec != th->s_exec || th->cur.pcount != th->s_pcount;
	}
	pf->checks++;
	if (!changed && th->known && was != CM_PF_NOT_BLOCKED) {
		/* it has not run: still where it was, blocked (an exit takes a run) */
		th->last_ns = now;
		book(th, was, weight);
		if (++th->still >= STILL_BEFORE_BACKOFF && th->every < MAX_EVERY)
			th->every *= 2;
		th->due = th->every;
		return 0;
	}
	if (!changed && th->known && !th->exit_ns && ++th->stale < 2) {
		/* runnable, waiting for a CPU since the last check */
		th->last_ns = now;
		return 0;
	}
	if (!changed && th->known) {
		/* runnable and not run for two checks, or perf says it exited: a zombie? */
		char state = 0;

		err = read_detail(pf, th, &state);
		if (err || state == 'Z' || state == 'X')
			return err ? err : -ESRCH;
		th->stale = 0;
		th->last_ns = now;
		return 0;
	}
	th->stale = 0;
	th->last_ns = now;
	th->run_ns = now;
	th->run_exec = th->cur.exec;
	th->run_rd = th->cur.rd;
	if (changed) {
		th->ran = true;
		th->p->dirty = true;
		th->held = false;
	}
	if (th->held)
		return 0;	/* contactmap's child, waiting to exec: not the command yet */
	cause = classify_now(pf, th, &err);
	if (err)
		return err;
	/* it ran in between: the ticks before this one go to where it was */
	if (weight > 1 && th->known && was != CM_PF_NOT_BLOCKED) {
		book(th, was, weight - 1);
		weight = 1;
	}
	book(th, cause, weight);
	th->known = true;
	th->s_cause = cause;
	th->s_exec = th->cur.exec;
	th->s_pcount = th->cur.pcount;
	th->still = 0;
	th->every = th->due = 1;
	return 0;
}

static void detail_pass(struct cm_pf *pf, bool final)
{
	uint64_t now = cm_now_ns();

	for (size_t i = 0; i < pf->nthreads;) {
		struct pf_thread *th = pf->threads[i];
		char state = 0;
		int err = 0;

		if (final && pf->caps.schedstat)
			err = read_schedstat(pf, th);
		if (!err && (final || !pf->caps.schedstat || th->cur.pcount != th->detail_pcount ||
			     th->cur.exec != th->detail_exec)) {
			err = read_detail(pf, th, &state);
			th->detail_ns = now;
			th->detail_pcount = th->cur.pcount;
			th->detail_exec = th->cur.exec;
			if (!err && state != 'Z' && state != 'X')
				th->last_ns = now;
		}
		if (err || state == 'Z' || state == 'X') {
			thread_ended(pf, th);
			continue;
		}
		i++;
	}
	for (size_t i = 0; i < pf->nprocs; i++) {
		struct pf_proc *p = pf->procs[i];
		char state;
		long nth;

		if (p->ended || (!p->dirty && !final && p->scan_ns))
			continue;
		if (pf->caps.children_file)
			for (size_t k = 0; k < p->ntl; k++)
				if (p->tl[k]->ran || final)
					scan_children(pf, p->tl[k]);
		scan_tasks(pf, p, false);
		read_whole(pf, p, &state, &nth);
		p->last_ns = now;
		p->dirty = false;
		for (size_t k = 0; k < p->ntl; k++)
			p->tl[k]->ran = false;
		proc_check_end(pf, p);
	}
	if (!pf->caps.children_file && (final || now >= pf->next_scan)) {
		scan_proc_dir(pf);
		pf->next_scan = now + SCAN_NS;
	}
}

/* Exit records with no fork record a second on were for threads already
 * seen and gone: every ring is drained each tick. */
static void prune_pending(struct cm_pf *pf, uint64_t now)
{
	for (size_t i = 0; i < pf->npending;) {
		const struct pf_pending *e = &pf->pending[i];

		if (!e->fork_ns && e->exit_ns + PENDING_EXIT_NS < now)
			pending_drop(pf, i);
		else
			i++;
	}
}

/* Every ADAPT_NS: the rate the budget allows, from what a tick cost since
 * the last time (ticks achieved, not asked for: where contactmap waited for
 * a CPU there were fewer), with a fifth to spare; up at most twofold a time,
 * as one moment of a program need not be like the next. */
static void adapt(struct cm_pf *pf, uint64_t now)
{
	uint64_t spent = pf->window_cpu_ns, ticks = pf->ticks - pf->window_ticks;
	unsigned hz = pf->hz;
	double allowed;

	pf->window_cpu_ns = 0;
	pf->window_ticks = pf->ticks;
	if (!ticks || !spent)
		return;
	allowed = pf->o.budget * 1e9 / ((double)spent / (double)ticks) * 0.8;
	if ((double)spent > pf->o.budget * (double)ADAPT_NS || allowed < hz)
		hz = allowed < 1 ? 1 : (unsigned)allowed;
	else if (hz < pf->o.hz)
		hz = allowed > hz * 2.0 ? hz * 2 : (unsigned)allowed;
	if (hz > pf->o.hz)
		hz = pf->o.hz;
	cm_debug("procfs: adapt: %llu ns in %llu ticks, allowed %.1f Hz, %u -> %u Hz", (unsigned long long)spent,
		 (unsigned long long)ticks, allowed, pf->hz, hz);
	if (hz < pf->hz)
		pf->lowered++;
	if (hz != pf->hz) {
		pf->hz = hz;
		pf->tick_ns = 1000000000ULL / hz;
		pf->next_tick = now + pf->tick_ns;
		if (hz < pf->min_hz) {
			pf->min_hz = hz;
			pf->threads_at_min = pf->nthreads;
		}
	}
}

void cm_pf_tick(struct cm_pf *pf)
{
	uint64_t now = cm_now_ns(), c0, c1, d0 = pf->discover_ns;

	if (now < pf->next_tick && now < pf->next_detail)
		return;
	c0 = pf_clock(CLOCK_THREAD_CPUTIME_ID);
	cm_perf_drain(pf->perf);
	if (now >= pf->next_tick) {
		pf->ticks++;
		/* a process whose CPU clock stood still ran nothing: its threads
		 * are where the last tick found them, and are not even looked at */
		for (size_t i = 0; i < pf->nprocs; i++) {
			struct pf_proc *p = pf->procs[i];
			/* O(threads) in the kernel (thread_group_cputime): ~160 ns a
			 * thread with the cache cold, a tenth of a schedstat read */
			uint64_t c = p->clk_ok && !p->ended ? pf_clock(p->clk) : PF_NO_CLOCK;

			if (p->ended)
				continue;
			p->quiet = c != PF_NO_CLOCK && c == p->tick_clock;
			if (p->quiet) {
				p->quiet_ticks++;
				p->quiet_ns = now;
				pf->thread_ticks += p->ntl;
				continue;
			}
			if (c != PF_NO_CLOCK) {
				p->dirty = true;
				p->tick_clock = p->cur.clock = c;
			}
			for (size_t k = 0; k < p->ntl;) {
				struct pf_thread *th = p->tl[k];

				pf->thread_ticks++;
				flush_quiet(th);
				th->since++;
				if (th->due > 1) {
					th->due--;
					k++;
					continue;
				}
				if (check_thread(pf, th, now)) {
					thread_ended(pf, th);
					continue;	/* p->tl[k] is another thread now */
				}
				k++;
			}
		}
		pf->next_tick += pf->tick_ns;
		if (pf->next_tick <= now)
			pf->next_tick = now + pf->tick_ns;	/* fell behind: no burst */
	}
	c1 = pf_clock(CLOCK_THREAD_CPUTIME_ID);
	pf->sampler_ns += sub0u(c1 - c0, pf->discover_ns - d0);
	pf->window_cpu_ns += sub0u(c1 - c0, pf->discover_ns - d0);
	if (now >= pf->next_detail) {
		d0 = pf->discover_ns;
		detail_pass(pf, false);
		pf->next_detail = now + pf->o.detail_ns;
		pf->detail_ns_cpu += sub0u(pf_clock(CLOCK_THREAD_CPUTIME_ID) - c1, pf->discover_ns - d0);
	}
	if (now >= pf->next_adapt) {
		prune_pending(pf, now);
		adapt(pf, now);
		pf->next_adapt = now + ADAPT_NS;
	}
	if (now >= pf->next_trim) {
		cm_books_trim(pf->tr->books, now, BOOKS_GRACE_NS);
		pf->next_trim = now + TRIM_NS;
	}
}

int cm_pf_next_ms(const struct cm_pf *pf)
{
	uint64_t now = cm_now_ns(), next = pf->next_tick < pf->next_detail ? pf->next_tick : pf->next_detail;

	return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

void cm_pf_final(struct cm_pf *pf)
{
	uint64_t c0 = pf_clock(CLOCK_THREAD_CPUTIME_ID);

	cm_pf_flush(pf);
	cm_perf_drain(pf->perf);
	detail_pass(pf, true);
	cm_perf_drain(pf->perf);
	pf->detail_ns_cpu += pf_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
}

size_t cm_pf_live(const struct cm_pf *pf)
{
	size_t n = 0;

	for (size_t i = 0; i < pf->nprocs; i++)
		n += !pf->procs[i]->ended;
	return n;
}

/* ---- perf records ------------------------------------------------------------------------------ */

/* A task that started and ended between two reads: never seen alive. */
static void count_unseen(struct cm_pf *pf, uint32_t pid, uint32_t ppid, uint32_t tid, uint64_t fork_ns,
			 uint64_t exit_ns)
{
	struct pf_proc *p = cm_pf_find_proc(pf, (pid_t)pid), *q;
	uint64_t life = exit_ns > fork_ns ? exit_ns - fork_ns : 0;

	if (tid == pid && (q = cm_pf_find_proc(pf, (pid_t)ppid)))
		q->kids_unseen++;	/* its faults go to its parent's cminflt, unaccounted */

	if (p) {
		p->unseen_threads++;
		p->unseen_ns += life;
	} else {
		pf->orphan_threads++;
		pf->orphan_procs += tid == pid;
		pf->orphan_ns += life;
	}
}

static struct pf_pending *pending_add(struct cm_pf *pf, uint32_t tid, uint32_t pid)
{
	if (pf->npending == pf->cappending) {
		size_t nc = pf->cappending ? pf->cappending * 2 : 64;
		struct pf_pending *n = realloc(pf->pending, nc * sizeof(*n));

		if (!n)
			return NULL;
		pf->pending = n;
		pf->cappending = nc;
	}
	pf->pending[pf->npending] = (struct pf_pending){ .tid = tid, .pid = pid };
	return &pf->pending[pf->npending++];
}

/* Each CPU has a ring of its own, drained in turn: a task's exit record can
 * come before its fork record, when the two happened on different CPUs. */
static void on_fork(void *ctx, uint32_t pid, uint32_t ppid, uint32_t tid, uint32_t ptid, uint64_t ns)
{
	struct cm_pf *pf = ctx;
	ssize_t pi = pending_find(pf, tid);
	struct pf_pending *e;
	struct pf_proc *p;

	if (find_thread(pf, (pid_t)tid))
		return;
	if (pi >= 0) {
		if (pf->pending[pi].exit_ns) {
			count_unseen(pf, pid, ppid, tid, ns, pf->pending[pi].exit_ns);
			pending_drop(pf, (size_t)pi);
		}
		return;
	}
	e = pending_add(pf, tid, pid);
	if (!e)
		return;
	e->fork_ns = ns;
	e->ppid = ppid;
	/* meet it now, while it may still be alive */
	p = cm_pf_find_proc(pf, (pid_t)pid);
	if (p)
		add_thread(pf, p, (pid_t)tid, false);
	else if (tid == pid)
		cm_pf_add_process(pf, (pid_t)pid, false, false, false);
}

static void on_exit_rec(void *ctx, uint32_t pid, uint32_t tid, uint64_t ns)
{
	struct cm_pf *pf = ctx;
	struct pf_thread *th = find_thread(pf, (pid_t)tid);
	ssize_t pi = pending_find(pf, tid);
	struct pf_pending *e;

	if (th) {
		th->exit_ns = ns;
		return;
	}
	if (pi >= 0 && pf->pending[pi].fork_ns) {
		count_unseen(pf, pid, pf->pending[pi].ppid, tid, pf->pending[pi].fork_ns, ns);
		pending_drop(pf, (size_t)pi);
		return;
	}
	/* seen and gone from the table already, or its fork record is still in
	 * another CPU's ring: kept until that comes */
	if (pi < 0 && (e = pending_add(pf, tid, pid)))
		e->exit_ns = ns;
}

static void on_comm(void *ctx, uint32_t pid, uint32_t tid, char *comm, size_t sz)
{
	struct cm_pf *pf = ctx;
	struct pf_thread *th = find_thread(pf, (pid_t)tid);
	struct pf_proc *p = th ? th->p : cm_pf_find_proc(pf, (pid_t)pid);

	snprintf(comm, sz, "%s", th ? th->comm : p ? p->comm : "");
}

/* ---- life --------------------------------------------------------------------------------------- */

struct cm_pf *cm_pf_new(struct cm_tracer *tr, const struct cm_pf_caps *caps, const struct cm_pf_opts *o)
{
	struct cm_pf *pf = calloc(1, sizeof(*pf));
	uint64_t now = cm_now_ns();

	if (!pf)
		return NULL;
	pf->tr = tr;
	pf->caps = *caps;
	pf->o = *o;
	if (!pf->o.hz)
		pf->o.hz = 100;
	if (!pf->o.detail_ns)
		pf->o.detail_ns = 100000000ULL;
	if (pf->o.budget <= 0)
		pf->o.budget = 0.01;
	pf->hz = pf->min_hz = pf->o.hz;
	pf->tick_ns = 1000000000ULL / pf->hz;
	pf->boot_offset_ns = pf_clock(CLOCK_BOOTTIME) - now;
	pf->window_start = now;
	pf->next_tick = now + pf->tick_ns;
	pf->next_detail = now + pf->o.detail_ns;
	pf->next_adapt = now + ADAPT_NS;
	pf->next_trim = now + TRIM_NS;
	if (caps->perf) {
		static const struct cm_perf_ops ops = { .fork = on_fork, .exit = on_exit_rec, .comm = on_comm };

		pf->perf = cm_perf_new(o->stack_hz, tr->stacks, &ops, pf, pf->perf_error, sizeof(pf->perf_error));
	} else {
		snprintf(pf->perf_error, sizeof(pf->perf_error), "%s", caps->perf_error);
	}
	return pf;
}

void cm_pf_open_window(struct cm_pf *pf, uint64_t now)
{
	pf->window_start = now;
	pf->next_tick = now + pf->tick_ns;
	pf->next_detail = now + pf->o.detail_ns;
}

void cm_pf_free(struct cm_pf *pf)
{
	if (!pf)
		return;
	while (pf->nthreads)
		free_thread(unlink_thread(pf, pf->threads[pf->nthreads - 1]));
	for (size_t i = 0; i < pf->nprocs; i++) {
		if (pf->procs[i]->leader)
			free_thread(pf->procs[i]->leader);
		free(pf->procs[i]->tl);
		cm_pf_task_close(&pf->procs[i]->f);
		free(pf->procs[i]);
	}
	cm_perf_free(pf->perf);
	free(pf->threads);
	free(pf->tmap);
	free(pf->procs);
	free(pf->pending);
	free(pf);
}


void cm_pf_command_exited(struct cm_pf *pf, pid_t pid, int status)
{
	struct pf_proc *p = cm_pf_find_proc(pf, pid);

	pf->command = pid;
	if (p) {
		/* the kernel's exit_code word, as the BPF tier reports it */
		p->exit_code = status;
		p->has_exit_code = true;
	}
}

void cm_pf_command_rusage(struct cm_pf *pf, const struct rusage *ru)
{
	struct pf_proc *p = cm_pf_find_proc(pf, pf->command);

	pf->ru = *ru;
	pf->have_rusage = true;
	cm_pfl_close_books(pf);
	if (p && p->final_read) {
		p->final_read = false;
		cm_pfl_proc_end(pf, p);
		cm_pf_task_close(&p->f);
	}
}

bool cm_pf_has_perf(const struct cm_pf *pf)
{
	return pf->perf != NULL;
}

const char *cm_pf_perf_error(const struct cm_pf *pf)
{
	return pf->perf_error;
}
