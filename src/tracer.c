// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Loading, attaching and reading back the BPF side; seeding threads that
 * existed before tracing began.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "tracer.h"
#include "contactmap_gpu.h"
#include "contactmap.skel.h"

/* Why libbpf could not read the kernel BTF: it reports any failure there as
 * ESRCH ("no kernel BTF"), ENOMEM under a low ulimit -v included, and says
 * the real error only in a debug line. */
static int vmlinux_btf_err;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (strstr(fmt, "loading kernel BTF '%s': %d")) {
		va_list c;

		va_copy(c, ap);
		(void)va_arg(c, const char *);
		int e = va_arg(c, int);
		va_end(c);
		if (e < 0)
			vmlinux_btf_err = e;
	}
	if (level == LIBBPF_DEBUG && cm_verbose < 2)
		return 0;
	if (level == LIBBPF_INFO && cm_verbose < 2)
		return 0;
	if (level == LIBBPF_WARN && cm_verbose < 1)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* A trivial fentry program on a stable kernel function: loads only where the
 * kernel lets tracing programs attach to functions (not on this VM: EPERM). */
static bool probe_fentry(const struct btf *vmlinux)
{
	struct bpf_insn insns[] = {
		{ .code = 0xb7, .dst_reg = 0, .imm = 0 },	/* r0 = 0 */
		{ .code = 0x95 },				/* exit */
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY);
	int id, fd;

	if (!vmlinux)
		return false;
	id = btf__find_by_name_kind(vmlinux, "vfs_read", BTF_KIND_FUNC);
	if (id < 0)
		return false;
	opts.attach_btf_id = id;
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "cm_fentry_probe", "GPL", insns, 2, &opts);
	if (fd < 0)
		return false;
	/* loading is not enough: attaching needs the trampoline */
	int link = bpf_link_create(fd, 0, BPF_TRACE_FENTRY, NULL);
	bool ok = link >= 0;

	if (link >= 0)
		close(link);
	close(fd);
	return ok;
}

static bool probe_perf(uint32_t type, uint64_t config)
{
	struct perf_event_attr attr = {
		.size = sizeof(attr), .type = type, .config = config,
		.sample_period = 1000000, .disabled = 1,
	};
	int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/*
 * Whether vmlinux BTF names a type: a scan of its string table, read raw in
 * small chunks. Parsing the BTF (as libbpf will again for CO-RE) or reading it
 * into one big buffer costs tens of ms of page faults on a VM; this, ~5 ms.
 */
#define BTF_NAMES 8
struct btf_names {
	const char *name[BTF_NAMES];
	bool found[BTF_NAMES];
	int n;
};

static bool btf_scan(struct btf_names *q)
{
	struct { uint16_t magic; uint8_t version, flags; uint32_t hdr_len, type_off, type_len,
		 str_off, str_len; } hdr;
	enum { CHUNK = 64 << 10, OVERLAP = 128 };
	static char buf[OVERLAP + CHUNK];
	char keys[BTF_NAMES][OVERLAP];
	size_t klen[BTF_NAMES], keep = 0;
	off_t off, end;
	int fd = open("/sys/kernel/btf/vmlinux", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (pread(fd, &hdr, sizeof(hdr), 0) != sizeof(hdr) || hdr.magic != 0xeB9F) {
		close(fd);
		return false;
	}
	/* whole names only: NUL on both sides */
	for (int i = 0; i < q->n; i++)
		klen[i] = (size_t)snprintf(keys[i], OVERLAP - 1, "%c%s", 0, q->name[i]) + 1;
	off = hdr.hdr_len + hdr.str_off;
	end = off + hdr.str_len;
	while (off < end) {
		ssize_t r = pread(fd, buf + keep, CHUNK < end - off ? CHUNK : end - off, off);
		size_t have;

		if (r <= 0)
			break;
		have = keep + (size_t)r;
		for (int i = 0; i < q->n; i++)
			if (!q->found[i] && memmem(buf, have, keys[i], klen[i]))
				q->found[i] = true;
		off += r;
		/* a name may straddle two chunks: carry the tail over */
		keep = have < OVERLAP ? have : OVERLAP;
		memmove(buf, buf + have - keep, keep);
	}
	close(fd);
	return true;
}

void cm_probe_features(struct cm_features *f, bool full)
{
	struct btf_names q = { .name = { "btf_trace_page_fault_user", "btf_trace_block_rq_issue",
					 "btf_trace_block_rq_complete", "btf_trace_block_rq_insert",
					 "btf_trace_block_io_start", "bpf_uprobe_multi_link",
					 "btf_trace_block_io_done", "btf_trace_block_rq_merge" }, .n = 8 };
	/* 6.1: hash maps allocate as they go in tracing programs */
	struct btf_names q2 = { .name = { "bpf_mem_alloc" }, .n = 1 };
	struct btf *vmlinux;

	f->btf = btf_scan(&q) && btf_scan(&q2);
	f->mem_alloc = q2.found[0];
	if (full) {
		/* contactmap check: the fentry probe needs a function's BTF id */
		vmlinux = btf__load_vmlinux_btf();
		if (libbpf_get_error(vmlinux))
			vmlinux = NULL;
		f->fentry = probe_fentry(vmlinux);
		btf__free(vmlinux);
	}
	f->kprobes = access("/sys/bus/event_source/devices/kprobe/type", R_OK) == 0;
	f->ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) == 1;
	f->task_storage = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, NULL) == 1;
	f->perf_cpu_clock = probe_perf(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK);
	f->hw_counters = probe_perf(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES);
	f->page_fault_tp = q.found[0];
	f->block_tp = q.found[1] && q.found[2] && q.found[3];
	f->block_io_start_tp = q.found[4] && q.found[6];	/* one commit, 6.5 */
	f->block_rq_merge_tp = q.found[7];
	f->uprobe_multi = q.found[5];
}

/* Chooses one twin of every program: suffix "_btf" or "_raw"; the GPU
 * uprobe programs (no twins) when gpu is set. */
static void select_programs(struct contactmap_bpf *skel, const char *suffix,
			    const struct cm_features *f, bool gpu)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, skel->obj) {
		const char *name = bpf_program__name(p);
		bool on = has_suffix(name, suffix) || (gpu && !strncmp(name, "gpu_", 4));

		if (!f->page_fault_tp && !strncmp(name, "page_fault_user", 15))
			on = false;
		if (!f->block_tp && !strncmp(name, "block_rq", 8))
			on = false;
		/* block_io_start claims where it exists; insert/issue elsewhere */
		if ((!f->block_tp || !f->block_io_start_tp) && !strncmp(name, "block_io_", 9))
			on = false;
		if (f->block_io_start_tp && (!strncmp(name, "block_rq_insert", 15) ||
					     !strncmp(name, "block_rq_issue", 14)))
			on = false;
		if (!f->block_rq_merge_tp && !strncmp(name, "block_rq_merge", 14))
			on = false;
		if (!strcmp(name, "cpu_sample"))
			on = skel->rodata->cfg_oncpu_stacks;
		/* the critical path: who woke whom, interrupts, request markers */
		if (!strncmp(name, "req_", 4))
			on = skel->rodata->cfg_critpath;
		/* sched_waking stamps the wake-up and its waker; sched_wakeup alone
		 * without the critical path (sched_wakeup_new either way) */
		if (skel->rodata->cfg_critpath && !strncmp(name, "sched_wakeup_", 13) &&
		    strncmp(name, "sched_wakeup_new", 16))
			on = false;
		if (!skel->rodata->cfg_critpath &&
		    (!strncmp(name, "sched_waking", 12) || !strncmp(name, "irq_handler", 11) ||
		     !strncmp(name, "softirq_", 8) || !strncmp(name, "hrtimer_expire", 14)))
			on = false;
		if (!strncmp(name, "cgroup_", 7) && !skel->rodata->cfg_cgroup_id)
			on = false;
		bpf_program__set_autoload(p, on);
		/*
		 * Closing a perf-event uprobe waits for an RCU grace period (some
		 * 80 ms here): a hundred of them take seconds. uprobe_multi links
		 * (one per library and direction) wait once each.
		 */
		if (on && gpu && f->uprobe_multi && !strncmp(name, "gpu_", 4))
			bpf_program__set_expected_attach_type(p, CM_BPF_TRACE_UPROBE_MULTI);
	}
}

/*
 * Character-device majors of GPU driver files: the "nvidia*" entries of
 * /proc/devices, and CONTACTMAP_GPU_DEV_MAJORS (comma-separated numbers, for
 * drivers with other names, and for the tests, which have no GPU).
 */
static unsigned gpu_dev_majors(uint32_t *out, unsigned max)
{
	char line[128], *env = getenv("CONTACTMAP_GPU_DEV_MAJORS");
	bool chr = false;
	unsigned n = 0;
	FILE *fp = fopen("/proc/devices", "re");

	while (fp && fgets(line, sizeof(line), fp)) {
		unsigned major;
		char name[64];

		if (!strncmp(line, "Character devices:", 18))
			chr = true;
		else if (!strncmp(line, "Block devices:", 14))
			chr = false;
		else if (chr && sscanf(line, "%u %63s", &major, name) == 2 &&
			 !strncmp(name, "nvidia", 6) && n < max)
			out[n++] = major;
	}
	if (fp)
		fclose(fp);
	for (char *p = env; p && *p && n < max;) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);

		if (end == p)
			break;
		out[n++] = (uint32_t)v;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

static int map_traced_tids(struct cm_tracer *tr)
{
	size_t len = (size_t)bpf_map__max_entries(tr->skel->maps.traced_tids) * sizeof(uint64_t);

	tr->tid_bits_len = (len + 4095) & ~(size_t)4095;
	tr->tid_bits = mmap(NULL, tr->tid_bits_len, PROT_READ | PROT_WRITE, MAP_SHARED,
			    bpf_map__fd(tr->skel->maps.traced_tids), 0);
	if (tr->tid_bits == MAP_FAILED) {
		tr->tid_bits = NULL;
		cm_err("cannot map the traced-thread bitmap: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Each syscall's subsystem, for the on-CPU split by subsystem in BPF. */
static int fill_sys_groups(struct cm_tracer *tr)
{
	int fd = bpf_map__fd(tr->skel->maps.sys_groups);

	for (uint32_t nr = 0; nr < cm_nsyscalls && nr < 512; nr++) {
		uint32_t g = cm_syscall_group(nr);

		if (bpf_map_update_elem(fd, &nr, &g, BPF_ANY)) {
			cm_err("cannot fill the syscall groups map: %s", strerror(errno));
			return -1;
		}
	}
	for (uint32_t nr = cm_nsyscalls; nr < 512; nr++) {
		uint32_t g = CM_SS_OTHER;

		bpf_map_update_elem(fd, &nr, &g, BPF_ANY);
	}
	return 0;
}

static struct contactmap_bpf *open_sized(const struct cm_tracer_opts *o, const struct cm_features *f)
{
	struct contactmap_bpf *skel = contactmap_bpf__open();
	int ioctl_nr = cm_syscall_nr("ioctl");

	if (!skel)
		return NULL;	/* errno says why; the caller prints it once */
	bpf_map__set_max_entries(skel->maps.threads, o->max_threads);
	bpf_map__set_max_entries(skel->maps.sysstats, o->max_syscall_rows);
	if (!f->mem_alloc) {
		/* before 6.1 tracing programs need preallocated hash maps: the
		 * whole table is allocated at load, so it gets a tighter bound */
		bpf_map__set_map_flags(skel->maps.threads, 0);
		bpf_map__set_map_flags(skel->maps.sysstats, 0);
		bpf_map__set_map_flags(skel->maps.blkstats, 0);
		bpf_map__set_max_entries(skel->maps.blkstats, 1024);
		bpf_map__set_max_entries(skel->maps.threads, o->max_threads < 8192 ? o->max_threads : 8192);
		bpf_map__set_max_entries(skel->maps.sysstats,
					 o->max_syscall_rows < 65536 ? o->max_syscall_rows : 65536);
	}
	/* the tests' way to make the exit ring overflow (a power-of-two size
	 * in bytes, at least a page): records then wait in the map */
	if (getenv("CONTACTMAP_TEST_LIFE_RING"))
		bpf_map__set_max_entries(skel->maps.life_events,
					 (uint32_t)strtoul(getenv("CONTACTMAP_TEST_LIFE_RING"), NULL, 0));
	skel->rodata->cfg_oncpu_stacks = o->sample_hz > 0;
	skel->rodata->cfg_offcpu_stacks = o->offcpu_stacks;
	skel->rodata->cfg_min_block_ns = o->min_block_ns;
	skel->rodata->cfg_cgroup_id = o->cgroup_id;
	skel->rodata->cfg_trace = o->trace_path != NULL;
	skel->rodata->cfg_critpath = o->critpath;
	if (o->critpath)
		bpf_map__set_max_entries(skel->maps.cp_events, 8 << 20);
	skel->rodata->cfg_trace_sys_min_ns = o->trace_sys_min_ns;
	skel->rodata->cfg_trace_max_per_sec = o->trace_max_per_sec;
	if (o->trace_path)
		bpf_map__set_max_entries(skel->maps.trace_events, 8 << 20);
	if (o->sample_hz || o->offcpu_stacks) {
		/* a record carries a 16 KiB stack snapshot: room for ~1000 */
		bpf_map__set_max_entries(skel->maps.stack_events, 16 << 20);
		bpf_map__set_max_entries(skel->maps.stacks, 16384);
	} else if (o->python) {
		bpf_map__set_max_entries(skel->maps.stack_events, 256 << 10);	/* maps events only */
	}
	skel->rodata->cfg_python = o->python;
	if (cm_syscall_nr("futex") >= 0)
		skel->rodata->cfg_futex_nr = (uint32_t)cm_syscall_nr("futex");
	skel->rodata->probe_nr[0] = (uint32_t)cm_syscall_nr("uretprobe");
	skel->rodata->probe_nr[1] = (uint32_t)cm_syscall_nr("uprobe");
	if (o->gpu_mode != CM_GPU_OFF && ioctl_nr >= 0) {
		skel->rodata->ioctl_nr = (uint32_t)ioctl_nr;
		skel->rodata->gpu_dev_nmajors = gpu_dev_majors((uint32_t *)skel->rodata->gpu_dev_majors,
							       CM_GPU_DEV_MAJORS);
	}
	return skel;
}

int cm_tracer_add_ring(struct cm_tracer *tr, struct bpf_map *map, ring_buffer_sample_fn fn, void *ctx)
{
	int fd = bpf_map__fd(map);

	if (tr->rb)
		return ring_buffer__add(tr->rb, fd, fn, ctx) ? -1 : 0;
	tr->rb = ring_buffer__new(fd, fn, ctx, NULL);
	return tr->rb ? 0 : -1;
}

int cm_tracer_event_fd(struct cm_tracer *tr)
{
	return tr->rb ? ring_buffer__epoll_fd(tr->rb) : -1;
}

int cm_tracer_poll_ms(const struct cm_tracer *tr)
{
	return tr->rb ? CM_RB_POLL_MS : -1;
}

void cm_tracer_consume(struct cm_tracer *tr)
{
	if (tr->rb)
		ring_buffer__consume(tr->rb);
}

/*
 * Opens, sizes and loads one twin set. The GPU programs come along unless
 * turned off; should they fail to load, the core loads without them (the
 * report then says GPU tracing was unavailable) rather than not at all.
 */
static int load_programs(struct cm_tracer *tr, const struct cm_tracer_opts *o, const char *suffix)
{
	struct cm_features *f = &tr->feat;
	int err = -EINVAL;

	for (int gpu = o->gpu_mode != CM_GPU_OFF; gpu >= 0; gpu--) {
		tr->skel = open_sized(o, f);
		if (!tr->skel)
			return -errno;
		select_programs(tr->skel, suffix, f, gpu);
		err = contactmap_bpf__load(tr->skel);
		if (!err) {
			f->gpu = gpu;
			return 0;
		}
		if (gpu) {
			snprintf(f->gpu_error, sizeof(f->gpu_error), "%s", strerror(-err));
			cm_info("GPU programs did not load with the %s set (%s); trying without them",
				suffix + 1, strerror(-err));
		}
		contactmap_bpf__destroy(tr->skel);
		tr->skel = NULL;
	}
	return err;
}

int cm_tracer_start(struct cm_tracer *tr, const struct cm_tracer_opts *o)
{
	struct cm_features *f = &tr->feat;
	const char *force = o->force_attach;
	int err = -1;

	libbpf_set_print(libbpf_print);
	cm_probe_features(f, false);
	if (o->block_claim_insert)
		f->block_io_start_tp = false;	/* as a kernel before 6.5 */
	if (!f->btf) {
		cm_err("kernel BTF not found at /sys/kernel/btf/vmlinux: contactmap needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");
		return -1;
	}

	if (!force || !strcmp(force, "tp_btf")) {
		err = load_programs(tr, o, "_btf");
		if (!err) {
			f->tp_btf = true;
			f->attach_type = "tp_btf";
		} else {
			snprintf(f->tp_btf_error, sizeof(f->tp_btf_error), "%s", strerror(-err));
			cm_info("tp_btf programs did not load (%s); trying raw tracepoints", strerror(-err));
		}
	}
	if (err && (!force || !strcmp(force, "raw_tp"))) {
		err = load_programs(tr, o, "_raw");
		if (!err) {
			f->raw_tp = true;
			f->attach_type = "raw_tp";
		}
	}
	if (err == -ESRCH && vmlinux_btf_err)
		err = vmlinux_btf_err;
	if (err) {
		if (err == -ENOMEM)
			cm_err("cannot load BPF programs: %s (is an address-space limit such as "
			       "ulimit -v set too low?)", strerror(-err));
		else if (err == -EPERM || err == -EACCES)
			cm_err("cannot load BPF programs: %s: contactmap needs root or CAP_BPF+CAP_PERFMON", strerror(-err));
		else
			cm_err("cannot load BPF programs: %s (run with -vv for the verifier log)", strerror(-err));
		contactmap_bpf__destroy(tr->skel);
		tr->skel = NULL;
		return -1;
	}
	/* from here on a failure undoes everything */
	if (map_traced_tids(tr) || fill_sys_groups(tr))
		goto fail;
	err = contactmap_bpf__attach(tr->skel);
	if (err) {
		cm_err("cannot attach BPF programs: %s (is tracefs or debugfs usable? try -vv)", strerror(-err));
		goto fail;
	}
	tr->start_ns = cm_now_ns();
	return 0;
fail:
	cm_tracer_close(tr);
	return -1;
}

int64_t cm_tracer_live_threads(struct cm_tracer *tr)
{
	return __atomic_load_n(&tr->skel->bss->live_threads, __ATOMIC_RELAXED);
}

/* Fields of /proc/PID/task/TID/stat after the comm: state is field 3. */
int cm_task_stat(pid_t pid, pid_t tid, char *state, int *ppid,
			  uint64_t *minflt, uint64_t *majflt, char *comm, size_t commsz)
{
	char path[96], buf[1024];
	unsigned long long mn = 0, mj = 0;
	char *open_paren, *close_paren;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* comm may contain spaces and parentheses: it ends at the last ')' */
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren || close_paren < open_paren)
		return -1;
	if (comm)
		cm_sanitize_comm(open_paren + 1, close_paren - open_paren - 1, comm, commsz);
	if (sscanf(close_paren + 2, "%c %d %*d %*d %*d %*d %*u %llu %*u %llu",
		   state, ppid, &mn, &mj) != 4)
		return -1;
	*minflt = mn;
	*majflt = mj;
	return 0;
}

/* The syscall a blocked task sits in, from /proc/.../syscall: nr, or -1. */
static long read_task_syscall(pid_t pid, pid_t tid)
{
	char path[96], buf[64];
	long nr = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	fp = fopen(path, "re");
	if (!fp)
		return -1;
	if (fgets(buf, sizeof(buf), fp) && buf[0] >= '0' && buf[0] <= '9')
		nr = strtol(buf, NULL, 10);
	fclose(fp);
	return nr;
}

/* A number unique over the run, from the counter the BPF side takes from. */
static uint32_t next_gen(struct cm_tracer *tr)
{
	return __atomic_add_fetch(&tr->skel->bss->next_gen, 1, __ATOMIC_RELAXED);
}

static int seed_thread(struct cm_tracer *tr, pid_t pid, pid_t tid, bool held, uint32_t *pgen)
{
	int fd = bpf_map__fd(tr->skel->maps.threads);
	struct cm_thread t;
	uint64_t minflt, majflt;
	uint32_t key = tid;
	char state;
	int ppid;
	long nr;

	if (bpf_map_lookup_elem(fd, &key, &t) == 0) {
		if (!*pgen)
			*pgen = t.pgen;	/* the process's number, for threads seeded after it */
		return 0;	/* already traced (seeded or forked) */
	}
	if (cm_task_stat(pid, tid, &state, &ppid, &minflt, &majflt, t.comm, sizeof(t.comm)))
		return -1;
	if (state == 'Z' || state == 'X')
		return 0;
	{
		char comm[CM_COMM_LEN];

		memcpy(comm, t.comm, sizeof(comm));
		memset(&t, 0, sizeof(t));
		memcpy(t.comm, comm, sizeof(comm));
	}
	t.out_kstack = t.out_ustack = -1;
	t.tid = tid;
	t.pid = pid;
	t.ppid = ppid;
	t.gen = next_gen(tr);
	if (!*pgen)
		*pgen = t.gen;
	t.pgen = *pgen;
	t.flags = CM_TF_SEEDED | (held ? CM_TF_HELD : 0);
	t.last_cpu = (uint32_t)-1;
	t.min_flt_base = minflt;
	t.maj_flt_base = majflt;
	t.start_ns = cm_now_ns();
	t.state_ts = t.start_ns;
	t.state = CM_UNKNOWN;
	if (state != 'R') {
		/* blocked now: in a syscall (its time is kept, the call not counted) or not */
		nr = held ? -1 : read_task_syscall(pid, tid);
		t.state = CM_BLOCKED;
		t.blk_cause = CM_CAUSE_OTHER;
		if (nr >= 0) {
			t.blk_cause = CM_CAUSE_SYSCALL;
			t.sc_nr1 = nr + 1;
			t.sc_partial = 1;
			t.sc_enter_ts = t.start_ns;
		}
	}
	if (bpf_map_update_elem(fd, &key, &t, BPF_NOEXIST)) {
		if (errno == EEXIST)
			return 0;
		__atomic_fetch_add(&tr->skel->bss->counters.threads_full, 1, __ATOMIC_RELAXED);
		return -1;
	}
	/* atomically: a fork in the same word may set its bit right now */
	if ((size_t)tid / 64 < tr->tid_bits_len / sizeof(uint64_t))
		__atomic_fetch_or(&tr->tid_bits[tid / 64], 1ULL << (tid % 64), __ATOMIC_RELAXED);
	__atomic_fetch_add(&tr->skel->bss->live_threads, 1, __ATOMIC_RELAXED);
	tr->seeded++;
	return 0;
}

int cm_tracer_seed_process(struct cm_tracer *tr, pid_t pid, bool held)
{
	char path[64];
	uint32_t pgen = 0;
	int found = 0;

	/* twice: a thread created while we scanned was missed by the fork hook */
	for (int pass = 0; pass < 2; pass++) {
		struct dirent *de;
		DIR *d;

		snprintf(path, sizeof(path), "/proc/%d/task", pid);
		d = opendir(path);
		if (!d)
			return found ? 0 : -1;
		while ((de = readdir(d))) {
			pid_t tid = atoi(de->d_name);

			if (tid > 0 && seed_thread(tr, pid, tid, held, &pgen) == 0)
				found++;
		}
		closedir(d);
	}
	return found ? 0 : -1;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
	void *np;

	if (n < *cap)
		return 0;
	*cap = *cap ? *cap * 2 : 256;
	np = realloc(*p, *cap * elem);
	if (!np)
		return -1;
	*p = np;
	return 0;
}

void cm_tracer_detach(struct cm_tracer *tr)
{
	contactmap_bpf__detach(tr->skel);
	tr->end_ns = cm_now_ns();
}

int cm_tracer_read(struct cm_tracer *tr, struct cm_snapshot *s)
{
	int fd;
	size_t cap;

	memset(s, 0, sizeof(*s));
	s->counters = tr->skel->bss->counters;
	s->py_procs_full = tr->skel->bss->py_procs_full;

	fd = bpf_map__fd(tr->skel->maps.threads);
	cap = 0;
	for (uint32_t key, *prev = NULL;; prev = &key) {
		uint32_t next;

		if (bpf_map_get_next_key(fd, prev, &next))
			break;
		key = next;
		if (grow((void **)&s->threads, &cap, s->nthreads, sizeof(*s->threads)))
			goto oom;
		if (!bpf_map_lookup_elem(fd, &key, &s->threads[s->nthreads]))
			s->nthreads++;
	}

	fd = bpf_map__fd(tr->skel->maps.sysstats);
	cap = 0;
	size_t kcap = 0;
	for (struct cm_sys_key key, *prev = NULL;; prev = &key) {
		struct cm_sys_key next;

		if (bpf_map_get_next_key(fd, prev, &next))
			break;
		key = next;
		if (grow((void **)&s->sys_stats, &cap, s->nsys, sizeof(*s->sys_stats)) ||
		    grow((void **)&s->sys_keys, &kcap, s->nsys, sizeof(*s->sys_keys)))
			goto oom;
		if (!bpf_map_lookup_elem(fd, &key, &s->sys_stats[s->nsys]))
			s->sys_keys[s->nsys++] = key;
	}

	fd = bpf_map__fd(tr->skel->maps.blkstats);
	cap = kcap = 0;
	for (struct cm_blk_key key, *prev = NULL;; prev = &key) {
		struct cm_blk_key next;

		if (bpf_map_get_next_key(fd, prev, &next))
			break;
		key = next;
		if (grow((void **)&s->blk_stats, &cap, s->nblk, sizeof(*s->blk_stats)) ||
		    grow((void **)&s->blk_keys, &kcap, s->nblk, sizeof(*s->blk_keys)))
			goto oom;
		if (!bpf_map_lookup_elem(fd, &key, &s->blk_stats[s->nblk]))
			s->blk_keys[s->nblk++] = key;
	}
	return 0;
oom:
	cm_err("out of memory reading the BPF maps");
	return -1;
}

void cm_snapshot_free(struct cm_snapshot *s)
{
	free(s->threads);
	free(s->sys_keys);
	free(s->sys_stats);
	free(s->blk_keys);
	free(s->blk_stats);
	memset(s, 0, sizeof(*s));
}

void cm_tracer_close(struct cm_tracer *tr)
{
	ring_buffer__free(tr->rb);
	tr->rb = NULL;
	if (tr->tid_bits)
		munmap(tr->tid_bits, tr->tid_bits_len);
	tr->tid_bits = NULL;
	contactmap_bpf__destroy(tr->skel);
	tr->skel = NULL;
}
