#!/usr/bin/python3
"""Regenerate maps/syscalls_<arch>.tsv (nr, name, contact-map group) from a
kernel unistd header, so the table that classifies syscall time is reviewable
as rules here rather than as hand edits to 400 lines.

Usage: scripts/gen-syscall-tsv.py [UNISTD_H] > maps/syscalls_x86_64.tsv
"""
import re
import sys

DEFAULT_HDR = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

# Exact names win over the prefix rules below (sched_yield is sync although
# sched_* is process). Names absent from a given header are simply unused.
EXACT = {
    "memory": """mmap munmap brk madvise mprotect mremap msync mincore
        mlock mlock2 munlock mlockall munlockall membarrier remap_file_pages
        mbind set_mempolicy get_mempolicy set_mempolicy_home_node migrate_pages
        move_pages pkey_mprotect pkey_alloc pkey_free process_madvise
        process_mrelease process_vm_readv process_vm_writev memfd_create
        memfd_secret userfaultfd shmget shmat shmdt shmctl""",
    "sync": """futex futex_waitv sched_yield semget semop semtimedop semctl
        set_robust_list get_robust_list msgget msgsnd msgrcv msgctl flock
        eventfd eventfd2""",
    "file_io": """read write open openat openat2 creat close close_range
        stat fstat lstat newfstatat statx statfs fstatfs lseek ioctl
        pread64 pwrite64 readv writev preadv pwritev preadv2 pwritev2
        sendfile splice tee vmsplice copy_file_range readahead fadvise64
        fallocate truncate ftruncate fsync fdatasync sync syncfs sync_file_range
        access faccessat faccessat2 pipe pipe2 dup dup2 dup3 fcntl
        getdents getdents64 getcwd chdir fchdir mkdir mkdirat rmdir
        rename renameat renameat2 link linkat unlink unlinkat symlink symlinkat
        readlink readlinkat chmod fchmod fchmodat chown fchown lchown fchownat
        utime utimes utimensat futimesat mknod mknodat
        name_to_handle_at open_by_handle_at
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents""",
    "network": """socket socketpair connect accept accept4 bind listen
        sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown
        setsockopt getsockopt getsockname getpeername""",
    "sleep": "nanosleep clock_nanosleep alarm pause getitimer setitimer",
    "poll": """poll ppoll select pselect6 epoll_wait epoll_pwait epoll_pwait2
        epoll_wait_old epoll_create epoll_create1 epoll_ctl epoll_ctl_old""",
    "child_wait": """wait4 waitid""",
    "process": """clone clone3 fork vfork execve execveat exit exit_group
        kill tkill tgkill sigaltstack signalfd signalfd4 prctl arch_prctl
        getpid getppid gettid set_tid_address setpgid getpgid getpgrp
        setsid getsid unshare setns ptrace personality seccomp kcmp
        getpriority setpriority getrlimit setrlimit prlimit64 getrusage
        set_thread_area get_thread_area
        getuid geteuid getgid getegid setuid setgid setreuid setregid
        setresuid getresuid setresgid getresgid setfsuid setfsgid
        getgroups setgroups""",
}

# Families, by name prefix, after EXACT.
PREFIX = [
    ("rt_sig", "process"),
    ("rt_tgsig", "process"),
    ("sched_", "process"),
    ("pidfd_", "process"),
    ("io_uring_", "file_io"),
    ("timerfd_", "sleep"),
    ("timer_", "sleep"),
    ("mq_", "sync"),
    ("inotify_", "file_io"),
    ("fanotify_", "file_io"),
    ("epoll_", "poll"),
]
SUFFIX = [("xattr", "file_io")]

# Numbers newer than the build machine's header (Debian 12 ships 6.1's), by
# the header's architecture. uretprobe (6.11) and uprobe (6.17) are what
# return probes and nop5-optimized uprobes trap through on x86_64: in a
# traced program they are contactmap's own uprobes (the CUPTI agent's hook).
NEWER = {
    "x86_64": {335: "uretprobe", 336: "uprobe"},
}

GROUPS = ("memory", "sync", "file_io", "network", "sleep", "poll", "child_wait", "process",
          "other")


def group_of(name, exact):
    if name in exact:
        return exact[name]
    for p, g in PREFIX:
        if name.startswith(p):
            return g
    for s, g in SUFFIX:
        if name.endswith(s):
            return g
    return "other"


def main(argv):
    hdr = argv[1] if len(argv) > 1 else DEFAULT_HDR
    exact = {}
    for g, names in EXACT.items():
        assert g in GROUPS, g
        for n in names.split():
            if n in exact:
                sys.exit(f"gen-syscall-tsv: {n} listed in {exact[n]} and {g}")
            exact[n] = g
    calls = {}
    try:
        with open(hdr) as f:
            for line in f:
                m = re.match(r"#define\s+__NR_(\w+)\s+(\d+)\s*$", line)
                if m:
                    calls[int(m.group(2))] = m.group(1)
    except OSError as e:
        sys.exit(f"gen-syscall-tsv: {e}")
    if not calls:
        sys.exit(f"gen-syscall-tsv: no __NR_ definitions in {hdr}")
    arch = "x86_64" if "x86_64" in hdr or "_64.h" in hdr else ""
    for nr, name in NEWER.get(arch, {}).items():
        if nr not in calls and name not in calls.values():
            calls[nr] = name
    out = [f"# nr\tname\tgroup -- generated by scripts/gen-syscall-tsv.py from {hdr}"]
    out += [f"{nr}\t{calls[nr]}\t{group_of(calls[nr], exact)}" for nr in sorted(calls)]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv)
