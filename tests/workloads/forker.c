/* forker: parent -> child -> grandchild. getppid calls: parent 100, child 200,
 * grandchild 300. Grandchild exits 4, child waits for it and exits 3, parent
 * waits for the child and exits 0. The child passes the grandchild's pid up a pipe. */
#include "wl.h"
#include <sys/wait.h>

#define P_CALLS 100
#define C_CALLS 200
#define G_CALLS 300

static void calls(int n)
{
	for (int i = 0; i < n; i++)
		wl_getppid();
}

int main(void)
{
	int fds[2], status, gstatus = -1;
	pid_t child, gchild = -1;

	if (pipe(fds))
		wl_die("pipe");
	fflush(stdout);
	child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		pid_t g;

		close(fds[0]);
		g = fork();
		if (g < 0)
			_exit(110);
		if (g == 0) {
			close(fds[1]);
			calls(G_CALLS);
			_exit(4);
		}
		calls(C_CALLS);
		if (waitpid(g, &status, 0) != g)
			_exit(111);
		/* grandchild pid and its wait status for the parent's report */
		int msg[2] = { g, status };
		if (write(fds[1], msg, sizeof(msg)) != sizeof(msg))
			_exit(112);
		_exit(3);
	}
	close(fds[1]);
	calls(P_CALLS);
	{
		int msg[2];

		if (read(fds[0], msg, sizeof(msg)) == sizeof(msg)) {
			gchild = msg[0];
			gstatus = msg[1];
		}
	}
	if (waitpid(child, &status, 0) != child)
		wl_die("waitpid");
	printf("{\"workload\":\"forker\",\"pid\":%d,\"parent\":%d,\"child\":%d,\"grandchild\":%d,"
	       "\"getppid\":{\"parent\":%d,\"child\":%d,\"grandchild\":%d},"
	       "\"exit\":{\"parent\":0,\"child\":%d,\"grandchild\":%d},"
	       "\"wait_status\":{\"child\":%d,\"grandchild\":%d}}\n",
	       getpid(), getpid(), child, gchild, P_CALLS, C_CALLS, G_CALLS,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       WIFEXITED(gstatus) ? WEXITSTATUS(gstatus) : -1, status, gstatus);
	return 0;
}
