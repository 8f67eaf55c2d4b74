// SPDX-License-Identifier: GPL-2.0
/*
 * gate CMD [ARG...]: waits for one byte on stdin, then execs CMD in place.
 * Lets a harness start a tracer with -p on the gate's pid and release the
 * workload only once the tracer is ready; exec keeps the pid.
 */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char c;

	if (argc < 2) {
		fprintf(stderr, "usage: gate CMD [ARG...]\n");
		return 2;
	}
	if (read(0, &c, 1) != 1)
		return 3;	/* harness went away: do not run */
	execvp(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}
