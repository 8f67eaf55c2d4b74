/* killself [SIG]: prints its ground truth, then kills itself with SIG
 * (default SIGKILL; SIGSEGV is raised by a real NULL write). No core file. */
#include "wl.h"
#include <signal.h>

int main(int argc, char **argv)
{
	long sig = wl_arg(argc, argv, 1, SIGKILL);
	struct rlimit nocore = { 0, 0 };

	setrlimit(RLIMIT_CORE, &nocore);
	printf("{\"workload\":\"killself\",\"pid\":%d,\"signal\":%ld}\n", getpid(), sig);
	fflush(stdout);
	if (sig == SIGSEGV) {
		signal(SIGSEGV, SIG_DFL);
		*(volatile int *)0 = 1;
	}
	raise((int)sig);
	return 99;	/* not reached for fatal signals */
}
