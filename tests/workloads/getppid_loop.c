/* getppid_loop N: exactly N getppid syscalls (raw syscall, nothing else calls it). */
#include "wl.h"

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 1000), i;
	long ppid = 0;

	for (i = 0; i < n; i++)
		ppid = wl_getppid();
	printf("{\"workload\":\"getppid_loop\",\"pid\":%d,\"ppid\":%ld,\"getppid\":%ld}\n",
	       getpid(), ppid, n);
	return 0;
}
