/* The generated syscall table and the subsystem keys. */
#include "cm.h"
#include "check.h"
#include "contactmap.h"

static void group_is(const char *name, enum cm_subsys want)
{
	int nr = cm_syscall_nr(name);

	CHECK(nr >= 0 && cm_syscall_group((unsigned)nr) == want, "%s (nr %d) is in %s",
	      name, nr, cm_subsys_key(want));
}

int main(void)
{
	CHECK_U64(cm_syscall_nr("getppid"), 110, "getppid nr");
	CHECK_STR(cm_syscall_name(110), "getppid", "name of 110");
	CHECK(cm_syscall_group(110) == CM_SS_PROCESS, "getppid is process");
	CHECK_STR(cm_syscall_name(0), "read", "name of 0");

	group_is("futex", CM_SS_SYNC);
	group_is("futex_waitv", CM_SS_SYNC);
	group_is("sched_yield", CM_SS_SYNC);
	group_is("read", CM_SS_FILE_IO);
	group_is("openat", CM_SS_FILE_IO);
	group_is("io_uring_enter", CM_SS_FILE_IO);
	group_is("mmap", CM_SS_MEMORY);
	group_is("munmap", CM_SS_MEMORY);
	group_is("clock_nanosleep", CM_SS_SLEEP);
	group_is("epoll_wait", CM_SS_POLL);
	group_is("wait4", CM_SS_CHILD_WAIT);
	group_is("waitid", CM_SS_CHILD_WAIT);
	group_is("recvfrom", CM_SS_NETWORK);
	group_is("clone3", CM_SS_PROCESS);
	group_is("rt_sigprocmask", CM_SS_PROCESS);
	group_is("sched_setaffinity", CM_SS_PROCESS);
	group_is("getrandom", CM_SS_OTHER);

	CHECK_STR(cm_syscall_name(9999), "syscall_9999", "unknown nr");
	CHECK_STR(cm_syscall_name(UINT32_MAX), "syscall_4294967295", "largest nr");
	CHECK(cm_syscall_group(9999) == CM_SS_OTHER, "unknown nr is other");
	CHECK(cm_syscall_nr("no_such_call") == -1, "unknown name is -1");
	CHECK(cm_syscall_nr(NULL) == -1, "NULL name is -1");

	/* gaps (335..423 on x86_64) must be unnamed "other", not zero-filled cpu_user */
	unsigned named = 0, bad_nr = 0, bad_gap = 0;
	for (unsigned i = 0; i < cm_nsyscalls; i++) {
		if (cm_syscalls[i].name) {
			named++;
			if (cm_syscall_nr(cm_syscalls[i].name) != (int)i) {
				bad_nr++;
				printf("FAIL: %s does not map back to %u\n", cm_syscalls[i].name, i);
			}
		} else if (cm_syscalls[i].group != CM_SS_OTHER) {
			bad_gap++;
		} else {
			char want[32];
			snprintf(want, sizeof(want), "syscall_%u", i);
			bad_gap += strcmp(cm_syscall_name(i), want) != 0;
		}
		if (cm_syscalls[i].group > CM_SS_OTHER || cm_syscalls[i].group == CM_SS_CPU_USER ||
		    cm_syscalls[i].group == CM_SS_CPU_KERNEL ||
		    cm_syscalls[i].group == CM_SS_RUNQ || cm_syscalls[i].group == CM_SS_BLOCK_IO)
			bad_gap++;
	}
	CHECK(named > 300, "table has %u named syscalls", named);
	CHECK(bad_nr == 0, "cm_syscall_nr round-trips every named entry (%u bad)", bad_nr);
	CHECK(bad_gap == 0, "gaps are unnamed \"other\", groups are syscall groups (%u bad)", bad_gap);

	static const char *const keys[CM_SS_COUNT] = {
		"cpu_user", "cpu_kernel", "runq", "memory", "sync", "file_io", "network",
		"block_io", "sleep", "poll", "child_wait", "process", "other", "gpu", "unattributed",
	};
	for (int s = 0; s < CM_SS_COUNT; s++) {
		CHECK_STR(cm_subsys_key(s), keys[s], "key");
		CHECK(cm_subsys_from_key(keys[s]) == s, "%s round-trips to %d", keys[s], s);
		CHECK(cm_subsys_label(s) && *cm_subsys_label(s), "%s has label \"%s\"",
		      keys[s], cm_subsys_label(s));
	}
	CHECK_STR(cm_subsys_label(CM_SS_FILE_IO), "file I/O", "file_io label");
	CHECK_STR(cm_subsys_label(CM_SS_BLOCK_IO), "block I/O wait", "block_io label");
	CHECK_STR(cm_subsys_label(CM_SS_GPU), "GPU wait", "gpu label");
	/* ioctl on a GPU driver file: its own pseudo number, in the gpu group */
	CHECK_STR(cm_syscall_name(CM_SYS_GPU_IOCTL), "ioctl:gpu", "gpu ioctl name");
	CHECK(cm_syscall_group(CM_SYS_GPU_IOCTL) == CM_SS_GPU, "gpu ioctl is gpu");
	CHECK(cm_subsys_from_key("nope") == -1, "unknown key is -1");
	CHECK(cm_subsys_from_key(NULL) == -1, "NULL key is -1");
	CHECK_STR(cm_subsys_key(CM_SS_COUNT), "unknown", "out-of-range key");
	return check_done();
}
