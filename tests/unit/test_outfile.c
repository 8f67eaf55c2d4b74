/* outfile.c (how every output is written) and numarg.c (strict numbers).
 * The planted-symlink checks need root (lchown to another user); as any
 * other user they are reported as not run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cm.h"
#include "check.h"
#include "outfile.h"
#include "numarg.h"

static char dir[] = "/tmp/cm-test-outfile.XXXXXX";
static char captured[4096];
static int saved_fd = -1;

static void capture_begin(void)
{
	fflush(stderr);
	saved_fd = dup(2);
	int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	dup2(fd, 2);
	close(fd);
}

static const char *capture_end(void)
{
	fflush(stderr);
	lseek(2, 0, SEEK_SET);
	ssize_t n = read(2, captured, sizeof(captured) - 1);
	captured[n > 0 ? n : 0] = '\0';
	dup2(saved_fd, 2);
	close(saved_fd);
	return captured;
}

static int one_error_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return !strncmp(s, "contactmap: error: ", 19) && nl && nl[1] == '\0';
}

/* every entry, dot files too: a temp file is one */
static int entries(const char *d)
{
	int n = 0;
	DIR *dp = opendir(d);
	struct dirent *e;
	while (dp && (e = readdir(dp)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (dp)
		closedir(dp);
	return n;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static const char *get(const char *path)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	buf[n] = 0;
	if (f)
		fclose(f);
	return buf;
}

static int write_to(const char *path, const char *text)
{
	struct cm_out *o = cm_out_open(path, "report", "-o");

	if (!o)
		return -1;
	fputs(text, cm_out_fp(o));
	return cm_out_commit(o);
}

static void path_of(char *buf, size_t sz, const char *name)
{
	snprintf(buf, sz, "%s/%s", dir, name);
}

static void regular_files(void)
{
	char a[128], b[128], c[128];
	struct stat st1, st2;

	path_of(a, sizeof(a), "new.json");
	CHECK(write_to(a, "one\n") == 0 && !strcmp(get(a), "one\n"), "a new file is written");
	CHECK(entries(dir) == 1, "and nothing else is left in the directory");
	/* a replaced file is a new inode: a hard link to the old one keeps it */
	path_of(b, sizeof(b), "link-to-old");
	CHECK(link(a, b) == 0 && stat(a, &st1) == 0, "hard link made");
	CHECK(write_to(a, "two\n") == 0 && !strcmp(get(a), "two\n"), "an existing file is replaced");
	CHECK(stat(a, &st2) == 0 && st1.st_ino != st2.st_ino, "by rename, not written into");
	CHECK(!strcmp(get(b), "one\n"), "the old inode (another name for it) is untouched");
	unlink(b);
	CHECK(entries(dir) == 1, "no temp file left after a replace");

	/* abort leaves nothing; a failed open leaves nothing */
	path_of(c, sizeof(c), "aborted.json");
	struct cm_out *o = cm_out_open(c, "report", "-o");
	CHECK(o != NULL, "open %s", c);
	fputs("x", cm_out_fp(o));
	cm_out_abort(o);
	CHECK(access(c, F_OK) != 0 && entries(dir) == 1, "abort leaves no file and no temp file");

	/* a stream is visible from publish on; a later abort removes it */
	o = cm_out_open(c, "interval stream", "--jsonl");
	CHECK(o && access(c, F_OK) != 0, "unpublished stream not visible");
	CHECK(o && cm_out_publish(o) == 0 && access(c, F_OK) == 0, "published stream visible");
	fputs("line\n", cm_out_fp(o));
	fflush(cm_out_fp(o));
	CHECK(!strcmp(get(c), "line\n"), "its lines readable while it is open");
	cm_out_abort(o);
	CHECK(access(c, F_OK) != 0 && entries(dir) == 1, "abort removes a published stream");
	unlink(a);
}

static void refusals(void)
{
	char p[256];
	const char *err;
	struct cm_out *o;

	static const char *const bad[][2] = {
		{ "", "empty" }, { "/", "directory" }, { "/tmp/", "directory" },
		{ "/nonexistent-dir/r.json", "No such file" }, { "/etc/hostname/x", "directory" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		capture_begin();
		o = cm_out_open(bad[i][0], "report", "-o");
		err = capture_end();
		CHECK(!o && one_error_line(err) && strstr(err, bad[i][1]),
		      "'%s' refused: %.*s", bad[i][0], (int)strcspn(err, "\n"), err);
		cm_out_abort(o);
	}
	capture_begin();
	o = cm_out_open(dir, "report", "-o");
	err = capture_end();
	CHECK(!o && one_error_line(err) && strstr(err, "directory"), "a directory refused: %.*s",
	      (int)strcspn(err, "\n"), err);

	/* devices are written in place and stay devices */
	struct stat st;
	CHECK(write_to("/dev/null", "x") == 0, "/dev/null written in place");
	CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null still a device");
	capture_begin();
	int rc = write_to("/dev/full", "x");
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, "No space"),
	      "a full device is an error: %.*s", (int)strcspn(err, "\n"), err);
	CHECK(stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode), "/dev/full still a device");

	/* a FIFO is fed, not replaced */
	path_of(p, sizeof(p), "fifo");
	CHECK(mkfifo(p, 0600) == 0, "mkfifo");
	int rd = open(p, O_RDONLY | O_NONBLOCK);
	CHECK(write_to(p, "through the pipe") == 0, "a FIFO is written in place");
	char buf[64] = "";
	ssize_t n = read(rd, buf, sizeof(buf) - 1);
	CHECK(n == 16 && !strncmp(buf, "through the pipe", 16), "its reader got the data");
	close(rd);
	CHECK(stat(p, &st) == 0 && S_ISFIFO(st.st_mode), "and it is still a FIFO");

	/* a FIFO put at the name during the run is not renamed over */
	char q[256];
	path_of(q, sizeof(q), "raced.json");
	o = cm_out_open(q, "report", "-o");
	CHECK(o != NULL && mkfifo(q, 0600) == 0, "output opened, then a FIFO planted at its name");
	fputs("x", cm_out_fp(o));
	capture_begin();
	rc = cm_out_commit(o);
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, "not a regular file"),
	      "commit refuses: %.*s", (int)strcspn(err, "\n"), err);
	CHECK(stat(q, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO is left alone");
	unlink(q);
	unlink(p);
	CHECK(entries(dir) == 0, "no temp file left after the refused commit");
}

static void same_file(void)
{
	char a[128], b[128], l[128], cwd[4096];
	struct cm_out *x, *y;

	path_of(a, sizeof(a), "same.json");
	path_of(b, sizeof(b), "other.json");
	x = cm_out_open(a, "report", "-o");
	y = cm_out_open(b, "folded stacks", "-f");
	CHECK(x && y && !cm_out_same(x, y), "two names: two files");
	cm_out_abort(y);
	CHECK(getcwd(cwd, sizeof(cwd)) && chdir(dir) == 0, "cd %s", dir);
	y = cm_out_open("./same.json", "folded stacks", "-f");
	CHECK(y && cm_out_same(x, y), "X and ./X (not yet existing) are one file");
	cm_out_abort(y);
	cm_out_abort(x);
	put(a, "old");
	path_of(l, sizeof(l), "hard");
	CHECK(link(a, l) == 0, "hard link");
	x = cm_out_open(a, "report", "-o");
	y = cm_out_open("hard", "folded stacks", "-f");
	CHECK(x && y && cm_out_same(x, y), "two hard links are one file");
	cm_out_abort(y);
	CHECK(symlink("same.json", "sym") == 0, "symlink of our own");
	y = cm_out_open("sym", "folded stacks", "-f");
	CHECK(x && y && cm_out_same(x, y), "a link and its target are one file");
	cm_out_abort(y);
	cm_out_abort(x);
	x = cm_out_open("/dev/null", "report", "-o");
	y = cm_out_open("/dev/null", "folded stacks", "-f");
	CHECK(x && y && !cm_out_same(x, y), "/dev/null may take two outputs");
	cm_out_abort(x);
	cm_out_abort(y);
	/* through our own symlink the target is written */
	CHECK(write_to("sym", "via link") == 0 && !strcmp(get(a), "via link"), "our own link is followed");
	struct stat st;
	CHECK(lstat("sym", &st) == 0 && S_ISLNK(st.st_mode), "and stays a link");
	unlink("sym");
	unlink("hard");
	unlink(a);
	CHECK(chdir(cwd) == 0, "cd back");
}

static void planted_links(void)
{
	char victim[128], link1[128], sub[128], deep[160];
	const char *err;

	if (geteuid() != 0) {
		printf("skip: planted-link checks need root (lchown to another user)\n");
		return;
	}
	path_of(victim, sizeof(victim), "victim");
	put(victim, "precious");
	path_of(link1, sizeof(link1), "out.json");
	CHECK(symlink(victim, link1) == 0 && lchown(link1, 65534, 65534) == 0,
	      "a link owned by nobody planted at the output name");
	capture_begin();
	int rc = write_to(link1, "overwritten");
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, "symbolic link owned by uid 65534"),
	      "refused: %.*s", (int)strcspn(err, "\n"), err);
	CHECK(!strcmp(get(victim), "precious"), "the victim is untouched");
	unlink(link1);
	/* a planted directory link on the way is refused too */
	path_of(sub, sizeof(sub), "d");
	CHECK(symlink(dir, sub) == 0 && lchown(sub, 65534, 65534) == 0, "a planted directory link");
	snprintf(deep, sizeof(deep), "%s/victim", sub);
	capture_begin();
	rc = write_to(deep, "overwritten");
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, "'d' is a symbolic link"),
	      "refused: %.*s", (int)strcspn(err, "\n"), err);
	CHECK(!strcmp(get(victim), "precious"), "the victim is untouched");
	unlink(sub);
	unlink(victim);
}

static void numbers(void)
{
	uint64_t u = 0;
	double d = 0;
	static const char *const bad_uint[] = { "", "-1", "+1", " 1", "1 ", "0x10", "1e3", "1.5",
		"18446744073709551616", "99999999999999999999999", "nan", "10k" };
	static const char *const bad_secs[] = { "", "nan", "inf", "-1", "+1", "0x10", "1e3", " 1",
		"1s", ".", "1..2", "1.2.3", "infinity" };

	for (size_t i = 0; i < sizeof(bad_uint) / sizeof(*bad_uint); i++)
		CHECK(cm_parse_uint(bad_uint[i], 0, UINT64_MAX, &u) == -1, "uint '%s' refused", bad_uint[i]);
	for (size_t i = 0; i < sizeof(bad_secs) / sizeof(*bad_secs); i++)
		CHECK(cm_parse_secs(bad_secs[i], 0, 1e9, &d) == -1, "secs '%s' refused", bad_secs[i]);
	CHECK(cm_parse_uint("18446744073709551615", 0, UINT64_MAX, &u) == 0 && u == UINT64_MAX,
	      "2^64-1 taken whole");
	CHECK(cm_parse_uint("5", 6, 9, &u) == -1 && cm_parse_uint("10", 6, 9, &u) == -1, "range");
	CHECK(cm_parse_uint("007", 0, 9, &u) == 0 && u == 7, "leading zeros are decimal");
	CHECK(cm_parse_secs("0.25", 0.01, 10, &d) == 0 && d == 0.25, "0.25 s");
	CHECK(cm_parse_secs(".5", 0.01, 10, &d) == 0 && d == 0.5, ".5 s");
	CHECK(cm_parse_secs("10.", 0.01, 10, &d) == 0 && d == 10, "10. s");
	CHECK(cm_parse_secs("10.5", 0.01, 10, &d) == -1, "above the range");
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	regular_files();
	refusals();
	same_file();
	planted_links();
	numbers();
	CHECK(entries(dir) == 0, "the test directory is empty at the end");
	rmdir(dir);
	return check_done();
}
