// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The knobs `contactmap experiment` turns: what each changes, how it is
 * checked before anything runs, and how it is put back.
 *
 * Every check happens in cm_knob_parse(), before the first run: a knob this
 * machine lacks, a value the knob does not take or a privilege this process
 * lacks is one error line and nothing changes. System-wide knobs are files;
 * they are only ever written through cm_knob_write(), which refuses any
 * path outside the few trees knobs live in (the state file that drives
 * --restore is data, and root writes what it says).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include "cm.h"
#include "knobs.h"

#define SYSCTL_DIR "/proc/sys/"
#define THP_DIR "/sys/kernel/mm/transparent_hugepage/"
#define CPU_DIR "/sys/devices/system/cpu/"
#define PREFAULT_SHIM "libcontactmap-prefault.so"
#define PREFAULT_MIN_DEFAULT 65536
#define STR_(x) #x
#define STR(x) STR_(x)
#define MAX_VALUE 1024
#define PER_PROCESS "nothing: it lives in the workload's processes only"

/* ---- the table ---------------------------------------------------------------
 * One row per knob: how it is written, whether it changes the whole machine,
 * what it needs, what it changes and how it is undone. --list-knobs prints
 * exactly this. */
struct knob_def {
	const char *prefix;	/* spec starts with it ("prefault" is matched whole or with '=') */
	const char *syntax;
	bool system;
	const char *needs;
	const char *what;
	const char *restore;
	int (*parse)(struct cm_knob *k, const char *arg);
};

static int parse_sysctl(struct cm_knob *k, const char *arg);
static int parse_thp(struct cm_knob *k, const char *arg);
static int parse_thp_defrag(struct cm_knob *k, const char *arg);
static int parse_iosched(struct cm_knob *k, const char *arg);
static int parse_governor(struct cm_knob *k, const char *arg);
static int parse_cpus(struct cm_knob *k, const char *arg);
static int parse_sched(struct cm_knob *k, const char *arg);
static int parse_env(struct cm_knob *k, const char *arg);
static int parse_malloc(struct cm_knob *k, const char *arg);
static int parse_prefault(struct cm_knob *k, const char *arg);

static const struct knob_def knob_defs[] = {
	{ "sysctl:", "sysctl:NAME=VALUE", true, "root",
	  "the kernel tunable /proc/sys/NAME (dots or slashes), e.g.\n"
	  "sysctl:vm.swappiness=10, sysctl:kernel.sched_autogroup_enabled=0",
	  "the value read before the first run, after every run",
	  parse_sysctl },
	{ "thp=", "thp=always|madvise|never", true, "root",
	  "transparent huge pages for anonymous memory,\n" THP_DIR "enabled",
	  "the mode read before the first run, after every run", parse_thp },
	{ "thp-defrag=", "thp-defrag=MODE", true, "root",
	  "how hard a fault works for a huge page (always, defer, defer+madvise,\n"
	  "madvise or never), " THP_DIR "defrag",
	  "the mode read before the first run, after every run", parse_thp_defrag },
	{ "iosched=", "iosched=DEV:SCHED", true, "root",
	  "the I/O scheduler of block device DEV (/sys/block/DEV/queue/scheduler),\n"
	  "e.g. iosched=nvme0n1:none, iosched=sda:mq-deadline",
	  "the scheduler read before the first run, after every run", parse_iosched },
	{ "governor=", "governor=NAME", true, "root",
	  "the cpufreq governor of every CPU (performance, powersave, schedutil ...)",
	  "each CPU's governor read before the first run, after every run", parse_governor },
	{ "cpus=", "cpus=LIST", false, "no privilege",
	  "the CPUs the workload may run on (sched_setaffinity), e.g. cpus=0-3,6",
	  PER_PROCESS, parse_cpus },
	{ "sched=", "sched=POLICY[:PRIO][@COMM]", false, "CAP_SYS_NICE for fifo and rr",
	  "the scheduling policy (other, batch, idle, fifo:PRIO, rr:PRIO) of the\n"
	  "workload, or with @COMM only of its threads named COMM (set within\n"
	  "10 ms of the name appearing)",
	  PER_PROCESS, parse_sched },
	{ "env:", "env:NAME=VALUE", false, "no privilege",
	  "an environment variable of the workload, e.g. env:OMP_NUM_THREADS=1",
	  PER_PROCESS, parse_env },
	{ "malloc:", "malloc:notrim, malloc:TUNABLE=N", false, "no privilege",
	  "glibc malloc tunables (GLIBC_TUNABLES) of the workload. notrim keeps\n"
	  "freed memory: trim_threshold at its maximum and mmap_max=0, so freed\n"
	  "blocks are reused instead of unmapped and faulted in again. TUNABLE is\n"
	  "one of arena_max, arena_test, mmap_max, mmap_threshold, top_pad,\n"
	  "trim_threshold, tcache_count, tcache_max, hugetlb",
	  PER_PROCESS, parse_malloc },
	{ "prefault", "prefault[=MIN_BYTES]", false, "no privilege",
	  "an LD_PRELOAD shim, " PREFAULT_SHIM ", maps anonymous memory with\n"
	  "MAP_POPULATE and populates malloc blocks of MIN_BYTES (64 KiB) or more\n"
	  "as they are allocated: the workload takes no first-touch faults",
	  PER_PROCESS, parse_prefault },
};
#define NDEFS (sizeof(knob_defs) / sizeof(*knob_defs))

void cm_knobs_list(FILE *out)
{
	fputs("Knobs of contactmap experiment (--knob KNOB...). System-wide knobs are\n"
	      "recorded in a state file before they change and restored after every run,\n"
	      "on error, Ctrl-C and SIGTERM, and by `contactmap experiment --restore` if\n"
	      "contactmap itself was killed.\n", out);
	for (size_t i = 0; i < NDEFS; i++) {
		const struct knob_def *d = &knob_defs[i];

		fprintf(out, "\n  %-30s %s, %s\n", d->syntax,
			d->system ? "system-wide" : "per process", d->needs);
		for (const char *p = d->what; *p;) {
			size_t n = strcspn(p, "\n");

			fprintf(out, "      %.*s\n", (int)n, p);
			p += n + (p[n] == '\n');
		}
		fprintf(out, "      restored: %s\n", d->restore);
	}
}

/* ---- small helpers --------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d) {
		cm_err("out of memory");
		exit(1);
	}
	return d;
}

static char *file_text(const char *path, int *err)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	*err = errno;
	close(fd);
	if (n < 0)
		return NULL;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	return xstrdup(buf);
}

/* "always [madvise] never" -> "madvise" (in place); NULL without brackets. */
static char *bracketed(char *s)
{
	char *a = strchr(s, '['), *b = a ? strchr(a, ']') : NULL;

	if (!b)
		return NULL;
	*b = '\0';
	return a + 1;
}

/* Whether word is one of the space-separated words of list (brackets ignored). */
static bool in_list(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; *p;) {
		p += strspn(p, " \t[]");
		size_t m = strcspn(p, " \t[]");

		if (m == n && !strncmp(p, word, n))
			return true;
		p += m;
	}
	return false;
}

/* "always [madvise] never" -> "always, madvise, never" */
static char *plain_list(const char *list)
{
	char *s = calloc(1, 2 * strlen(list) + 1), *o = s;

	if (!s) {
		cm_err("out of memory");
		exit(1);
	}
	for (const char *p = list; *p;) {
		p += strspn(p, " \t[]");
		size_t m = strcspn(p, " \t[]");

		if (!m)
			break;
		o += sprintf(o, "%s%.*s", o == s ? "" : ", ", (int)m, p);
		p += m;
	}
	return s;
}

static bool has_cap(int cap)
{
	unsigned long long eff = 0;
	char line[256];
	FILE *fp = fopen("/proc/self/status", "re");

	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (fp)
		fclose(fp);
	return (eff >> cap) & 1;
}

static bool bracket_file(const char *path)
{
	size_t n = strlen(path);

	return !strncmp(path, THP_DIR, strlen(THP_DIR)) ||
	       (n > 16 && !strcmp(path + n - 16, "/queue/scheduler"));
}

char *cm_knob_read(const char *path)
{
	int err;
	char *s = file_text(path, &err), *b;

	if (!s) {
		errno = err;
		return NULL;
	}
	if (bracket_file(path) && (b = bracketed(s))) {
		char *w = xstrdup(b);

		free(s);
		return w;
	}
	return s;
}

static bool name_chars(const char *s, const char *extra)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return false;
	return true;
}

bool cm_knob_path_allowed(const char *path)
{
	unsigned cpu;
	char tail[64];

	if (strstr(path, "/../") || strstr(path, "/./") || strstr(path, "//"))
		return false;
	if (!strncmp(path, SYSCTL_DIR, strlen(SYSCTL_DIR)))
		return name_chars(path + strlen(SYSCTL_DIR), "_-./") &&
		       path[strlen(path) - 1] != '/' && strcmp(path + strlen(path) - 3, "/..");
	if (!strcmp(path, THP_DIR "enabled") || !strcmp(path, THP_DIR "defrag"))
		return true;
	if (!strncmp(path, "/sys/block/", 11)) {
		const char *dev = path + 11, *slash = strchr(dev, '/');
		char name[NAME_MAX + 1];

		if (!slash || slash == dev || (size_t)(slash - dev) > NAME_MAX || strcmp(slash, "/queue/scheduler"))
			return false;
		snprintf(name, sizeof(name), "%.*s", (int)(slash - dev), dev);
		return name_chars(name, "_-.:") && strcmp(name, ".") && strcmp(name, "..");
	}
	return sscanf(path, CPU_DIR "cpu%u/cpufreq/%63s", &cpu, tail) == 2 &&
	       !strcmp(tail, "scaling_governor") && !strchr(path + strlen(CPU_DIR), '.');
}

int cm_knob_write(const char *path, const char *value)
{
	size_t len = strlen(value);
	ssize_t n;
	int fd, err;

	if (!cm_knob_path_allowed(path)) {
		errno = EPERM;
		return -1;
	}
	fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* one write: sysfs and most sysctls parse the first write only */
	n = write(fd, value, len);
	err = errno;
	if (close(fd) && n == (ssize_t)len) {
		return -1;
	}
	if (n != (ssize_t)len) {
		errno = n < 0 ? err : EIO;
		return -1;
	}
	return 0;
}

static void add_file(struct cm_knob *k, const char *path, const char *value, char *original)
{
	struct cm_knob_file *f = realloc(k->files, (k->nfiles + 1) * sizeof(*f));

	if (!f) {
		cm_err("out of memory");
		exit(1);
	}
	k->files = f;
	f[k->nfiles++] = (struct cm_knob_file){ .path = xstrdup(path), .value = xstrdup(value),
						.original = original };
}

/* May this process write path? The message names the knob and what to do. */
static int check_writable(const struct cm_knob *k, const char *path)
{
	if (!faccessat(AT_FDCWD, path, W_OK, AT_EACCESS))
		return 0;
	if (geteuid() != 0 && (errno == EACCES || errno == EPERM))
		cm_err("knob '%s' changes the whole machine and needs root: %s is not writable "
		       "by uid %d; run it with sudo", k->spec, path, (int)geteuid());
	else if (errno == EACCES || errno == EROFS)
		cm_err("knob '%s': %s is read-only here (%s)", k->spec, path, strerror(errno));
	else
		cm_err("knob '%s': cannot write %s: %s", k->spec, path, strerror(errno));
	return -1;
}

/* Splits "NAME=VALUE" at the first '='; false without one. */
static bool split_eq(const char *arg, char *name, size_t nsz, const char **value)
{
	const char *eq = strchr(arg, '=');

	if (!eq || (size_t)(eq - arg) >= nsz)
		return false;
	snprintf(name, nsz, "%.*s", (int)(eq - arg), arg);
	*value = eq + 1;
	return true;
}

static bool parse_u64(const char *s, unsigned long long *v)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	*v = strtoull(s, &end, 0);
	return !errno && !*end;
}

/* ---- sysctl ------------------------------------------------------------------------ */

/* Ranges the kernel enforces for the sysctls experiments usually turn, so the
 * message can say them; any other sysctl is checked by the kernel itself when
 * the experiment writes it once before the first run. */
static const struct { const char *name; long long min, max; } sysctl_ranges[] = {
	{ "vm/swappiness", 0, 200 },
	{ "vm/dirty_ratio", 0, 100 },
	{ "vm/dirty_background_ratio", 0, 100 },
	{ "vm/overcommit_memory", 0, 2 },
	{ "vm/compaction_proactiveness", 0, 100 },
	{ "vm/watermark_scale_factor", 1, 3000 },
	{ "vm/zone_reclaim_mode", 0, 15 },
	{ "kernel/sched_autogroup_enabled", 0, 1 },
	{ "kernel/numa_balancing", 0, 3 },
	{ "kernel/timer_migration", 0, 1 },
	{ "kernel/sched_schedstats", 0, 1 },
};

/* Integers separated by blanks: how many, or 0 when s is not that. */
static int int_words(const char *s)
{
	int n = 0;

	while (*s) {
		char *end;

		s += strspn(s, " \t");
		if (!*s)
			break;
		errno = 0;
		strtoll(s, &end, 10);
		if (end == s || errno || (*end && !strchr(" \t", *end)))
			return 0;
		n++;
		s = end;
	}
	return n;
}

static int parse_sysctl(struct cm_knob *k, const char *arg)
{
	char name[256], path[sizeof(SYSCTL_DIR) + 256], *orig;
	const char *value;
	struct stat st;
	int err, nwords;

	if (!split_eq(arg, name, sizeof(name), &value) || !*name) {
		cm_err("knob '%s': give sysctl:NAME=VALUE, e.g. sysctl:vm.swappiness=10", k->spec);
		return -1;
	}
	/* dots separate levels unless the name uses slashes (net.ipv4.conf.eth0.1 ...) */
	if (!strchr(name, '/'))
		for (char *p = name; *p; p++)
			if (*p == '.')
				*p = '/';
	if (!name_chars(name, "_-./") || name[0] == '/' || name[0] == '.' || strstr(name, "..") ||
	    strstr(name, "//") || name[strlen(name) - 1] == '/') {
		cm_err("knob '%s': '%.*s' is not a sysctl name", k->spec, (int)(strchr(arg, '=') - arg), arg);
		return -1;
	}
	snprintf(path, sizeof(path), SYSCTL_DIR "%s", name);
	if (stat(path, &st)) {
		cm_err("knob '%s': no such sysctl on this machine (%s: %s); `sysctl -a` lists them",
		       k->spec, path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		cm_err("knob '%s': %s is a group of sysctls, not one", k->spec, path);
		return -1;
	}
	if (!*value || strlen(value) > MAX_VALUE || strpbrk(value, "\n\r")) {
		cm_err("knob '%s': give one line of value, e.g. sysctl:vm.swappiness=10", k->spec);
		return -1;
	}
	orig = file_text(path, &err);
	if (!orig) {
		cm_err("knob '%s': cannot read %s (%s), so it could not be restored: not supported",
		       k->spec, path, strerror(err));
		return -1;
	}
	if (strchr(orig, '\n')) {
		cm_err("knob '%s': %s holds several lines: only one-line sysctls can be restored",
		       k->spec, path);
		free(orig);
		return -1;
	}
	nwords = int_words(orig);
	if (nwords && int_words(value) != nwords) {
		cm_err("knob '%s': %s takes %d integer%s (it is '%s' now)", k->spec, path, nwords,
		       nwords == 1 ? "" : "s", orig);
		free(orig);
		return -1;
	}
	for (size_t i = 0; i < sizeof(sysctl_ranges) / sizeof(*sysctl_ranges); i++) {
		long long v = strtoll(value, NULL, 10);

		if (strcmp(sysctl_ranges[i].name, name))
			continue;
		if (v < sysctl_ranges[i].min || v > sysctl_ranges[i].max) {
			cm_err("knob '%s': out of range: %s takes %lld to %lld", k->spec, path,
			       sysctl_ranges[i].min, sysctl_ranges[i].max);
			free(orig);
			return -1;
		}
	}
	if (check_writable(k, path)) {
		free(orig);
		return -1;
	}
	add_file(k, path, value, orig);
	return 0;
}

/* ---- files with a [chosen] word: THP, I/O schedulers --------------------------------- */

static int parse_choice(struct cm_knob *k, const char *path, const char *value, const char *what,
			const char *missing)
{
	int err;
	char *list = file_text(path, &err), *cur;

	if (!list) {
		if (err == ENOENT)
			cm_err("knob '%s': %s (no %s)", k->spec, missing, path);
		else
			cm_err("knob '%s': cannot read %s: %s", k->spec, path, strerror(err));
		return -1;
	}
	if (!*value || !in_list(list, value)) {
		char *plain = plain_list(list);

		cm_err("knob '%s': %s is one of: %s", k->spec, what, plain);
		free(plain);
		free(list);
		return -1;
	}
	cur = bracketed(list);
	if (!cur) {
		cm_err("knob '%s': %s does not say which is in use", k->spec, path);
		free(list);
		return -1;
	}
	cur = xstrdup(cur);
	free(list);
	if (check_writable(k, path)) {
		free(cur);
		return -1;
	}
	add_file(k, path, value, cur);
	return 0;
}

static int parse_thp(struct cm_knob *k, const char *arg)
{
	return parse_choice(k, THP_DIR "enabled", arg, "the THP mode",
			    "this kernel has no transparent huge pages");
}

static int parse_thp_defrag(struct cm_knob *k, const char *arg)
{
	return parse_choice(k, THP_DIR "defrag", arg, "the THP defrag mode",
			    "this kernel has no transparent huge pages");
}

static int parse_iosched(struct cm_knob *k, const char *arg)
{
	char dev[NAME_MAX + 1], path[PATH_MAX], *msg;
	const char *colon = strchr(arg, ':');
	int rc;

	if (!colon || colon == arg || (size_t)(colon - arg) > NAME_MAX) {
		cm_err("knob '%s': give iosched=DEV:SCHED, e.g. iosched=sda:mq-deadline", k->spec);
		return -1;
	}
	snprintf(dev, sizeof(dev), "%.*s", (int)(colon - arg), arg);
	if (!name_chars(dev, "_-.") || !strcmp(dev, ".") || !strcmp(dev, "..")) {
		cm_err("knob '%s': '%s' is not a block device name (see /sys/block)", k->spec, dev);
		return -1;
	}
	snprintf(path, sizeof(path), "/sys/block/%s/queue/scheduler", dev);
	if (asprintf(&msg, "no block device %s with an I/O scheduler here", dev) < 0)
		return -1;
	rc = parse_choice(k, path, colon + 1, "the I/O scheduler", msg);
	free(msg);
	return rc;
}

/* ---- governor: one file per CPU -------------------------------------------------------- */

static int parse_governor(struct cm_knob *k, const char *arg)
{
	char path[PATH_MAX];
	DIR *d = opendir(CPU_DIR);
	struct dirent *de;
	char *avail;
	int err;

	snprintf(path, sizeof(path), CPU_DIR "cpu0/cpufreq/scaling_available_governors");
	avail = file_text(path, &err);
	if (!avail) {
		if (d)
			closedir(d);
		cm_err("knob '%s': this machine has no CPU frequency scaling (%s: %s): the governor "
		       "cannot be set here", k->spec, CPU_DIR "cpu0/cpufreq", strerror(err));
		return -1;
	}
	if (!*arg || !in_list(avail, arg)) {
		cm_err("knob '%s': the governor is one of: %s", k->spec, avail);
		free(avail);
		if (d)
			closedir(d);
		return -1;
	}
	free(avail);
	while (d && (de = readdir(d))) {
		unsigned cpu;
		char tail;
		char *orig;

		if (sscanf(de->d_name, "cpu%u%c", &cpu, &tail) != 1)
			continue;
		snprintf(path, sizeof(path), CPU_DIR "cpu%u/cpufreq/scaling_governor", cpu);
		orig = file_text(path, &err);
		if (!orig)
			continue;	/* offline, or without cpufreq */
		if (check_writable(k, path)) {
			free(orig);
			closedir(d);
			return -1;
		}
		add_file(k, path, arg, orig);
	}
	if (d)
		closedir(d);
	if (!k->nfiles) {
		cm_err("knob '%s': no CPU has a cpufreq governor here", k->spec);
		return -1;
	}
	return 0;
}

/* ---- per process ------------------------------------------------------------------------ */

/* 0, -1 for a malformed list, or -2 with *big the first CPU past CPU_SETSIZE. */
static int cpu_list(const char *s, cpu_set_t *set, unsigned long *big)
{
	CPU_ZERO(set);
	while (*s) {
		char *end;
		unsigned long a, b;

		if (!isdigit((unsigned char)*s))
			return -1;
		a = b = strtoul(s, &end, 10);
		if (*end == '-') {
			if (!isdigit((unsigned char)end[1]))
				return -1;
			b = strtoul(end + 1, &end, 10);
		}
		if (a > b)
			return -1;
		if (b >= CPU_SETSIZE) {
			*big = a >= CPU_SETSIZE ? a : CPU_SETSIZE;
			return -2;
		}
		for (unsigned long c = a; c <= b; c++)
			CPU_SET(c, set);
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -1;
		s = end;
	}
	return CPU_COUNT(set) ? 0 : -1;
}

static void fmt_cpus(const cpu_set_t *set, char *buf, size_t sz)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE && o < sz; c++) {
		int e = c;

		if (!CPU_ISSET(c, set))
			continue;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
			e++;
		o += snprintf(buf + o, sz - o, e > c ? "%s%d-%d" : "%s%d", o ? "," : "", c, e);
		c = e;
	}
}

static int parse_cpus(struct cm_knob *k, const char *arg)
{
	cpu_set_t want, allowed;
	char have[256];
	unsigned long big = 0;
	int rc = cpu_list(arg, &want, &big);

	if (sched_getaffinity(0, sizeof(allowed), &allowed)) {
		cm_err("knob '%s': sched_getaffinity: %s", k->spec, strerror(errno));
		return -1;
	}
	if (rc == -2) {
		fmt_cpus(&allowed, have, sizeof(have));
		cm_err("knob '%s': CPU %lu is not available here (this process may use CPUs %s)",
		       k->spec, big, have);
		return -1;
	}
	if (rc) {
		cm_err("knob '%s': give a CPU list, e.g. cpus=0-3,6", k->spec);
		return -1;
	}
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &want) && !CPU_ISSET(c, &allowed)) {
			fmt_cpus(&allowed, have, sizeof(have));
			cm_err("knob '%s': CPU %d is not available here (this process may use CPUs %s)",
			       k->spec, c, have);
			return -1;
		}
	}
	return 0;
}

static const struct { const char *name; int policy; bool rt; } policies[] = {
	{ "other", SCHED_OTHER, false }, { "batch", SCHED_BATCH, false },
	{ "idle", SCHED_IDLE, false }, { "fifo", SCHED_FIFO, true }, { "rr", SCHED_RR, true },
};

static int parse_sched(struct cm_knob *k, const char *arg)
{
	char pol[16];
	const char *at = strchr(arg, '@'), *colon;
	size_t n = at ? (size_t)(at - arg) : strlen(arg);
	int i, np = sizeof(policies) / sizeof(*policies);

	colon = memchr(arg, ':', n);
	snprintf(pol, sizeof(pol), "%.*s", (int)(colon ? (size_t)(colon - arg) : n), arg);
	for (i = 0; i < np && strcmp(pol, policies[i].name); i++)
		;
	if (i == np) {
		cm_err("knob '%s': the policy is one of other, batch, idle, fifo:PRIO, rr:PRIO", k->spec);
		return -1;
	}
	k->policy = policies[i].policy;
	if (policies[i].rt) {
		int lo = sched_get_priority_min(k->policy), hi = sched_get_priority_max(k->policy);
		char *end;
		long p = colon ? strtol(colon + 1, &end, 10) : -1;

		if (!colon || end == colon + 1 || end != arg + n || p < lo || p > hi) {
			cm_err("knob '%s': %s takes a priority %d to %d, e.g. sched=%s:10", k->spec, pol,
			       lo, hi, pol);
			return -1;
		}
		k->prio = (int)p;
		if (geteuid() != 0 && !has_cap(23 /* CAP_SYS_NICE */)) {
			struct rlimit rl;

			if (getrlimit(RLIMIT_RTPRIO, &rl) || rl.rlim_cur < (rlim_t)p) {
				cm_err("knob '%s': real-time policies need root or CAP_SYS_NICE "
				       "(or RLIMIT_RTPRIO %ld): run it with sudo", k->spec, p);
				return -1;
			}
		}
	} else if (colon) {
		cm_err("knob '%s': %s takes no priority", k->spec, pol);
		return -1;
	}
	if (at) {
		if (!at[1] || strlen(at + 1) > 15) {
			cm_err("knob '%s': give a thread name of 1 to 15 characters after '@'", k->spec);
			return -1;
		}
		snprintf(k->comm, sizeof(k->comm), "%s", at + 1);
	}
	return 0;
}

static int parse_env(struct cm_knob *k, const char *arg)
{
	char name[256];
	const char *value;

	if (!split_eq(arg, name, sizeof(name), &value) ||
	    !(isalpha((unsigned char)name[0]) || name[0] == '_') || !name_chars(name, "_")) {
		cm_err("knob '%s': give env:NAME=VALUE with NAME of letters, digits and '_'", k->spec);
		return -1;
	}
	return 0;
}

/* GLIBC_TUNABLES glibc.malloc.* that take a number; max 0 means none. */
static const struct { const char *name; unsigned long long max; } malloc_tunables[] = {
	{ "arena_max", 0 }, { "arena_test", 0 }, { "mmap_max", INT_MAX },
	/* glibc ignores a threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit) */
	{ "mmap_threshold", 32ULL << 20 }, { "top_pad", 0 }, { "trim_threshold", 0 },
	{ "tcache_count", 65535 }, { "tcache_max", 0 }, { "hugetlb", 2 },
};

/* malloc:notrim: freed memory stays with the process; nothing goes back to
 * the kernel to be faulted in again on the next allocation. */
static const char notrim_tunables[] =
	"glibc.malloc.trim_threshold=18446744073709551615:glibc.malloc.mmap_max=0";

static int parse_malloc(struct cm_knob *k, const char *arg)
{
	char name[64];
	const char *value;
	unsigned long long v;
	size_t i, n = sizeof(malloc_tunables) / sizeof(*malloc_tunables);

	if (!strcmp(arg, "notrim"))
		return 0;
	if (!split_eq(arg, name, sizeof(name), &value)) {
		cm_err("knob '%s': give malloc:notrim or malloc:TUNABLE=N (see --list-knobs)", k->spec);
		return -1;
	}
	for (i = 0; i < n && strcmp(name, malloc_tunables[i].name); i++)
		;
	if (i == n) {
		cm_err("knob '%s': no glibc malloc tunable '%s' (see --list-knobs)", k->spec, name);
		return -1;
	}
	if (!parse_u64(value, &v)) {
		cm_err("knob '%s': %s takes a non-negative integer", k->spec, name);
		return -1;
	}
	if (malloc_tunables[i].max && v > malloc_tunables[i].max) {
		cm_err("knob '%s': out of range: %s takes 0 to %llu", k->spec, name, malloc_tunables[i].max);
		return -1;
	}
	return 0;
}

static bool find_shim(char *out, size_t sz)
{
	char exe[PATH_MAX], dir[PATH_MAX];
	const char *cands[] = { "%s/" PREFAULT_SHIM, "%s/../lib/contactmap/" PREFAULT_SHIM };
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return false;
	exe[n] = '\0';
	snprintf(dir, sizeof(dir), "%s", dirname(exe));
	for (size_t i = 0; i < 2; i++) {
		char p[PATH_MAX + 64];

		snprintf(p, sizeof(p), cands[i], dir);
		if (!access(p, R_OK) && realpath(p, out) && strlen(out) < sz)
			return true;
	}
	return false;
}

static int parse_prefault(struct cm_knob *k, const char *arg)
{
	char shim[PATH_MAX];
	unsigned long long v;

	if (*arg && (*arg != '=' || !parse_u64(arg + 1, &v))) {
		cm_err("knob '%s': give prefault or prefault=MIN_BYTES", k->spec);
		return -1;
	}
	if (!find_shim(shim, sizeof(shim))) {
		cm_err("knob '%s': the shim %s is not installed next to contactmap (make builds it "
		       "into .output/, make install into PREFIX/lib/contactmap/)", k->spec, PREFAULT_SHIM);
		return -1;
	}
	return 0;
}

/* ---- parse, apply --------------------------------------------------------------------- */

static const struct knob_def *def_of(const char *spec)
{
	for (size_t i = 0; i < NDEFS; i++) {
		size_t n = strlen(knob_defs[i].prefix);

		if (strncmp(spec, knob_defs[i].prefix, n))
			continue;
		/* "prefault" is a word: "prefaulting" is not it */
		if (!strcmp(knob_defs[i].prefix, "prefault") && spec[n] && spec[n] != '=')
			continue;
		return &knob_defs[i];
	}
	return NULL;
}

int cm_knob_parse(const char *spec, struct cm_knob *k)
{
	const struct knob_def *d = def_of(spec);

	*k = (struct cm_knob){ .spec = xstrdup(spec) };
	if (!d) {
		cm_err("unknown knob '%s': contactmap experiment --list-knobs lists them", spec);
		return -1;
	}
	k->kind = d->prefix;
	k->system = d->system;
	if (d->parse(k, spec + strlen(d->prefix))) {
		cm_knob_free(k);
		return -1;
	}
	return 0;
}

void cm_knob_free(struct cm_knob *k)
{
	for (int i = 0; i < k->nfiles; i++) {
		free(k->files[i].path);
		free(k->files[i].value);
		free(k->files[i].original);
	}
	free(k->files);
	free(k->spec);
	*k = (struct cm_knob){ 0 };
}

/* NAME=VALUE appended to a ':' (or other sep) separated variable. */
static int append_env(const char *name, const char *value, char sep, bool front)
{
	const char *old = getenv(name);
	char *v;
	int rc;

	if (!old || !*old)
		return setenv(name, value, 1);
	if (asprintf(&v, "%s%c%s", front ? value : old, sep, front ? old : value) < 0)
		return -1;
	rc = setenv(name, v, 1);
	free(v);
	return rc;
}

int cm_knob_apply_here(const struct cm_knob *k)
{
	const char *arg = k->spec + strlen(k->kind);

	if (!strcmp(k->kind, "cpus=")) {
		cpu_set_t set;
		unsigned long big;

		if (cpu_list(arg, &set, &big) || sched_setaffinity(0, sizeof(set), &set))
			goto fail;
	} else if (!strcmp(k->kind, "sched=")) {
		struct sched_param sp = { .sched_priority = k->prio };

		if (!k->comm[0] && sched_setscheduler(0, k->policy, &sp))
			goto fail;
	} else if (!strcmp(k->kind, "env:")) {
		const char *eq = strchr(arg, '=');
		char name[256];

		snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
		if (setenv(name, eq + 1, 1))
			goto fail;
	} else if (!strcmp(k->kind, "malloc:")) {
		char *t = NULL;

		if (!strcmp(arg, "notrim"))
			t = xstrdup(notrim_tunables);
		else if (asprintf(&t, "glibc.malloc.%s", arg) < 0)
			goto fail;
		int rc = append_env("GLIBC_TUNABLES", t, ':', false);

		free(t);
		if (rc)
			goto fail;
	} else if (!strcmp(k->kind, "prefault")) {
		char shim[PATH_MAX];

		char min[32];

		snprintf(min, sizeof(min), "%s", *arg == '=' ? arg + 1 : STR(PREFAULT_MIN_DEFAULT));
		if (!find_shim(shim, sizeof(shim)) || append_env("LD_PRELOAD", shim, ':', true) ||
		    setenv("CONTACTMAP_PREFAULT_MIN", min, 1))
			goto fail;
	}
	return 0;
fail:
	cm_err("cannot apply knob '%s': %s", k->spec, strerror(errno));
	return -1;
}

int cm_knob_sched_thread(const struct cm_knob *k, pid_t tid)
{
	struct sched_param sp = { .sched_priority = k->prio };

	if (sched_getscheduler(tid) == k->policy)
		return 0;
	return sched_setscheduler(tid, k->policy, &sp);
}
