// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Facts about the machine, so a report read elsewhere says where it came from.
 * Each fact is optional: containers and odd kernels lack some of them. */
#include <limits.h>
#include <string.h>
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
	return h;
}
