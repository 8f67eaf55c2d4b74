// SPDX-License-Identifier: GPL-2.0
/*
 * marks N: N request marker pairs (contactmap_request_begin(i) and
 * contactmap_request_end(i), nothing between them), timed in chunks of 256
 * pairs. Reports ns per pair: a marker call costs half of it. Linked against
 * ../.output/libcontactmap-mark.so, so it runs the library users link.
 */
#include "wl.h"
#include "contactmap_mark.h"

#define CHUNK 256

int main(int argc, char **argv)
{
	uint64_t main_ns = now_ns();
	long n = arg_long(argc, argv, 1, 200000);
	struct timing t = { 0 };

	for (long i = 0; i < 1000; i++) {	/* warm-up: not timed */
		contactmap_request_begin(i);
		contactmap_request_end(i);
	}
	timing_start(&t);
	for (long done = 0; done < n; done += CHUNK) {
		long k = n - done > CHUNK ? CHUNK : n - done;
		uint64_t t0 = now_ns();

		for (long i = done; i < done + k; i++) {
			contactmap_request_begin(i);
			contactmap_request_end(i);
		}
		timing_add(&t, now_ns() - t0, k);
	}
	report("marks", main_ns, &t, NULL);
	return 0;
}
