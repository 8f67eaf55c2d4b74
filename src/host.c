// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Facts about the machine, so a report read elsewhere says where it came from.
 * Each fact is optional: containers and odd kernels lack some of them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "cm.h"

/* Value of the first "key<spaces/tabs>: value" line of a /proc file, trimmed. */
static bool proc_field(const char *file, const char *key, char *val, size_t sz)
{
	char line[512];
	size_t klen = strlen(key);
	bool found = false;
	FILE *f = fopen(file, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || !strchr(" \t:", line[klen]))
			continue;
		char *v = strchr(line + klen, ':');
		if (!v)
			continue;
		v += strspn(v + 1, " \t") + 1;
		size_t n = strcspn(v, "\n");
		while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n && n < sz) {
			memcpy(val, v, n);
			val[n] = '\0';
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* ---- environment facts that change latency ---------------------------------
 * Everything below is read best-effort: a file that is missing, unreadable or
 * odd leaves its key out, so a report from a container, an old kernel or a
 * machine without a GPU simply says less. */

/* Copies n bytes of in as valid UTF-8: well-formed multibyte sequences are
 * kept, control characters and invalid bytes become "\xNN" (environment
 * values and /proc files are arbitrary bytes; json-c would emit them as is). */
static void sanitize_utf8(const char *in, size_t n, char *out, size_t outsz)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, o = 0;

	if (!outsz)
		return;
	while (i < n && s[i]) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
			     (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = len && i + len <= n && !(len == 1 && (c < 0x20 || c == 0x7f));

		for (size_t k = 1; ok && k < len; k++)
			ok = (s[i + k] & 0xc0) == 0x80;
		if (ok && len > 1) {
			/* reject overlong forms, surrogates and values past U+10FFFF */
			unsigned cp = c & (0x7f >> len);

			for (size_t k = 1; k < len; k++)
				cp = cp << 6 | (s[i + k] & 0x3f);
			ok = cp >= (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) &&
			     cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
		}
		if (ok) {
			if (o + len >= outsz)
				break;
			memcpy(out + o, s + i, len);
			o += len;
			i += len;
		} else {
			if (o + 4 >= outsz)
				break;
			snprintf(out + o, 5, "\\x%02x", c);
			o += 4;
			i++;
		}
	}
	out[o] = '\0';
}

/* Reads a small text file (the first sz-1 bytes), trailing whitespace cut,
 * made valid UTF-8. False when unreadable or empty. */
static bool read_small(const char *path, char *val, size_t sz)
{
	char raw[4096];
	size_t n;
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	n = fread(raw, 1, sizeof(raw) - 1, f);
	fclose(f);
	while (n && strchr(" \t\r\n", raw[n - 1]))
		n--;
	if (!n)
		return false;
	sanitize_utf8(raw, n, val, sz);
	return val[0] != '\0';
}

/* A decimal integer (with optional sign) and nothing else. */
static bool parse_int(const char *s, long long *v)
{
	char *end;

	if (!*s)
		return false;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return !errno && end != s && !*end;
}

/* Adds the file's value under key: an integer when it reads as one. */
static void add_file(json_object *o, const char *key, const char *path)
{
	char buf[1024];
	long long v;

	if (!read_small(path, buf, sizeof(buf)))
		return;
	json_object_object_add(o, key, parse_int(buf, &v) ? json_object_new_int64(v)
							   : json_object_new_string(buf));
}

/* "always [madvise] never" -> "madvise": the kernel brackets the mode in use. */
static void add_bracketed(json_object *o, const char *key, const char *path)
{
	char buf[512], *l, *r;

	if (!read_small(path, buf, sizeof(buf)))
		return;
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (l && r && r > l + 1) {
		*r = '\0';
		json_object_object_add(o, key, json_object_new_string(l + 1));
	}
}

static void add_if_nonempty(json_object *parent, const char *key, json_object *o)
{
	if (o && json_object_object_length(o) > 0)
		json_object_object_add(parent, key, o);
	else
		json_object_put(o);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Scheduler tunables: /proc/sys/kernel/sched_* (all that exist; names kept)
 * and, when debugfs is mounted, the CFS/EEVDF knobs that moved there in 5.13
 * (base_slice_ns replaced min_granularity_ns with EEVDF in 6.6). */
static json_object *sched_tunables(void)
{
	static const char *const debug_keys[] = {
		"base_slice_ns", "latency_ns", "min_granularity_ns", "wakeup_granularity_ns",
		"migration_cost_ns", "nr_migrate", "tunable_scaling", "latency_warn_ms",
	};
	json_object *o = json_object_new_object();
	char path[PATH_MAX], *names[64], buf[256];
	int nnames = 0;
	struct dirent *de;
	DIR *d;

	if (!o)
		return NULL;
	d = opendir("/proc/sys/kernel");
	while (d && (de = readdir(d)) && nnames < 64)
		if (!strncmp(de->d_name, "sched_", 6) && (names[nnames] = strdup(de->d_name)))
			nnames++;
	if (d)
		closedir(d);
	qsort(names, nnames, sizeof(*names), cmp_str);	/* stable key order in the report */
	for (int i = 0; i < nnames; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "/proc/sys/kernel/%s", names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			add_file(o, names[i], path);
		free(names[i]);
	}
	for (size_t i = 0; i < sizeof(debug_keys) / sizeof(*debug_keys); i++) {
		snprintf(path, sizeof(path), "/sys/kernel/debug/sched/%s", debug_keys[i]);
		add_file(o, debug_keys[i], path);
	}
	/* "none voluntary (full)": the parenthesized model is the one in use */
	if (read_small("/sys/kernel/debug/sched/preempt", buf, sizeof(buf))) {
		char *l = strchr(buf, '('), *r = l ? strchr(l, ')') : NULL;

		if (l && r && r > l + 1) {
			*r = '\0';
			json_object_object_add(o, "preempt", json_object_new_string(l + 1));
		}
	}
	return o;
}

static int numa_nodes(void)
{
	DIR *d = opendir("/sys/devices/system/node");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "node", 4) && de->d_name[4] >= '0' && de->d_name[4] <= '9')
			n++;
	if (d)
		closedir(d);
	return n;
}

/* NVIDIA GPUs as the kernel driver lists them; NULL when there is none. */
static json_object *gpu_facts(void)
{
	json_object *g = json_object_new_object(), *gpus = json_object_new_array();
	char buf[1024], path[PATH_MAX], *bus[64];
	struct dirent *de;
	int nbus = 0;
	DIR *d;

	if (!g || !gpus)
		goto none;
	/* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug ..." */
	if (proc_field("/proc/driver/nvidia/version", "NVRM version", buf, sizeof(buf))) {
		char *m = strstr(buf, "Kernel Module"), ver[64];

		if (m && sscanf(m + strlen("Kernel Module"), " %63s", ver) == 1)
			json_object_object_add(g, "nvidia_driver", json_object_new_string(ver));
		else
			json_object_object_add(g, "nvidia_driver", json_object_new_string(buf));
	}
	d = opendir("/proc/driver/nvidia/gpus");
	while (d && (de = readdir(d)) && nbus < 64)
		if (de->d_name[0] != '.' && (bus[nbus] = strdup(de->d_name)))
			nbus++;
	if (d)
		closedir(d);
	qsort(bus, nbus, sizeof(*bus), cmp_str);	/* PCI order, as nvidia-smi lists them */
	for (int i = 0; i < nbus; i++) {
		json_object *one;

		snprintf(path, sizeof(path), "/proc/driver/nvidia/gpus/%s/information", bus[i]);
		if (proc_field(path, "Model", buf, sizeof(buf)) && (one = json_object_new_object())) {
			json_object_object_add(one, "model", json_object_new_string(buf));
			sanitize_utf8(bus[i], strlen(bus[i]), buf, sizeof(buf));
			json_object_object_add(one, "bus", json_object_new_string(buf));
			json_object_array_add(gpus, one);
		}
		free(bus[i]);
	}
	if (json_object_array_length(gpus) > 0) {
		json_object_object_add(g, "count", json_object_new_int((int)json_object_array_length(gpus)));
		json_object_object_add(g, "gpus", gpus);
		gpus = NULL;
	}
	/* the installed toolkit, when it sits where NVIDIA's installer puts it;
	 * the runtime a program loads may differ (a wheel can bundle its own) */
	json_object *cuda = json_object_from_file("/usr/local/cuda/version.json"), *c, *v;

	if (cuda && json_object_object_get_ex(cuda, "cuda", &c) &&
	    json_object_object_get_ex(c, "version", &v) && json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);

		sanitize_utf8(s, strlen(s), buf, 64);
		json_object_object_add(g, "cuda_toolkit", json_object_new_string(buf));
	}
	json_object_put(cuda);
	json_object_put(gpus);
	gpus = NULL;
	if (json_object_object_length(g) > 0)
		return g;
none:
	json_object_put(gpus);
	json_object_put(g);
	return NULL;
}

static void add_env_facts(json_object *h)
{
	char buf[4096];
	int n;

	if (read_small("/proc/cmdline", buf, sizeof(buf)))
		json_object_object_add(h, "cmdline", json_object_new_string(buf));
	if (read_small("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", buf, sizeof(buf)))
		json_object_object_add(h, "cpufreq_governor", json_object_new_string(buf));
	add_bracketed(h, "thp", "/sys/kernel/mm/transparent_hugepage/enabled");
	add_bracketed(h, "thp_defrag", "/sys/kernel/mm/transparent_hugepage/defrag");
	add_file(h, "swappiness", "/proc/sys/vm/swappiness");
	add_if_nonempty(h, "sched", sched_tunables());
	if ((n = numa_nodes()) > 0)
		json_object_object_add(h, "numa_nodes", json_object_new_int(n));
	json_object *g = gpu_facts();
	if (g)
		json_object_object_add(h, "gpu", g);
}

json_object *cm_host_facts(void)
{
	json_object *h = json_object_new_object();
	char buf[HOST_NAME_MAX + 256];
	struct utsname u;
	unsigned long long kb;
	long n;

	if (!h)
		return NULL;
	if (gethostname(buf, sizeof(buf)) == 0) {
		buf[sizeof(buf) - 1] = '\0';
		json_object_object_add(h, "hostname", json_object_new_string(buf));
	}
	if (uname(&u) == 0) {
		json_object_object_add(h, "kernel", json_object_new_string(u.release));
		json_object_object_add(h, "kernel_version", json_object_new_string(u.version));
		json_object_object_add(h, "arch", json_object_new_string(u.machine));
	}
	if ((n = sysconf(_SC_NPROCESSORS_ONLN)) > 0)
		json_object_object_add(h, "cpus", json_object_new_int64(n));
	if (proc_field("/proc/cpuinfo", "model name", buf, sizeof(buf)))
		json_object_object_add(h, "cpu_model", json_object_new_string(buf));
	if (proc_field("/proc/meminfo", "MemTotal", buf, sizeof(buf)) &&
	    sscanf(buf, "%llu", &kb) == 1 && kb <= (unsigned long long)INT64_MAX / 1024)
		json_object_object_add(h, "memory_bytes", json_object_new_int64((int64_t)kb * 1024));
	add_env_facts(h);
	return h;
}

/* ---- the target's own context (cgroup, limits, threading variables) -------- */

/* Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on unified
 * systems, /sys/fs/cgroup/unified on hybrid (v1 + v2) ones. */
static const char *cgroup2_root(void)
{
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0)
		return "/sys/fs/cgroup";
	if (access("/sys/fs/cgroup/unified/cgroup.controllers", F_OK) == 0)
		return "/sys/fs/cgroup/unified";
	return NULL;
}

/* A cgroup path from /proc/PID/cgroup is the kernel's, but it is joined to a
 * directory we then read as root: refuse anything that could climb out. */
static bool safe_cgroup_path(const char *p)
{
	return p[0] == '/' && !strstr(p, "/../") &&
	       !(strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/.."));
}

static void add_limit(json_object *lim, const char *key, const char *dir, const char *file)
{
	char path[PATH_MAX], buf[1024];

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return;
	if (read_small(path, buf, sizeof(buf)))
		json_object_object_add(lim, key, json_object_new_string(buf));
}

static void cgroup_facts(json_object *e, pid_t pid)
{
	char path[64], line[4096], v2[4096] = "", v1mem[4096] = "", v1cpu[4096] = "", v1set[4096] = "";
	json_object *lim = json_object_new_object();
	const char *root;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *p, *ctl = strchr(line, ':');

		line[strcspn(line, "\n")] = '\0';
		if (!ctl || !(p = strchr(ctl + 1, ':')))
			continue;
		*p++ = '\0';
		*ctl++ = '\0';
		if (!strcmp(line, "0") && !*ctl)
			snprintf(v2, sizeof(v2), "%s", p);
		else if (strstr(ctl, "memory"))
			snprintf(v1mem, sizeof(v1mem), "%s", p);
		else if (!strcmp(ctl, "cpuset"))
			snprintf(v1set, sizeof(v1set), "%s", p);
		else if (!strncmp(ctl, "cpu,", 4) || !strcmp(ctl, "cpu") || strstr(ctl, ",cpu,") ||
			 (strlen(ctl) > 4 && !strcmp(ctl + strlen(ctl) - 4, ",cpu")))
			snprintf(v1cpu, sizeof(v1cpu), "%s", p);
	}
	if (f)
		fclose(f);
	if (v2[0] && safe_cgroup_path(v2)) {
		char clean[4096], dir[PATH_MAX];

		sanitize_utf8(v2, strlen(v2), clean, sizeof(clean));
		json_object_object_add(e, "cgroup", json_object_new_string(clean));
		if ((root = cgroup2_root()) &&
		    snprintf(dir, sizeof(dir), "%s%s", root, strcmp(v2, "/") ? v2 : "") < (int)sizeof(dir)) {
			add_limit(lim, "cpu.max", dir, "cpu.max");
			add_limit(lim, "memory.max", dir, "memory.max");
			add_limit(lim, "cpuset.cpus.effective", dir, "cpuset.cpus.effective");
		}
	}
	/* cgroup v1 (or hybrid without the controllers on v2): the same limits
	 * under their v1 names, when the v2 files did not give them */
	if (lim && v1mem[0] && safe_cgroup_path(v1mem) && !json_object_object_get_ex(lim, "memory.max", NULL)) {
		char dir[PATH_MAX];

		if (snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory%s", v1mem) < (int)sizeof(dir))
			add_limit(lim, "memory.limit_in_bytes", dir, "memory.limit_in_bytes");
	}
	if (lim && v1cpu[0] && safe_cgroup_path(v1cpu) && !json_object_object_get_ex(lim, "cpu.max", NULL)) {
		char dir[PATH_MAX];

		if (snprintf(dir, sizeof(dir), "/sys/fs/cgroup/cpu%s", v1cpu) < (int)sizeof(dir)) {
			add_limit(lim, "cpu.cfs_quota_us", dir, "cpu.cfs_quota_us");
			add_limit(lim, "cpu.cfs_period_us", dir, "cpu.cfs_period_us");
		}
	}
	if (lim && v1set[0] && safe_cgroup_path(v1set) &&
	    !json_object_object_get_ex(lim, "cpuset.cpus.effective", NULL)) {
		char dir[PATH_MAX];

		if (snprintf(dir, sizeof(dir), "/sys/fs/cgroup/cpuset%s", v1set) < (int)sizeof(dir))
			add_limit(lim, "cpuset.effective_cpus", dir, "cpuset.effective_cpus");
	}
	add_if_nonempty(e, "cgroup_limits", lim);
}

/* Variables that set thread counts, allocators or GPU behaviour: the usual
 * reasons two runs of the same program contact the OS differently. */
static const char *const env_keys[] = {
	"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS",
	"CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "PYTORCH_CUDA_ALLOC_CONF",
	"MALLOC_ARENA_MAX", "LD_PRELOAD", "PYTHONMALLOC", "GOMAXPROCS",
};

static void environ_facts(json_object *e, pid_t pid)
{
	json_object *vars = json_object_new_object();
	size_t cap = 1 << 16, len = 0;
	char path[64], *buf = malloc(cap);
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	while (buf && fd >= 0) {
		if (len == cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	for (size_t i = 0; buf && vars && i < len;) {
		char *s = buf + i;
		size_t n = strnlen(s, len - i);

		for (size_t k = 0; k < sizeof(env_keys) / sizeof(*env_keys); k++) {
			size_t kl = strlen(env_keys[k]);

			if (n > kl && s[kl] == '=' && !strncmp(s, env_keys[k], kl)) {
				char clean[8192];

				sanitize_utf8(s + kl + 1, n - kl - 1, clean, sizeof(clean));
				json_object_object_add(vars, env_keys[k], json_object_new_string(clean));
			}
		}
		i += n + 1;
	}
	free(buf);
	add_if_nonempty(e, "env", vars);
}

json_object *cm_target_env(pid_t pid)
{
	json_object *e = json_object_new_object();

	if (!e || pid <= 0)
		return e;
	cgroup_facts(e, pid);
	environ_facts(e, pid);
	return e;
}
