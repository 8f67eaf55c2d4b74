/* block_io RFILE COUNT BS [WFILE WRITES [fsync|fdatasync]]: block device
 * latency seen from a syscall, with the page cache out of the way.
 *
 *   COUNT O_DIRECT reads of BS bytes from RFILE at offsets 0, BS, 2*BS ...,
 *   each one preadv() (ld.so uses pread64, never preadv)
 *   WRITES O_DIRECT writes of BS bytes to WFILE at offsets 0, BS, ..., each
 *   one pwritev() followed by fsync() (default) or fdatasync()
 *
 * Both files must exist, be at least COUNT*BS / WRITES*BS bytes long, and
 * live on a disk-backed filesystem; WFILE's blocks should already be written
 * (not holes or fallocated extents), so that a write is a plain overwrite.
 * Prints the exact number of each syscall and its mean and max latency. */
#include "mb.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#define USAGE "block_io RFILE COUNT BS [WFILE WRITES [fsync|fdatasync]]"

struct lat {
	long n;
	long long total, max;
};

static void lat_add(struct lat *l, long long ns)
{
	l->n++;
	l->total += ns;
	if (ns > l->max)
		l->max = ns;
}

static void lat_print(const char *name, const struct lat *l, const char *sep)
{
	printf("\"%s\":{\"calls\":%ld,\"total_ns\":%lld,\"ns_per_call\":%.1f,\"max_ns\":%lld}%s",
	       name, l->n, l->total, mb_per(l->total, l->n), l->max, sep);
}

int main(int argc, char **argv)
{
	long count, bs, writes, i;
	const char *wfile = NULL, *sync_name = "fsync";
	struct lat rd = { 0 }, wr = { 0 }, sy = { 0 };
	struct stat st;
	void *buf;
	int fd;

	if (argc != 4 && argc != 6 && argc != 7)
		mb_usage(USAGE);
	count = mb_arg(argc, argv, 2, 0, USAGE);
	bs = mb_arg(argc, argv, 3, 65536, USAGE);
	writes = argc > 5 ? mb_arg(argc, argv, 5, 0, USAGE) : 0;
	if (argc > 4)
		wfile = argv[4];
	if (argc > 6)
		sync_name = argv[6];
	if (bs < 512 || bs % 512 || (strcmp(sync_name, "fsync") && strcmp(sync_name, "fdatasync")))
		mb_usage(USAGE);
	errno = posix_memalign(&buf, 4096, bs);
	if (errno)
		mb_die("block_io", "posix_memalign");
	memset(buf, 0x5a, bs);

	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0 || fstat(fd, &st))
		mb_die("block_io", argv[1]);
	for (i = 0; i < count; i++) {
		struct iovec iov = { .iov_base = buf, .iov_len = bs };
		long long t0 = mb_now_ns();
		ssize_t n = preadv(fd, &iov, 1, (off_t)i * bs);

		lat_add(&rd, mb_now_ns() - t0);
		if (n != bs) {
			fprintf(stderr, "block_io: read %zd of %ld bytes at block %ld: %s\n",
				n, bs, i, n < 0 ? strerror(errno) : "short read");
			return 102;
		}
	}
	close(fd);

	if (wfile) {
		int sync_data = !strcmp(sync_name, "fdatasync");

		fd = open(wfile, O_WRONLY | O_DIRECT);
		if (fd < 0)
			mb_die("block_io", wfile);
		for (i = 0; i < writes; i++) {
			struct iovec iov = { .iov_base = buf, .iov_len = bs };
			long long t0 = mb_now_ns(), t1;
			ssize_t n = pwritev(fd, &iov, 1, (off_t)i * bs);

			t1 = mb_now_ns();
			lat_add(&wr, t1 - t0);
			if (n != bs) {
				fprintf(stderr, "block_io: wrote %zd of %ld bytes at block %ld: %s\n",
					n, bs, i, n < 0 ? strerror(errno) : "short write");
				return 102;
			}
			if (sync_data ? fdatasync(fd) : fsync(fd))
				mb_die("block_io", sync_name);
			lat_add(&sy, mb_now_ns() - t1);
		}
		close(fd);
	}

	printf("{\"bench\":\"block_io\",\"pid\":%d,\"bs\":%ld,\"st_dev\":\"%u:%u\","
	       "\"read_bytes\":%lld,\"write_bytes\":%lld,\"sync_call\":\"%s\",",
	       getpid(), bs, major(st.st_dev), minor(st.st_dev), (long long)rd.n * bs,
	       (long long)wr.n * bs, sync_name);
	lat_print("preadv", &rd, ",");
	lat_print("pwritev", &wr, ",");
	lat_print("sync", &sy, "}\n");
	free(buf);
	return 0;
}
