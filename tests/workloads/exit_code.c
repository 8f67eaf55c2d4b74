/* exit_code CODE: prints its ground truth, then exits with CODE. */
#include "wl.h"

int main(int argc, char **argv)
{
	long code = wl_arg(argc, argv, 1, 0);

	printf("{\"workload\":\"exit_code\",\"pid\":%d,\"exit\":%ld}\n", getpid(), code & 255);
	fflush(stdout);
	exit((int)code);
}
