/* churn MODE N ALIVE CALLS: N short-lived tasks over the run, at most ALIVE at
 * a time, each making CALLS getppid calls and exiting.
 *   MODE threads: pthreads of this process (batches of ALIVE, joined);
 *   MODE procs:   forked children (batches of ALIVE, each _exit(0), reaped).
 * Prints the ground truth: getppid calls of the tasks, and the process's
 * voluntary switches (procs: its children's, from wait4's rusage). */
#include "wl.h"
#include <pthread.h>
#include <sys/wait.h>

static long calls;

static void *worker(void *arg)
{
	for (long j = 0; j < calls; j++)
		wl_getppid();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "threads";
	long n = wl_arg(argc, argv, 2, 1000), alive = wl_arg(argc, argv, 3, 8);
	long done = 0, nvcsw = 0, nivcsw = 0;
	pthread_t *th;
	pid_t *kids;

	calls = wl_arg(argc, argv, 4, 3);
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
