/* pingpong ROUNDS: two threads pass one byte back and forth over two pipes
 * ROUNDS times. Each thread reads its own voluntary_ctxt_switches from
 * /proc/self/task/<tid>/status after the loop (the main thread after the join).
 *
 * To make "each read blocks" ground truth and not a race (on an SMP machine
 * the byte often arrives before the reader has gone to sleep), a writer only
 * writes once the reader is off the run queue: the reader publishes the round
 * number right before its read(), and the writer waits until the reader's
 * /proc/<tid>/wchan is non-zero (the kernel shows a wchan only for a task that
 * is blocked and dequeued, i.e. after its voluntary switch was counted).
 * Every round thus costs each thread at least one voluntary switch. Each
 * thread reads /proc through its own file descriptors (a shared seq_file
 * would make the threads block on its mutex). */
#include "wl.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static int ping[2], pong[2];
static long rounds;

struct side {
	pid_t tid;
	int self_status_fd;	/* own /proc/self/task/<tid>/status */
	int peer_wchan_fd;	/* the other thread's /proc/self/task/<tid>/wchan */
	_Atomic long round;	/* round whose read() this thread is about to do */
	long nvcsw_start, nvcsw_end;
};
static struct side A = { .round = -1 }, B = { .round = -1 };
static _Atomic int b_ready;

static long nvcsw(struct side *s)
{
	char buf[4096], *p;
	ssize_t n = pread(s->self_status_fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		wl_die("pread status");
	buf[n] = 0;
	p = strstr(buf, "\nvoluntary_ctxt_switches:");
	if (!p)
		wl_die("no voluntary_ctxt_switches");
	return strtol(p + 25, NULL, 10);
}

static int open_task_file(pid_t tid, const char *what)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, what);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		wl_die(path);
	return fd;
}

/* Non-zero when the task is blocked off the run queue. */
static int peer_blocked(struct side *me)
{
	char buf[128];
	ssize_t n = pread(me->peer_wchan_fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		wl_die("pread wchan");
	buf[n > 0 ? n : 0] = 0;
	return n > 0 && strcmp(buf, "0") != 0;
}

static void blocking_read(struct side *me, int fd, long i)
{
	char c;

	atomic_store(&me->round, i);
	if (read(fd, &c, 1) != 1)
		wl_die("read");
}

/* Wait until the peer is blocked inside its read of round i, then write. */
static void write_when_blocked(struct side *me, struct side *peer, int fd, long i)
{
	long long deadline = wl_now_ns(CLOCK_MONOTONIC) + 10000000000LL;
	char c = 'x';

	while (atomic_load(&peer->round) != i || !peer_blocked(me)) {
		if (wl_now_ns(CLOCK_MONOTONIC) > deadline) {
			fprintf(stderr, "workload: peer never blocked (no /proc wchan?)\n");
			exit(103);
		}
		sched_yield();	/* a runnable yield is an involuntary switch */
	}
	if (write(fd, &c, 1) != 1)
		wl_die("write");
}

static void *thread_b(void *arg)
{
	long i;

	(void)arg;
	B.tid = gettid();
	B.self_status_fd = open_task_file(B.tid, "status");
	B.peer_wchan_fd = open_task_file(A.tid, "wchan");
	B.nvcsw_start = nvcsw(&B);
	atomic_store(&b_ready, 1);
	for (i = 0; i < rounds; i++) {
		blocking_read(&B, ping[0], i);
		write_when_blocked(&B, &A, pong[1], i);
	}
	B.nvcsw_end = nvcsw(&B);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	long i;

	rounds = wl_arg(argc, argv, 1, 500);
	A.tid = gettid();
	A.self_status_fd = open_task_file(A.tid, "status");
	A.nvcsw_start = nvcsw(&A);
	if (pipe(ping) || pipe(pong))
		wl_die("pipe");
	if (pthread_create(&th, NULL, thread_b, NULL))
		wl_die("pthread_create");
	while (!atomic_load(&b_ready))
		sched_yield();
	A.peer_wchan_fd = open_task_file(B.tid, "wchan");
	for (i = 0; i < rounds; i++) {
		write_when_blocked(&A, &B, ping[1], i);
		blocking_read(&A, pong[0], i);
	}
	pthread_join(th, NULL);
	A.nvcsw_end = nvcsw(&A);
	printf("{\"workload\":\"pingpong\",\"pid\":%d,\"rounds\":%ld,\"threads\":["
	       "{\"tid\":%d,\"nvcsw\":%ld,\"nvcsw_at_start\":%ld},"
	       "{\"tid\":%d,\"nvcsw\":%ld,\"nvcsw_at_start\":%ld}],"
	       "\"total\":%ld,\"total_at_start\":%ld}\n",
	       getpid(), rounds, A.tid, A.nvcsw_end, A.nvcsw_start, B.tid, B.nvcsw_end,
	       B.nvcsw_start, A.nvcsw_end + B.nvcsw_end, A.nvcsw_start + B.nvcsw_start);
	return 0;
}
