/* ctx_switch [ROUNDS] [CPU]: two threads pass one byte back and forth over two
 * pipes ROUNDS times; ns per round trip (two one-way handoffs, two switches).
 *
 * Both threads are pinned to one CPU (CPU, default: the one the process starts
 * on; -1: no pinning), as lmbench's lat_ctx does: then every handoff needs a
 * context switch (the reader cannot be running elsewhere when the byte
 * arrives), so a round costs each thread at least one switch, voluntary (it
 * blocked in read) or involuntary (the wakeup preempted it before its read).
 * Unpinned, on an idle SMP machine the reader may still be spinning down on
 * another CPU and some handoffs switch nothing.
 *
 * Each thread reads its own voluntary/nonvoluntary_ctxt_switches from
 * /proc/self/task/<tid>/status (through its own fd: a shared seq_file would
 * add mutex waits) right before and after the timed loop. */
#include "mb.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define USAGE "ctx_switch [ROUNDS] [CPU|-1]"

static int ping[2], pong[2];
static long rounds;
static _Atomic int b_ready;

struct side {
	pid_t tid;
	int status_fd;
	long vol[2], invol[2];	/* [0] before the loop, [1] after */
};
static struct side A, B;

static void ctxt(struct side *s, int when)
{
	char buf[4096], *p;
	ssize_t n = pread(s->status_fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		mb_die("ctx_switch", "pread status");
	buf[n] = 0;
	p = strstr(buf, "\nvoluntary_ctxt_switches:");
	if (!p)
		mb_die("ctx_switch", "no voluntary_ctxt_switches in status");
	s->vol[when] = strtol(p + 25, NULL, 10);
	p = strstr(buf, "\nnonvoluntary_ctxt_switches:");
	if (!p)
		mb_die("ctx_switch", "no nonvoluntary_ctxt_switches in status");
	s->invol[when] = strtol(p + 28, NULL, 10);
}

static void open_status(struct side *s)
{
	char path[64];

	s->tid = mb_gettid();
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)s->tid);
	s->status_fd = open(path, O_RDONLY);
	if (s->status_fd < 0)
		mb_die("ctx_switch", path);
}

static void xfer(int rfd, int wfd, int read_first)
{
	char c = 'x';

	if (read_first && read(rfd, &c, 1) != 1)
		mb_die("ctx_switch", "read");
	if (write(wfd, &c, 1) != 1)
		mb_die("ctx_switch", "write");
	if (!read_first && read(rfd, &c, 1) != 1)
		mb_die("ctx_switch", "read");
}

static void *thread_b(void *arg)
{
	(void)arg;
	open_status(&B);
	ctxt(&B, 0);
	atomic_store(&b_ready, 1);
	for (long i = 0; i < rounds; i++)
		xfer(ping[0], pong[1], 1);
	ctxt(&B, 1);
	return NULL;
}

static void print_side(const char *name, struct side *s, const char *sep)
{
	printf("{\"name\":\"%s\",\"tid\":%d,\"voluntary\":%ld,\"involuntary\":%ld,"
	       "\"voluntary_before\":%ld,\"involuntary_before\":%ld}%s",
	       name, (int)s->tid, s->vol[1], s->invol[1], s->vol[0], s->invol[0], sep);
}

int main(int argc, char **argv)
{
	long long t0, elapsed;
	pthread_t th;
	long cpu;

	rounds = mb_arg(argc, argv, 1, 20000, USAGE);
	cpu = argc > 2 && !strcmp(argv[2], "-1") ? -1 : mb_arg(argc, argv, 2, sched_getcpu(), USAGE);
	if (argc > 3)
		mb_usage(USAGE);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))	/* the new thread inherits it */
			mb_die("ctx_switch", "sched_setaffinity");
	}
	if (pipe(ping) || pipe(pong))
		mb_die("ctx_switch", "pipe");
	open_status(&A);
	if (pthread_create(&th, NULL, thread_b, NULL))
		mb_die("ctx_switch", "pthread_create");
	while (!atomic_load(&b_ready))
		sched_yield();
	ctxt(&A, 0);
	t0 = mb_now_ns();
	for (long i = 0; i < rounds; i++)
		xfer(pong[0], ping[1], 0);
	elapsed = mb_now_ns() - t0;
	pthread_join(th, NULL);
	ctxt(&A, 1);
	printf("{\"bench\":\"ctx_switch\",\"pid\":%d,\"cpu\":%ld,\"rounds\":%ld,"
	       "\"elapsed_ns\":%lld,\"ns_per_round_trip\":%.1f,\"threads\":[",
	       getpid(), cpu, rounds, elapsed, mb_per(elapsed, rounds));
	print_side("main", &A, ",");
	print_side("peer", &B, "");
	printf("]}\n");
	return 0;
}
