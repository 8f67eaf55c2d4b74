/* syscall_cost [N] [M] [BYTES]: the cost of a syscall, two ways.
 *
 *   N getpid() calls (raw syscalls, the cheapest round trip into the kernel)
 *   M read() calls of BYTES bytes from /dev/zero (a syscall that does work)
 *
 * Prints the exact number of each it made and ns per call over each timed
 * loop. Built statically (as every CPU microbenchmark): a dynamic binary's
 * ld.so makes read() calls of its own while loading libc, and the point here
 * is that every getpid/read a tracer sees is one of the loops'. */
#include "mb.h"
#include <fcntl.h>

#define USAGE "syscall_cost [GETPID_CALLS] [READ_CALLS] [READ_BYTES]"

int main(int argc, char **argv)
{
	long n = mb_arg(argc, argv, 1, 200000, USAGE);
	long m = mb_arg(argc, argv, 2, 100000, USAGE);
	long bytes = mb_arg(argc, argv, 3, 64, USAGE);
	long long t0, t_getpid, t_read;
	long pid = 0, i;
	char *buf;
	int fd;

	if (argc > 4 || bytes < 1)
		mb_usage(USAGE);
	buf = malloc(bytes);
	fd = open("/dev/zero", O_RDONLY);
	if (!buf || fd < 0)
		mb_die("syscall_cost", "/dev/zero");

	t0 = mb_now_ns();
	for (i = 0; i < n; i++)
		pid = mb_getpid();
	t_getpid = mb_now_ns() - t0;

	t0 = mb_now_ns();
	for (i = 0; i < m; i++)
		if (read(fd, buf, bytes) != bytes)
			mb_die("syscall_cost", "read /dev/zero");
	t_read = mb_now_ns() - t0;
	close(fd);

	if (!n)		/* no getpid() outside the loop: a single thread's tid is its pid */
		pid = syscall(SYS_gettid);
	printf("{\"bench\":\"syscall_cost\",\"pid\":%ld,"
	       "\"getpid\":{\"calls\":%ld,\"elapsed_ns\":%lld,\"ns_per_call\":%.1f},"
	       "\"read\":{\"calls\":%ld,\"bytes_per_call\":%ld,\"elapsed_ns\":%lld,"
	       "\"ns_per_call\":%.1f}}\n",
	       pid, n, t_getpid, mb_per(t_getpid, n), m, bytes, t_read, mb_per(t_read, m));
	free(buf);
	return 0;
}
