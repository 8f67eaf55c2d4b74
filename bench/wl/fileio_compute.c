// SPDX-License-Identifier: GPL-2.0
/*
 * fileio_compute N [DIR]: N operations of mixed compute and file I/O on a
 * scratch file in DIR (default /var/tmp, a disk-backed file system). One
 * operation: a checksum pass over 64 KiB (compute), 16 x 4 KiB write(), 4 x
 * 4 KiB pread() of earlier data (page cache); every 32nd operation also
 * fdatasync()s, which reaches the block layer. The file is rewound at 8 MiB.
 * Timed in chunks of 32 operations (one fdatasync each). Reports ns per
 * operation.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "wl.h"

#define BLK 4096
#define OP_BLKS 16
#define FILE_MAX (8L << 20)
#define CHUNK 32

static unsigned char buf[OP_BLKS * BLK];

static uint64_t checksum(const unsigned char *p, size_t n, uint64_t h)
{
	for (int round = 0; round < 4; round++)
		for (size_t i = 0; i < n; i++)
			h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

int main(int argc, char **argv)
{
	uint64_t main_ns = now_ns();
	long n = arg_long(argc, argv, 1, 4000);
	const char *dir = argc > 2 ? argv[2] : "/var/tmp";
	char path[4096], rbuf[BLK], extra[64];
	uint64_t h = 0xcbf29ce484222325ull, t0 = 0;
	struct timing t = { 0 };
	off_t off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/bench-fileio-%d.tmp", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	unlink(path);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	timing_start(&t);
	for (long op = 0; op < n; op++) {
		if (op % CHUNK == 0)
			t0 = now_ns();
		h = checksum(buf, sizeof(buf), h);
		memcpy(buf, &h, sizeof(h));
		for (int b = 0; b < OP_BLKS; b++) {
			if (write(fd, buf + b * BLK, BLK) != BLK) {
				perror("write");
				return 1;
			}
		}
		off += OP_BLKS * BLK;
		for (int r = 0; r < 4; r++) {
			off_t at = (off_t)(((h >> (r * 8)) % (uint64_t)(off / BLK)) * BLK);

			if (pread(fd, rbuf, BLK, at) != BLK) {
				perror("pread");
				return 1;
			}
			h ^= (unsigned char)rbuf[r];
		}
		if (op % 32 == 31 && fdatasync(fd)) {
			perror("fdatasync");
			return 1;
		}
		if (off >= FILE_MAX) {
			off = 0;
			if (lseek(fd, 0, SEEK_SET) < 0) {
				perror("lseek");
				return 1;
			}
		}
		if (op % CHUNK == CHUNK - 1 || op == n - 1)
			timing_add(&t, now_ns() - t0, op % CHUNK + 1);
	}
	close(fd);
	snprintf(extra, sizeof(extra), "\"checksum\":\"%016llx\"", (unsigned long long)h);
	report("fileio_compute", main_ns, &t, extra);
	return 0;
}
