// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Syscall names and contact-map subsystems. The table itself is generated
 * from maps/syscalls_<arch>.tsv into syscall_table.c. */
#include <string.h>
#include "cm.h"
#include "contactmap.h"

static const struct {
	const char *key, *label;
} subsys[CM_SS_COUNT] = {
	[CM_SS_CPU_USER] = { "cpu_user", "CPU (user)" },
	[CM_SS_CPU_KERNEL] = { "cpu_kernel", "CPU (kernel)" },
	[CM_SS_RUNQ] = { "runq", "run queue" },
	[CM_SS_MEMORY] = { "memory", "memory" },
	[CM_SS_SYNC] = { "sync", "sync (futex)" },
	[CM_SS_FILE_IO] = { "file_io", "file I/O" },
	[CM_SS_NETWORK] = { "network", "network" },
	[CM_SS_BLOCK_IO] = { "block_io", "block I/O wait" },
	[CM_SS_SLEEP] = { "sleep", "sleep/timers" },
	[CM_SS_POLL] = { "poll", "poll/wait" },
	[CM_SS_CHILD_WAIT] = { "child_wait", "child wait" },
	[CM_SS_PROCESS] = { "process", "process mgmt" },
	[CM_SS_OTHER] = { "other", "other" },
	[CM_SS_GPU] = { "gpu", "GPU wait" },
	[CM_SS_UNATTRIBUTED] = { "unattributed", "unattributed" },
};

const char *cm_syscall_name(unsigned nr)
{
	/* thread-local so that two threads formatting unknown numbers don't race */
	static _Thread_local char buf[24];

	if (nr < cm_nsyscalls && cm_syscalls[nr].name)
		return cm_syscalls[nr].name;
	if (nr == CM_SYS_GPU_IOCTL)
		return "ioctl:gpu";
	snprintf(buf, sizeof(buf), "syscall_%u", nr);
	return buf;
}

int cm_syscall_nr(const char *name)
{
	if (!name)
		return -1;
	for (unsigned i = 0; i < cm_nsyscalls; i++)
		if (cm_syscalls[i].name && !strcmp(cm_syscalls[i].name, name))
			return (int)i;
	return -1;
}

enum cm_subsys cm_syscall_group(unsigned nr)
{
	if (nr == CM_SYS_GPU_IOCTL)
		return CM_SS_GPU;
	return nr < cm_nsyscalls ? cm_syscalls[nr].group : CM_SS_OTHER;
}

const char *cm_subsys_key(enum cm_subsys s)
{
	return (unsigned)s < CM_SS_COUNT ? subsys[s].key : "unknown";
}

const char *cm_subsys_label(enum cm_subsys s)
{
	return (unsigned)s < CM_SS_COUNT ? subsys[s].label : "unknown";
}

int cm_subsys_from_key(const char *key)
{
	for (int i = 0; key && i < CM_SS_COUNT; i++)
		if (!strcmp(subsys[i].key, key))
			return i;
	return -1;
}
