/* clone_into CGROUP_DIR N: starts a child directly inside the cgroup v2
 * directory CGROUP_DIR (clone3 with CLONE_INTO_CGROUP), which makes exactly N
 * getppid calls and exits; this process itself stays where it is and makes
 * none. Prints the child's pid and N. */
#include "wl.h"
#include <fcntl.h>
#include <signal.h>
#include <linux/sched.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 2, 1000), i;
	struct clone_args args = { .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD };
	int fd, status;
	long child;

	if (argc < 2) {
		fprintf(stderr, "usage: clone_into CGROUP_DIR [N]\n");
		return 101;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		wl_die("open cgroup");
	args.cgroup = (unsigned)fd;
	child = syscall(SYS_clone3, &args, sizeof(args));
	if (child < 0)
		wl_die("clone3");
	if (child == 0) {
		for (i = 0; i < n; i++)
			wl_getppid();
		_exit(0);
	}
	if (waitpid((pid_t)child, &status, 0) != child)
		wl_die("waitpid");
	printf("{\"workload\":\"clone_into\",\"pid\":%d,\"child\":%ld,\"getppid\":%ld,\"status\":%d}\n",
	       getpid(), child, n, status);
	return 0;
}
