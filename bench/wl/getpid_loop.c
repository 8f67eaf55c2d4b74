// SPDX-License-Identifier: GPL-2.0
/*
 * getpid_loop N [SECONDS]: N raw getpid syscalls (one sys_enter + one
 * sys_exit each), timed in chunks of 256; with SECONDS > 0, loops until that
 * much time has passed instead (N is then ignored). Reports ns per syscall.
 */
#include <sys/syscall.h>
#include <unistd.h>
#include "wl.h"

#define CHUNK 256

int main(int argc, char **argv)
{
	uint64_t main_ns = now_ns();
	long n = arg_long(argc, argv, 1, 400000);
	double secs = argc > 2 ? atof(argv[2]) : 0;
	struct timing t = { 0 };
	uint64_t end = 0;

	for (int i = 0; i < 1000; i++)	/* warm the path: not timed */
		syscall(SYS_getpid);
	timing_start(&t);
	if (secs > 0)
		end = now_ns() + (uint64_t)(secs * 1e9);
	for (long done = 0; secs > 0 || done < n; done += CHUNK) {
		long k = secs > 0 || n - done > CHUNK ? CHUNK : n - done;
		uint64_t t0 = now_ns(), t1;

		for (long i = 0; i < k; i++)
			syscall(SYS_getpid);
		t1 = now_ns();
		timing_add(&t, t1 - t0, k);
		if (secs > 0 && t1 >= end)
			break;
	}
	report("getpid_loop", main_ns, &t, NULL);
	return 0;
}
