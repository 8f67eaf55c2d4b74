/* churn MODE N ALIVE CALLS [NAPS [REAP_MS]]: N short-lived tasks over the run,
 * at most ALIVE at a time, each making CALLS getppid calls and NAPS sleeps of
 * 1 ms, and exiting.
 *   MODE threads: pthreads of this process (batches of ALIVE, joined);
 *   MODE procs:   forked children (batches of ALIVE, each _exit(0), reaped
 *                 with wait4; with REAP_MS, only once every child of the batch
 *                 is a zombie and REAP_MS more have passed, so that each has
 *                 made its final switch, which its rusage then includes).
 * Prints the ground truth: getppid calls of the tasks, and (procs) the
 * children's voluntary and involuntary switches from wait4's rusage. */
#include "wl.h"
#include <pthread.h>
#include <sys/wait.h>

static long calls, naps;

static void *worker(void *arg)
{
	struct timespec ms = { 0, 1000000 };

	for (long j = 0; j < calls; j++)
		wl_getppid();
	for (long j = 0; j < naps; j++)
		nanosleep(&ms, NULL);
	return NULL;
}

/* Whether /proc says pid is a zombie. */
static int zombie(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "threads";
	long n = wl_arg(argc, argv, 2, 1000), alive = wl_arg(argc, argv, 3, 8);
	long done = 0, nvcsw = 0, nivcsw = 0;
	pthread_t *th;
	pid_t *kids;

	long reap_ms;

	calls = wl_arg(argc, argv, 4, 3);
	naps = wl_arg(argc, argv, 5, 0);
	reap_ms = wl_arg(argc, argv, 6, 0);
	if (n < 1 || alive < 1 || alive > 100000 || calls < 0) {
		fprintf(stderr, "workload: churn threads|procs N ALIVE CALLS\n");
		return 101;
	}
	th = calloc(alive, sizeof(*th));
	kids = calloc(alive, sizeof(*kids));
	if (!th || !kids)
		wl_die("calloc");
	if (!strcmp(mode, "threads")) {
		while (done < n) {
			long k = n - done < alive ? n - done : alive;

			for (long i = 0; i < k; i++)
				if (pthread_create(&th[i], NULL, worker, NULL))
					wl_die("pthread_create");
			for (long i = 0; i < k; i++)
				pthread_join(th[i], NULL);
			done += k;
		}
	} else if (!strcmp(mode, "procs")) {
		while (done < n) {
			long k = n - done < alive ? n - done : alive;

			for (long i = 0; i < k; i++) {
				kids[i] = fork();
				if (kids[i] < 0)
					wl_die("fork");
				if (kids[i] == 0) {
					worker(NULL);
					_exit(0);
				}
			}
			if (reap_ms) {
				struct timespec poll = { 0, 200000 }, delay = { reap_ms / 1000,
									    (reap_ms % 1000) * 1000000 };

				for (long i = 0; i < k; i++)
					while (!zombie(kids[i]))
						nanosleep(&poll, NULL);
				nanosleep(&delay, NULL);
			}
			for (long i = 0; i < k; i++) {
				struct rusage ru;
				int st;

				if (wait4(kids[i], &st, 0, &ru) != kids[i] || !WIFEXITED(st))
					wl_die("wait4");
				nvcsw += ru.ru_nvcsw;
				nivcsw += ru.ru_nivcsw;
			}
			done += k;
		}
	} else {
		fprintf(stderr, "workload: mode threads or procs\n");
		return 101;
	}
	printf("{\"workload\":\"churn\",\"mode\":\"%s\",\"pid\":%d,\"tasks\":%ld,\"alive\":%ld,"
	       "\"getppid\":%ld,\"children_nvcsw\":%ld,\"children_nivcsw\":%ld}\n",
	       mode, getpid(), n, alive, n * calls, nvcsw, nivcsw);
	return 0;
}
