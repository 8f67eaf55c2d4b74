/* pfwork MODE ARGS: workloads of known OS work for the procfs tier's tests
 * (tests/test_procfs.py) and its benchmark (bench/procfs.py). Each prints one
 * JSON line last, with its own getrusage(RUSAGE_SELF) and (RUSAGE_CHILDREN)
 * taken after every thread is joined and every child waited for, so that
 * nothing it does afterwards (one write, exit_group) can fault or switch
 * more than the kernel's own exit path does.
 *
 *   burn MS              MS ms of user-space CPU
 *   split MS             MS ms of user CPU, then MS ms of kernel CPU (reads of /dev/zero)
 *   sleep N USEC         N clock_nanosleep calls of USEC
 *   pingpong ROUNDS      two threads pass a byte over two pipes ROUNDS times
 *   touch PAGES          first touch of PAGES anonymous pages
 *   two MS               a child burns MS ms and touches 1000 pages; the parent
 *                        burns MS/2 ms and touches 500 pages, then waits
 *   mix MS               three threads for MS ms: one sleeps (5 ms naps), one reads a
 *                        pipe the main thread writes every 5 ms, one waits on a
 *                        condition variable signalled every 5 ms
 *   runq N MS            N threads each burn MS ms of CPU, all on CPU 0
 *   churn T P            T threads and P processes that each live a moment
 *   idle N SECS          N threads blocked on a futex for SECS seconds (bench)
 *   busy N SECS          N threads that each run 1 ms and sleep 9 ms (bench)
 */
#include "wl.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

static volatile unsigned long sink;
static char out[4096];

static void burn_ms(long ms)
{
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;

	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 20000; i++)
			sink += i;
}

/* Kernel CPU: copying zeroes out of /dev/zero, MS ms of this thread's time. */
static void kernel_ms(long ms)
{
	static char buf[1 << 16];
	int fd = open("/dev/zero", O_RDONLY);
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;

	if (fd < 0)
		wl_die("/dev/zero");
	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 16; i++)
			if (read(fd, buf, sizeof(buf)) != sizeof(buf))
				wl_die("read /dev/zero");
	close(fd);
}

static void touch(long pages)
{
	long psz = sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, pages * psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		wl_die("mmap");
	for (long i = 0; i < pages; i++)
		m[i * psz] = 1;
	munmap(m, pages * psz);
}

static int ru_json(char *buf, size_t sz, const char *name, int who)
{
	struct rusage ru;

	getrusage(who, &ru);
	return snprintf(buf, sz, "\"%s\":{\"utime_ns\":%lld,\"stime_ns\":%lld,\"minflt\":%ld,"
			"\"majflt\":%ld,\"nvcsw\":%ld,\"nivcsw\":%ld}", name, wl_tv_ns(ru.ru_utime),
			wl_tv_ns(ru.ru_stime), ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw);
}

/* The closing line: mode-specific fields in extra, then both rusages. */
static void finish(const char *mode, const char *extra)
{
	char self[512], kids[512];
	int n;

	memset(self, 0, sizeof(self));
	memset(kids, 0, sizeof(kids));
	/* once for nothing: the pages of the code that runs after the rusage
	 * that is the ground truth (formatting, write, the syscall wrapper) are
	 * faulted in before it is taken */
	if (write(1, out, 0) < 0 || syscall(SYS_getpid) < 0)
		wl_die("warm-up");
	ru_json(kids, sizeof(kids), "children", RUSAGE_CHILDREN);
	ru_json(self, sizeof(self), "self", RUSAGE_SELF);
	n = snprintf(out, sizeof(out), "{\"workload\":\"pfwork\",\"mode\":\"%s\",\"pid\":%d%s%s,%s,%s}\n",
		     mode, getpid(), *extra ? "," : "", extra, self, self);
	ru_json(self, sizeof(self), "self", RUSAGE_SELF);
	ru_json(kids, sizeof(kids), "children", RUSAGE_CHILDREN);
	n = snprintf(out, sizeof(out), "{\"workload\":\"pfwork\",\"mode\":\"%s\",\"pid\":%d%s%s,%s,%s}\n",
		     mode, getpid(), *extra ? "," : "", extra, self, kids);
	if (write(1, out, n) != n)
		wl_die("write");
	syscall(SYS_exit_group, 0);
}

/* ---- pingpong --------------------------------------------------------------- */

static int ping[2], pong[2];
static long rounds;

static void *pong_thread(void *arg)
{
	char c;

	for (long i = 0; i < rounds; i++) {
		if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
			wl_die("pong");
	}
	return arg;
}

/* ---- mix ------------------------------------------------------------------- */

static _Atomic int stop;
static int mpipe[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long signals;

static void *sleeper(void *arg)
{
	struct timespec ts = { 0, 5000000 };

	while (!atomic_load(&stop))
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	return arg;
}

static void *reader(void *arg)
{
	char c;

	while (read(mpipe[0], &c, 1) == 1 && c != 'q')
		;
	return arg;
}

static void *waiter(void *arg)
{
	long seen = 0;

	pthread_mutex_lock(&mu);
	while (!atomic_load(&stop)) {
		while (signals == seen && !atomic_load(&stop))
			pthread_cond_wait(&cv, &mu);
		seen = signals;
	}
	pthread_mutex_unlock(&mu);
	return arg;
}

/* ---- runq, churn, idle, busy ----------------------------------------------------- */

static long burn_each;

static void *burner(void *arg)
{
	burn_ms(burn_each);
	return arg;
}

static void *moment(void *arg)
{
	for (int i = 0; i < 1000; i++)
		sink += i;
	return arg;
}

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static long idle_secs;

static void *idler(void *arg)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += idle_secs;
	pthread_mutex_lock(&idle_mu);
	while (pthread_cond_timedwait(&idle_cv, &idle_mu, &until) == 0)
		;
	pthread_mutex_unlock(&idle_mu);
	return arg;
}

static void *busy(void *arg)
{
	long long end = wl_now_ns(CLOCK_MONOTONIC) + idle_secs * 1000000000LL;
	struct timespec nap = { 0, 9000000 };

	while (wl_now_ns(CLOCK_MONOTONIC) < end) {
		burn_ms(1);
		clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
	}
	return arg;
}

static void threads_run(long n, void *(*fn)(void *))
{
	pthread_t *t = calloc(n, sizeof(*t));

	for (long i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, fn, NULL))
			wl_die("pthread_create");
	for (long i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	free(t);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	char extra[512] = "";

	memset(out, 0, sizeof(out));
	if (!strcmp(mode, "burn")) {
		burn_ms(wl_arg(argc, argv, 2, 300));
	} else if (!strcmp(mode, "split")) {
		long ms = wl_arg(argc, argv, 2, 300);

		burn_ms(ms);
		kernel_ms(ms);
	} else if (!strcmp(mode, "sleep")) {
		long n = wl_arg(argc, argv, 2, 20), us = wl_arg(argc, argv, 3, 10000);
		struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

		for (long i = 0; i < n; i++)
			clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		snprintf(extra, sizeof(extra), "\"requested_ns\":%lld", (long long)n * us * 1000);
	} else if (!strcmp(mode, "pingpong")) {
		pthread_t t;
		char c = 'x';

		rounds = wl_arg(argc, argv, 2, 500);
		if (pipe(ping) || pipe(pong) || pthread_create(&t, NULL, pong_thread, NULL))
			wl_die("pingpong setup");
		for (long i = 0; i < rounds; i++)
			if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
				wl_die("ping");
		pthread_join(t, NULL);
	} else if (!strcmp(mode, "touch")) {
		touch(wl_arg(argc, argv, 2, 20000));
	} else if (!strcmp(mode, "two")) {
		long ms = wl_arg(argc, argv, 2, 300);
		pid_t c = fork();
		int st;

		if (c < 0)
			wl_die("fork");
		if (c == 0) {
			burn_ms(ms);
			touch(1000);
			syscall(SYS_exit_group, 0);
		}
		burn_ms(ms / 2);
		touch(500);
		if (waitpid(c, &st, 0) != c)
			wl_die("waitpid");
		snprintf(extra, sizeof(extra), "\"child\":%d", (int)c);
	} else if (!strcmp(mode, "mix")) {
		long ms = wl_arg(argc, argv, 2, 1500);
		long long end = wl_now_ns(CLOCK_MONOTONIC) + ms * 1000000LL;
		struct timespec ts = { 0, 5000000 };
		pthread_t t[3];

		if (pipe(mpipe) || pthread_create(&t[0], NULL, sleeper, NULL) ||
		    pthread_create(&t[1], NULL, reader, NULL) || pthread_create(&t[2], NULL, waiter, NULL))
			wl_die("mix setup");
		while (wl_now_ns(CLOCK_MONOTONIC) < end) {
			clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
			if (write(mpipe[1], "x", 1) != 1)
				wl_die("write");
			pthread_mutex_lock(&mu);
			signals++;
			pthread_cond_signal(&cv);
			pthread_mutex_unlock(&mu);
		}
		atomic_store(&stop, 1);
		if (write(mpipe[1], "q", 1) != 1)
			wl_die("write");
		pthread_mutex_lock(&mu);
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		for (int i = 0; i < 3; i++)
			pthread_join(t[i], NULL);
		snprintf(extra, sizeof(extra), "\"tids\":3");
	} else if (!strcmp(mode, "runq")) {
		long n = wl_arg(argc, argv, 2, 4);
		cpu_set_t set;

		burn_each = wl_arg(argc, argv, 3, 200);
		CPU_ZERO(&set);
		CPU_SET(0, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			wl_die("sched_setaffinity");
		threads_run(n, burner);
	} else if (!strcmp(mode, "churn")) {
		long nt = wl_arg(argc, argv, 2, 2000), np = wl_arg(argc, argv, 3, 500);

		/* a batch of threads, a batch of processes, until both are done */
		for (long t = 0, p = 0; t < nt || p < np;) {
			for (int k = 0; k < 20 && t < nt; k++, t++) {
				pthread_t th;

				if (pthread_create(&th, NULL, moment, NULL))
					wl_die("pthread_create");
				pthread_join(th, NULL);
			}
			for (int k = 0; k < 5 && p < np; k++, p++) {
				pid_t c = fork();

				if (c < 0)
					wl_die("fork");
				if (c == 0) {
					touch(10);
					syscall(SYS_exit_group, 0);
				}
				if (waitpid(c, NULL, 0) != c)
					wl_die("waitpid");
			}
		}
		snprintf(extra, sizeof(extra), "\"threads\":%ld,\"processes\":%ld", nt, np);
	} else if (!strcmp(mode, "idle") || !strcmp(mode, "busy")) {
		long n = wl_arg(argc, argv, 2, 10);

		idle_secs = wl_arg(argc, argv, 3, 5);
		threads_run(n, !strcmp(mode, "idle") ? idler : busy);
		snprintf(extra, sizeof(extra), "\"threads\":%ld", n);
	} else {
		fprintf(stderr, "usage: pfwork burn|split|sleep|pingpong|touch|two|mix|runq|churn|idle|busy ...\n");
		return 2;
	}
	finish(mode, extra);
	return 0;
}
