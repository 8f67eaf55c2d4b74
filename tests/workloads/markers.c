/* markers N: odd marker uses, then N plain requests.
 *   nested:      begin(1) begin(2) end(2) end(1)
 *   overlapping: begin(3) begin(4) end(3) end(4)
 *   unmatched:   end(99); begin(5) end(5) end(5)
 *   begun again: begin(7) begin(7) end(7)
 *   from another thread: begin(8) here, end(8) on a thread (unmatched there),
 *                then end(8) here
 * then N requests 1000..1000+N-1, each one getppid call long. Counts: 7 + N
 * requests, 3 ends without a begin, 1 begun again. */
#include "wl.h"
#include <pthread.h>
#include "contactmap_mark.h"

static void *other(void *arg)
{
	contactmap_request_end(8);
	return NULL;
}

int main(int argc, char **argv)
{
	long n = wl_arg(argc, argv, 1, 1000);
	pthread_t t;

	contactmap_request_begin(1);
	contactmap_request_begin(2);
	contactmap_request_end(2);
	contactmap_request_end(1);
	contactmap_request_begin(3);
	contactmap_request_begin(4);
	contactmap_request_end(3);
	contactmap_request_end(4);
	contactmap_request_end(99);
	contactmap_request_begin(5);
	contactmap_request_end(5);
	contactmap_request_end(5);
	contactmap_request_begin(7);
	contactmap_request_begin(7);
	contactmap_request_end(7);
	contactmap_request_begin(8);
	if (pthread_create(&t, NULL, other, NULL))
		wl_die("pthread_create");
	pthread_join(t, NULL);
	contactmap_request_end(8);
	for (long i = 0; i < n; i++) {
		contactmap_request_begin((uint64_t)(1000 + i));
		wl_getppid();
		contactmap_request_end((uint64_t)(1000 + i));
	}
	printf("{\"workload\":\"markers\",\"pid\":%d,\"requests\":%ld,\"unmatched_end\":3,"
	       "\"begun_again\":1}\n", getpid(), 7 + n);
	return 0;
}
