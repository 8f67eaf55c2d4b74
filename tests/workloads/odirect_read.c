/* odirect_read FILE COUNT BS: COUNT O_DIRECT reads of BS bytes at offsets
 * 0, BS, 2*BS, ... into a page-aligned buffer, each one preadv() syscall
 * (preadv, not pread64, which ld.so also uses to read ELF headers). */
#include "wl.h"
#include <fcntl.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

int main(int argc, char **argv)
{
	long count, bs, i;
	long long bytes = 0;
	struct stat st;
	void *buf;
	int fd;

	if (argc < 4) {
		fprintf(stderr, "usage: odirect_read FILE COUNT BS\n");
		return 101;
	}
	count = wl_arg(argc, argv, 2, 0);
	bs = wl_arg(argc, argv, 3, 4096);
	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0)
		wl_die("open");
	if (fstat(fd, &st))
		wl_die("fstat");
	errno = posix_memalign(&buf, 4096, bs);
	if (errno)
		wl_die("posix_memalign");
	for (i = 0; i < count; i++) {
		struct iovec iov = { .iov_base = buf, .iov_len = bs };
		ssize_t n = preadv(fd, &iov, 1, (off_t)i * bs);

		if (n < 0)
			wl_die("preadv");
		if (n != bs) {
			fprintf(stderr, "workload: short read %zd at block %ld\n", n, i);
			return 102;
		}
		bytes += n;
	}
	close(fd);
	printf("{\"workload\":\"odirect_read\",\"pid\":%d,\"count\":%ld,\"bs\":%ld,\"bytes\":%lld,"
	       "\"st_dev\":\"%u:%u\"}\n",
	       getpid(), count, bs, bytes, major(st.st_dev), minor(st.st_dev));
	return 0;
}
