/* CPython support against the interpreters themselves: every instruction's
 * line from co_linetable as cm_py_addr2line decodes it, against co_lines()
 * of the same code objects, for each installed CPython 3.10-3.13 (3.10's
 * table and 3.11+'s location table); the layout table; file names. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "python.h"
#include "check.h"

/* Compiles a few stdlib modules and prints, per code object: firstlineno,
 * co_linetable in hex, and offset:line for every instruction (-1: none). */
static const char dump[] =
	"import types, os, threading, json.decoder, argparse\n"
	"def walk(co):\n"
	"    yield co\n"
	"    for c in co.co_consts:\n"
	"        if isinstance(c, types.CodeType): yield from walk(c)\n"
	"for m in (os, threading, json.decoder, argparse):\n"
	"    co = compile(open(m.__file__).read(), m.__file__, 'exec')\n"
	"    for c in walk(co):\n"
	"        e = [f'{o}:{-1 if l is None else l}' for s, t, l in c.co_lines() for o in range(s, t, 2)]\n"
	"        print(c.co_firstlineno, c.co_linetable.hex() or '-', ','.join(e) or '-')\n";

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void check_interpreter(const char *path, unsigned minor)
{
	char cmd[PATH_MAX + 64], *line = NULL;
	size_t cap = 0, codes = 0, offsets = 0, bad = 0;
	uint8_t *tab = malloc(1 << 20);
	FILE *p;

	if (access(path, X_OK)) {
		printf("SKIP: %s not installed: its line tables are not checked\n", path);
		free(tab);
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s -I -c \"$CM_PY_DUMP\"", path);
	setenv("CM_PY_DUMP", dump, 1);
	p = popen(cmd, "r");
	CHECK(p != NULL, "run %s", path);
	while (p && tab && getline(&line, &cap, p) > 0) {
		char *hex = strchr(line, ' '), *pairs;
		size_t len = 0;
		int first;

		if (!hex || !(pairs = strchr(hex + 1, ' ')))
			continue;
		first = atoi(line);
		*pairs++ = '\0';
		for (char *h = hex + 1; hexval(h[0]) >= 0 && hexval(h[1]) >= 0 && len < (1 << 20); h += 2)
			tab[len++] = (uint8_t)(hexval(h[0]) << 4 | hexval(h[1]));
		codes++;
		for (char *q = pairs; *q && *q != '-' && *q != '\n';) {
			int off = (int)strtol(q, &q, 10), want, got;

			if (*q != ':')
				break;
			want = (int)strtol(q + 1, &q, 10);
			got = cm_py_addr2line(minor, tab, len, first, off);
			offsets++;
			if (got != want && bad++ < 5)
				printf("     3.%u firstlineno %d offset %d: line %d, CPython says %d\n", minor, first,
				       off, got, want);
			if (*q == ',')
				q++;
		}
		if (cm_py_addr2line(minor, tab, len, first, -1) != first)
			bad++;
	}
	if (p)
		pclose(p);
	CHECK(codes > 100 && offsets > 10000 && bad == 0,
	      "3.%u (%s): %zu instructions of %zu code objects, %zu lines differ from co_lines()", minor,
	      path, offsets, codes, bad);
	free(line);
	free(tab);
}

int main(void)
{
	char home[PATH_MAX - 64], path[PATH_MAX], buf[128];
	const char *h = getenv("HOME");
	static const struct { unsigned minor; const char *ver; } pyenv[] = {
		{ 10, "3.10.13" }, { 12, "3.12.1" }, { 13, "3.13.0" },
	};

	snprintf(home, sizeof(home), "%s", h ? h : "/root");
	/* Debian's own interpreter is a dependency: always there */
	check_interpreter("/usr/bin/python3.11", 11);
	for (size_t i = 0; i < sizeof(pyenv) / sizeof(pyenv[0]); i++) {
		snprintf(path, sizeof(path), "%s/.pyenv/versions/%s/bin/python3", home, pyenv[i].ver);
		check_interpreter(path, pyenv[i].minor);
	}

	for (unsigned m = 10; m <= 13; m++) {
		const struct cm_py_layout *L = cm_py_layout_of(m);

		CHECK(L && L->minor == m && L->ts_thread_id && L->co_linetable && L->gil_size,
		      "layout of 3.%u from the %s headers", m, L ? L->source : "(none)");
	}
	CHECK(!cm_py_layout_of(9) && !cm_py_layout_of(14), "no layout for 3.9 or 3.14");
	CHECK_STR(cm_py_short_file("/usr/lib/python3.11/threading.py", buf, sizeof(buf)), "threading.py",
		  "a module's file");
	CHECK_STR(cm_py_short_file("/x/torch/nn/__init__.py", buf, sizeof(buf)), "nn/__init__.py",
		  "a package's file keeps its directory");
	CHECK_STR(cm_py_short_file("<frozen importlib._bootstrap>", buf, sizeof(buf)),
		  "<frozen importlib._bootstrap>", "a frozen module");
	CHECK_STR(cm_py_short_file("__init__.py", buf, sizeof(buf)), "__init__.py", "a bare name");
	/* no table: no line, except before the first instruction */
	CHECK(cm_py_addr2line(11, NULL, 0, 7, 10) == -1 && cm_py_addr2line(11, NULL, 0, 7, -1) == 7,
	      "no table: -1, firstlineno before the code");
	/* a table we cannot be misreading: not an entry's first byte */
	CHECK(cm_py_addr2line(12, (const uint8_t[]){ 0x01, 0x02 }, 2, 5, 0) == -1, "bad 3.11+ table: -1");
	return check_done();
}
