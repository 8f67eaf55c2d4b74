/* Comm sanitizing, report write/read round trip, and the error paths of
 * cm_write_json / cm_read_json / cm_check_writable. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cm.h"
#include "check.h"

static char dir[] = "/tmp/cm-test-json.XXXXXX";
static char captured[4096];
static int saved_fd = -1;

/* stderr goes to a file between these two, so error lines can be checked */
static void capture_begin(void)
{
	char path[64];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	saved_fd = dup(2);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
}

static const char *capture_end(void)
{
	char path[64];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(captured, 1, sizeof(captured) - 1, f) : 0;
	captured[n] = '\0';
	if (f)
		fclose(f);
	unlink(path);
	return captured;
}

/* exactly one line, and it is an error line */
static int one_error_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	return !strncmp(s, "contactmap: error: ", 19) && nl && nl[1] == '\0';
}

static int count_entries(const char *d)
{
	int n = 0;
	DIR *dp = opendir(d);
	struct dirent *e;
	while (dp && (e = readdir(dp)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");	/* temp files are dot files */
	if (dp)
		closedir(dp);
	return n;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void sanitize_checks(void)
{
	/* 16 bytes, no NUL: the byte after must not be read */
	const char comm[17] = { 'a', '"', '\\', '\n', '\t', 0x01, 0x7f, (char)0xff,
				(char)0xc3, (char)0xa9, 'b', 'c', 'd', 'e', 'f', 'g', 'X' };
	const char *want = "a\"\\" "\\x0a\\x09\\x01\\x7f\\xff\\xc3\\xa9" "bcdefg";
	char out[80];

	cm_sanitize_comm(comm, 16, out, sizeof(out));
	CHECK_STR(out, want, "sanitized comm");
	int ascii = 1;
	for (const char *p = out; *p; p++)
		ascii &= (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
	CHECK(ascii, "sanitized comm is printable ASCII, hence valid UTF-8");

	cm_sanitize_comm("ab\0cd", 16, out, sizeof(out));
	CHECK_STR(out, "ab", "stops at NUL");
	cm_sanitize_comm("a\x01", 2, out, 5);
	CHECK_STR(out, "a", "no half escape when out is short");
	cm_sanitize_comm("a\x01", 2, out, 6);
	CHECK_STR(out, "a\\x01", "escape fits exactly");
	cm_sanitize_comm("abcdef", 6, out, 4);
	CHECK_STR(out, "abc", "truncated to outsz-1");
	out[0] = 'Z';
	cm_sanitize_comm("abc", 3, out, 0);
	CHECK(out[0] == 'Z', "outsz 0 writes nothing");
}

static void roundtrip_checks(void)
{
	const char comm[16] = { 'x', '"', '\\', '\n', (char)0xc3, (char)0xa9, 0x01, 0x7f,
				(char)0xff, '/', 'y', 'z', 'z', 'z', 'z', 'z' };
	char sane[80], path[128];
	json_object *r = json_object_new_object(), *back, *v;

	cm_sanitize_comm(comm, sizeof(comm), sane, sizeof(sane));
	json_object_object_add(r, "schema", json_object_new_string(CM_SCHEMA));
	json_object_object_add(r, "comm", json_object_new_string(sane));
	json_object_object_add(r, "utf8", json_object_new_string("caf\xc3\xa9 a/b"));
	json_object_object_add(r, "big", json_object_new_int64(INT64_MAX));
	snprintf(path, sizeof(path), "%s/report.json", dir);

	CHECK(cm_write_json(r, path) == 0, "write %s", path);
	CHECK(cm_write_json(r, path) == 0, "overwrite %s", path);
	CHECK(count_entries(dir) == 1, "no temp file left beside the report");
	back = cm_read_json(path);
	CHECK(back != NULL, "read it back");
	CHECK(back && json_object_object_get_ex(back, "comm", &v) &&
	      !strcmp(json_object_get_string(v), sane), "comm round-trips byte-exactly");
	CHECK(back && json_object_object_get_ex(back, "utf8", &v) &&
	      !strcmp(json_object_get_string(v), "caf\xc3\xa9 a/b"), "UTF-8 round-trips");
	CHECK(back && json_object_object_get_ex(back, "big", &v) &&
	      json_object_get_int64(v) == INT64_MAX, "int64 round-trips");
	json_object_put(back);

	char text[1024] = "";
	FILE *f = fopen(path, "r");
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	CHECK(strstr(text, "a/b") && !strstr(text, "a\\/b"), "slashes not escaped");
	CHECK(n > 0 && text[n - 1] == '\n' && strchr(text, '\n') != text + n - 1,
	      "pretty-printed, ends in a newline");

	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nodir/report.json", dir);
	capture_begin();
	int rc = cm_write_json(r, missing);
	const char *err = capture_end();
	CHECK(rc == -1, "write into a missing directory fails");
	CHECK(one_error_line(err) && strstr(err, missing) && strstr(err, "No such file"),
	      "one error line naming the path: %.*s", (int)strcspn(err, "\n"), err);
	capture_begin();
	rc = cm_write_json(r, dir);
	capture_end();
	CHECK(rc == -1, "write over a directory fails");
	CHECK(count_entries(dir) == 1, "failed writes leave nothing behind");
	json_object_put(r);
}

static void read_error_checks(void)
{
	char path[128];
	const char *err;
	json_object *o;
	static const struct { const char *text, *why, *msg; } bad[] = {
		{ "this is not json\n", "non-JSON file", "not JSON" },
		{ "{\"schema\": \"contactmap/1\"", "truncated JSON", "not JSON" },
		{ "{\"schema\": \"contactmap/1\"} x", "trailing garbage", "not JSON" },
		{ "", "empty file", "not JSON" },
		{ "{\"schema\": \"contactmap/2\"}", "wrong schema", "contactmap/2" },
		{ "{\"schema\": 1}", "non-string schema", "schema" },
		{ "{\"processes\": []}", "missing schema", "schema" },
		{ "[1, 2]", "array, not object", "schema" },
	};

	snprintf(path, sizeof(path), "%s/bad.json", dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(path, bad[i].text);
		capture_begin();
		o = cm_read_json(path);
		err = capture_end();
		CHECK(o == NULL && one_error_line(err) && strstr(err, bad[i].msg),
		      "%s rejected: %.*s", bad[i].why, (int)strcspn(err, "\n"), err);
		json_object_put(o);
	}
	unlink(path);

	write_file(path, "{\"schema\": \"contactmap/1\"}\n\n");
	o = cm_read_json(path);
	CHECK(o != NULL, "minimal report with trailing whitespace accepted");
	json_object_put(o);
	unlink(path);

	capture_begin();
	o = cm_read_json(path);
	err = capture_end();
	CHECK(o == NULL && one_error_line(err) && strstr(err, "No such file"),
	      "missing file: %.*s", (int)strcspn(err, "\n"), err);
	capture_begin();
	o = cm_read_json(dir);
	err = capture_end();
	CHECK(o == NULL && one_error_line(err), "directory: %.*s", (int)strcspn(err, "\n"), err);
}

static void writable_checks(void)
{
	char path[160], tmp[200];
	const char *err;
	int rc;

	snprintf(path, sizeof(path), "%s/nodir/r.json", dir);
	capture_begin();
	rc = cm_check_writable(path);
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, path),
	      "missing directory fails: %.*s", (int)strcspn(err, "\n"), err);

	capture_begin();
	rc = cm_check_writable(dir);
	err = capture_end();
	CHECK(rc == -1 && one_error_line(err) && strstr(err, "directory"),
	      "directory as file fails: %.*s", (int)strcspn(err, "\n"), err);

	snprintf(path, sizeof(path), "/tmp/cm-test-writable.%ld.json", (long)getpid());
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	CHECK(cm_check_writable(path) == 0, "%s is writable", path);
	CHECK(access(path, F_OK) != 0 && access(tmp, F_OK) != 0, "check leaves no file behind");
	CHECK(cm_check_writable("-") == 0, "stdout is writable");
	CHECK(cm_check_writable("/dev/null") == 0, "/dev/null is writable");
	json_object *r = json_object_new_object();
	CHECK(cm_write_json(r, "/dev/null") == 0, "write to /dev/null in place");
	json_object_put(r);
	struct stat st;
	CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null still a device");
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	sanitize_checks();
	roundtrip_checks();
	read_error_checks();
	writable_checks();

	char path[128];
	snprintf(path, sizeof(path), "%s/report.json", dir);
	unlink(path);
	rmdir(dir);
	return check_done();
}
