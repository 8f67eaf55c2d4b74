// SPDX-License-Identifier: GPL-2.0
/*
 * Syscalls: the boundary between user and kernel on-CPU time, and per-thread,
 * per-syscall counts, errors and latency (on-CPU, blocked, io-wait parts).
 */
#include "common.bpf.h"

#define NR_MMAP 9
#define NR_MPROTECT 10
#define PROT_EXEC_ 4
/*
 * ioctl on a GPU driver file (/dev/nvidia*: character devices whose majors
 * user space finds in /proc/devices) is the CUDA driver talking to the GPU:
 * such calls are kept apart as CM_SYS_GPU_IOCTL, which the contact map puts
 * under "gpu". No majors, no check: the branch is pruned at load.
 */
const volatile __u32 gpu_dev_majors[CM_GPU_DEV_MAJORS] = {};
const volatile __u32 gpu_dev_nmajors = 0;
const volatile __u32 ioctl_nr = 16;	/* x86_64; set from the syscall table */
/*
 * uretprobe (6.11) and uprobe (6.17): the syscalls the kernel's trampolines
 * for uprobes make, contactmap's own among them. Observer work: no row in the
 * target's syscalls; counted, with its time, in the observer cost.
 */
const volatile __u32 probe_nr[2] = { 0xffffffff, 0xffffffff };

static __always_inline bool gpu_dev_fd(struct pt_regs *regs)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned int fd = (unsigned int)PT_REGS_PARM1_CORE_SYSCALL(regs);
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;
	__u32 major;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_core_read(&f, sizeof(f), &fds[fd]) || !f)
		return false;
	major = BPF_CORE_READ(f, f_inode, i_rdev) >> 20;	/* the kernel's MKDEV */
	for (int i = 0; i < CM_GPU_DEV_MAJORS; i++)
		if (i < gpu_dev_nmajors && major == gpu_dev_majors[i])
			return true;
	return false;
}

static __always_inline int on_sys_enter(struct pt_regs *regs, long id)
{
	struct cm_thread *t = thread_of((__u32)bpf_get_current_pid_tgid());
	__u64 now;

	if (!t)
		return 0;
	now = bpf_ktime_get_ns();
	account_oncpu(t, now, cur_stime());
	if (id == probe_nr[0] || id == probe_nr[1]) {
		t->probe_ts = now;
		return 0;
	}
	t->sc_nr1 = (__u32)id + 1;
	{
		__u32 key = (__u32)id;
		__u32 *grp = bpf_map_lookup_elem(&sys_groups, &key);

		t->sc_grp = grp ? *grp : CM_SS_OTHER;
	}
	if (gpu_dev_nmajors && id == ioctl_nr && gpu_dev_fd(regs)) {
		t->sc_nr1 = CM_SYS_GPU_IOCTL + 1;
		t->sc_grp = CM_SS_GPU;
	}
	t->sc_partial = 0;
	t->sc_enter_ts = now;
	t->sc_oncpu = 0;
	t->sc_offcpu = 0;
	t->sc_iowait = 0;
	t->sc_exec_map = 0;
	if ((cfg_oncpu_stacks || cfg_offcpu_stacks) && (id == NR_MMAP || id == NR_MPROTECT))
		t->sc_exec_map = (BPF_CORE_READ(regs, dx) & PROT_EXEC_) != 0;
	return 0;
}

static __always_inline int on_sys_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct cm_thread *t = thread_of(tid);
	__u64 now;
	__u32 nr;

	if (!t)
		return 0;
	now = bpf_ktime_get_ns();
	account_oncpu(t, now, cur_stime());
	if (!t->sc_nr1) {
		if (t->probe_ts) {
			__sync_fetch_and_add(&counters.probe_syscalls, 1);
			__sync_fetch_and_add(&counters.probe_syscall_ns, now - t->probe_ts);
			t->probe_ts = 0;
		}
		return 0;	/* or entered before we attached and not seeded */
	}
	nr = t->sc_nr1 - 1;
	t->sc_nr1 = 0;
	if (!close_syscall(t, nr, now, ret < 0 && ret >= -4095))
		return 0;
	if (cfg_offcpu_stacks && t->sc_offcpu && !t->sc_partial) {
		if (t->sc_offcpu >= cfg_min_block_ns) {
			emit_offcpu(t, CM_CAUSE_SYSCALL, nr, t->sc_offcpu, true);
		} else {
			__sync_fetch_and_add(&counters.offcpu_skipped, 1);
			__sync_fetch_and_add(&counters.offcpu_skipped_ns, t->sc_offcpu);
		}
	}
	if (t->sc_exec_map && ret >= 0)
		emit_maps(t);
	if (cfg_trace && !t->sc_partial && now - t->sc_enter_ts >= cfg_trace_sys_min_ns)
		emit_slice(t->pid, tid, &t->trace_seq, CM_SL_SYSCALL, 0, nr, t->sc_enter_ts, now, 0);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id) { return on_sys_enter(regs, id); }
SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs *regs, long id) { return on_sys_enter(regs, id); }
SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret) { return on_sys_exit(ret); }
SEC("raw_tp/sys_exit")
int BPF_PROG(sys_exit_raw, struct pt_regs *regs, long ret) { return on_sys_exit(ret); }

char LICENSE[] SEC("license") = "GPL";
