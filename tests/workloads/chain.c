/* chain FILE N BS: three threads in a chain. A (main) marks N requests; for
 * each it asks B over a pipe and waits; B asks C and waits; C makes one
 * O_DIRECT read of BS bytes from FILE (offset i*BS) and answers; B answers A.
 * A's critical path is C's block I/O, though A itself only waits in read(). */
#include "wl.h"
#include <fcntl.h>
#include <pthread.h>
#include "contactmap_mark.h"

static int ab[2], ba[2], bc[2], cb[2], fd;
static long bs, n;
static void *buf;

static void *thread_b(void *arg)
{
	long i;

	while (read(ab[0], &i, sizeof(i)) == sizeof(i) && i >= 0) {
		if (write(bc[1], &i, sizeof(i)) != sizeof(i) || read(cb[0], &i, sizeof(i)) != sizeof(i) ||
		    write(ba[1], &i, sizeof(i)) != sizeof(i))
			wl_die("pipe");
	}
	i = -1;
	if (write(bc[1], &i, sizeof(i)) != sizeof(i))
		wl_die("pipe");
	return NULL;
}

static void *thread_c(void *arg)
{
	long i;

	while (read(bc[0], &i, sizeof(i)) == sizeof(i) && i >= 0) {
		if (pread(fd, buf, bs, (off_t)(i * bs)) != bs)
			wl_die("pread");
		if (write(cb[1], &i, sizeof(i)) != sizeof(i))
			wl_die("pipe");
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t b, c;
	long i, stop = -1;

	if (argc < 4) {
		fprintf(stderr, "usage: chain FILE N BS\n");
		return 101;
	}
	n = wl_arg(argc, argv, 2, 20);
	bs = wl_arg(argc, argv, 3, 65536);
	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0)
		wl_die("open");
	errno = posix_memalign(&buf, 4096, bs);
	if (errno)
		wl_die("posix_memalign");
	if (pipe(ab) || pipe(ba) || pipe(bc) || pipe(cb))
		wl_die("pipe");
	if (pthread_create(&b, NULL, thread_b, NULL) || pthread_create(&c, NULL, thread_c, NULL))
		wl_die("pthread_create");
	for (i = 0; i < n; i++) {
		contactmap_request_begin((uint64_t)i);
		if (write(ab[1], &i, sizeof(i)) != sizeof(i) || read(ba[0], &i, sizeof(i)) != sizeof(i))
			wl_die("pipe");
		contactmap_request_end((uint64_t)i);
	}
	if (write(ab[1], &stop, sizeof(stop)) != sizeof(stop))
		wl_die("pipe");
	pthread_join(b, NULL);
	pthread_join(c, NULL);
	printf("{\"workload\":\"chain\",\"pid\":%d,\"requests\":%ld,\"bs\":%ld}\n", getpid(), n, bs);
	return 0;
}
