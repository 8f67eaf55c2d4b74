// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * perf_event_open for the procfs tier (perfsample.h). The kernel refuses a
 * ring buffer on an inherited event that follows a task on every CPU at once
 * (cpu = -1), as every child would write to it: so, as perf record does, one
 * event per followed task per CPU, every one of a CPU's events writing to
 * that CPU's one ring (PERF_EVENT_IOC_SET_OUTPUT).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "cm.h"
#include "contactmap.h"
#include "perfsample.h"
#include "stacks.h"

/* events open at most: attach mode follows every thread present at the
 * start on every CPU, so a large process on a large host stops here */
#define MAX_EVENTS 4096
#define MIN_RING_PAGES 2
#define MAX_SAMPLE_RING_KIB 512
#define MAX_DUMMY_RING_KIB 64

/* x86_64 perf register numbers (asm/perf_regs.h): AX BX CX DX SI DI BP SP IP
 * FLAGS CS SS are 0-11, R8-R15 16-23; DS ES FS GS (12-15) are refused on
 * 64-bit. Samples carry them in bit order. */
#define REGS_MASK 0xff0fffULL
#define NREGS 20

struct ring {
	int fd;			/* the event that owns it */
	void *base;
	size_t size;		/* data pages, a power of two */
};

struct cm_perf {
	unsigned hz;
	struct cm_stacks *stacks;
	struct cm_perf_ops ops;
	void *ctx;
	int ncpu;
	struct ring *rings;	/* per CPU; fd -1 where the CPU is offline */
	int *fds;
	size_t nfds, capfds;
	size_t ring_pages;
	long page;
	unsigned char *scratch;	/* a record that wraps the ring's end */
	struct cm_stack_event *ev;
	struct cm_perf_counts c;
};

static int perf_open(struct perf_event_attr *a, pid_t pid, int cpu)
{
	return (int)syscall(SYS_perf_event_open, a, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

static void attr_init(const struct cm_perf *p, struct perf_event_attr *a, bool enable_on_exec)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	a->type = PERF_TYPE_SOFTWARE;
	if (p->hz) {
		a->config = PERF_COUNT_SW_CPU_CLOCK;
		a->freq = 1;
		a->sample_freq = p->hz;
		a->sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER |
				 PERF_SAMPLE_STACK_USER;
		a->sample_regs_user = REGS_MASK;
		a->sample_stack_user = CM_STACK_SNAP;
	} else {
		a->config = PERF_COUNT_SW_DUMMY;
		a->sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME;
	}
	/* user mode only: what perf_event_paranoid 2 allows; a sample that
	 * interrupts the kernel is dropped by the kernel */
	a->exclude_kernel = 1;
	a->exclude_hv = 1;
	a->inherit = 1;
	a->task = 1;
	a->comm = 1;
	a->comm_exec = 1;
	a->sample_id_all = 1;
	a->use_clockid = 1;
	a->clockid = CLOCK_MONOTONIC;
	a->watermark = 1;
	a->wakeup_watermark = 1;	/* nobody waits on the fd: the loop drains every tick */
	a->disabled = enable_on_exec;
	a->enable_on_exec = enable_on_exec;
}

/* Ring size per CPU within what an unprivileged user may lock: the
 * perf_event_mlock_kb allowance and RLIMIT_MEMLOCK beyond it. */
static size_t ring_pages(const struct cm_perf *p)
{
	unsigned long long kib = 516;
	struct rlimit rl;
	char buf[32];
	FILE *fp = fopen("/proc/sys/kernel/perf_event_mlock_kb", "re");
	size_t pages, want;

	if (fp && fgets(buf, sizeof(buf), fp))
		kib = strtoull(buf, NULL, 10);
	if (fp)
		fclose(fp);
	if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY)
		kib += rl.rlim_cur / 1024;
	else if (!getrlimit(RLIMIT_MEMLOCK, &rl))
		kib += 1 << 20;
	/* three quarters of it, shared by the CPUs; each ring also takes a header page */
	want = (size_t)(kib * 3 / 4 / (unsigned)p->ncpu) * 1024 / (size_t)p->page;
	want = want > 1 ? want - 1 : 1;
	pages = MIN_RING_PAGES;
	while (pages * 2 <= want &&
	       pages * 2 * (size_t)p->page <= (size_t)(p->hz ? MAX_SAMPLE_RING_KIB : MAX_DUMMY_RING_KIB) * 1024)
		pages *= 2;
	return pages;
}

struct cm_perf *cm_perf_new(unsigned hz, struct cm_stacks *stacks, const struct cm_perf_ops *ops,
			    void *ctx, char *err, size_t errsz)
{
	struct cm_perf *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
#if !defined(__x86_64__)
	if (hz) {
		snprintf(err, errsz, "user-stack samples are unwound for x86_64 only");
		free(p);
		return NULL;
	}
#endif
	p->hz = hz;
	p->stacks = stacks;
	p->ops = *ops;
	p->ctx = ctx;
	p->page = sysconf(_SC_PAGESIZE);
	p->ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
	if (p->ncpu <= 0)
		p->ncpu = 1;
	p->rings = calloc((size_t)p->ncpu, sizeof(*p->rings));
	p->scratch = malloc(1 << 16);
	p->ev = hz ? calloc(1, sizeof(*p->ev)) : NULL;
	if (!p->rings || !p->scratch || (hz && !p->ev)) {
		snprintf(err, errsz, "out of memory");
		cm_perf_free(p);
		return NULL;
	}
	for (int i = 0; i < p->ncpu; i++)
		p->rings[i].fd = -1;
	p->ring_pages = ring_pages(p);
	p->c.ring_kib = (unsigned)(p->ring_pages * (size_t)p->page / 1024);
	p->c.hz = hz;
	return p;
}

static int keep_fd(struct cm_perf *p, int fd)
{
	if (p->nfds == p->capfds) {
		size_t nc = p->capfds ? p->capfds * 2 : 64;
		int *n = realloc(p->fds, nc * sizeof(*n));

		if (!n)
			return -1;
		p->fds = n;
		p->capfds = nc;
	}
	p->fds[p->nfds++] = fd;
	return 0;
}

/* The CPU's ring, mapped from fd: halves the size until the kernel agrees
 * (another perf user of the same account may hold part of the allowance). */
static int map_ring(struct cm_perf *p, struct ring *r, int fd)
{
	for (size_t pages = p->ring_pages; pages >= MIN_RING_PAGES; pages /= 2) {
		void *m = mmap(NULL, (pages + 1) * (size_t)p->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

		if (m != MAP_FAILED) {
			r->fd = fd;
			r->base = m;
			r->size = pages * (size_t)p->page;
			if (pages < p->ring_pages) {
				p->ring_pages = pages;
				p->c.ring_kib = (unsigned)(r->size / 1024);
			}
			return 0;
		}
		if (errno != EPERM && errno != ENOMEM)
			break;
	}
	return -errno;
}

int cm_perf_follow(struct cm_perf *p, pid_t tid, bool enable_on_exec)
{
	struct perf_event_attr a;
	int opened = 0, err = 0;

	if (p->nfds + (size_t)p->ncpu > MAX_EVENTS) {
		p->c.not_followed++;
		return -EMFILE;
	}
	attr_init(p, &a, enable_on_exec);
	for (int cpu = 0; cpu < p->ncpu; cpu++) {
		struct ring *r = &p->rings[cpu];
		int fd = perf_open(&a, tid, cpu);

		if (fd < 0) {
			if (errno == ENODEV || errno == EINVAL)
				continue;	/* possible CPU, offline */
			err = -errno;
			break;
		}
		if (keep_fd(p, fd)) {
			close(fd);
			err = -ENOMEM;
			break;
		}
		if (r->fd < 0)
			err = map_ring(p, r, fd);
		else if (ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, r->fd))
			err = -errno;
		if (err)
			break;
		opened++;
	}
	p->c.events = p->nfds;
	if (!err && !opened)
		err = -ENODEV;
	if (!err)
		p->c.tasks++;
	return err;
}

/* ---- records -------------------------------------------------------------------- */

struct sample_id {
	uint32_t pid, tid;
	uint64_t time;
};

static void on_sample(struct cm_perf *p, const unsigned char *d, size_t len)
{
	struct cm_stack_event *e = p->ev;
	const unsigned char *end = d + len;
	uint64_t regs[NREGS], abi, size, dyn = 0;
	uint32_t pid, tid;

	if (!e || len < 24)
		return;
	memcpy(&pid, d, 4);
	memcpy(&tid, d + 4, 4);
	d += 16;	/* pid, tid, time */
	memcpy(&abi, d, 8);
	d += 8;
	if (abi == PERF_SAMPLE_REGS_ABI_NONE)
		return;	/* a kernel thread, or no user context */
	if (d + sizeof(regs) + 8 > end)
		return;
	memcpy(regs, d, sizeof(regs));
	d += sizeof(regs);
	memcpy(&size, d, 8);
	d += 8;
	if (size > CM_STACK_SNAP || d + size + (size ? 8 : 0) > end)
		return;
	if (size)
		memcpy(&dyn, d + size, 8);
	if (dyn > size)
		dyn = size;
	p->c.samples++;
	memset(e, 0, offsetof(struct cm_stack_event, stack));
	e->type = CM_EV_ONCPU;
	e->pid = pid;
	e->tid = tid;
	e->kstack_id = -ENOENT;	/* user mode only: no kernel part */
	e->ustack_id = -ENOENT;	/* no frame-pointer walk from the kernel */
	e->weight = 1;
	if (p->ops.comm)
		p->ops.comm(p->ctx, pid, tid, e->comm, sizeof(e->comm));
	/* perf's order (AX BX CX DX SI DI BP SP IP FLAGS CS SS R8..R15) to pt_regs' */
	e->regs.ax = regs[0];
	e->regs.bx = regs[1];
	e->regs.cx = regs[2];
	e->regs.dx = regs[3];
	e->regs.si = regs[4];
	e->regs.di = regs[5];
	e->regs.bp = regs[6];
	e->regs.sp = regs[7];
	e->regs.ip = regs[8];
	e->regs.flags = regs[9];
	e->regs.cs = regs[10];
	e->regs.ss = regs[11];
	e->regs.r8 = regs[12];
	e->regs.r9 = regs[13];
	e->regs.r10 = regs[14];
	e->regs.r11 = regs[15];
	e->regs.r12 = regs[16];
	e->regs.r13 = regs[17];
	e->regs.r14 = regs[18];
	e->regs.r15 = regs[19];
	e->regs.orig_ax = (uint64_t)-1;
	memcpy(e->stack, d, dyn);
	e->snap_len = (uint32_t)dyn;
	cm_stacks_event(p->stacks, e, sizeof(*e));
}

static void on_record(struct cm_perf *p, const struct perf_event_header *h)
{
	const unsigned char *d = (const unsigned char *)(h + 1);
	size_t len = h->size - sizeof(*h);
	uint32_t v[4];
	uint64_t t, lost;

	switch (h->type) {
	case PERF_RECORD_SAMPLE:
		on_sample(p, d, len);
		break;
	case PERF_RECORD_FORK:
	case PERF_RECORD_EXIT:
		if (len < 24)
			break;
		memcpy(v, d, 16);	/* pid, ppid, tid, ptid */
		memcpy(&t, d + 16, 8);
		if (h->type == PERF_RECORD_FORK) {
			p->c.forks++;
			if (p->ops.fork)
				p->ops.fork(p->ctx, v[0], v[1], v[2], v[3], t);
		} else {
			p->c.exits++;
			if (p->ops.exit)
				p->ops.exit(p->ctx, v[0], v[2], t);
		}
		break;
	case PERF_RECORD_COMM:
		/* an exec: the process's code changed, its maps are read again */
		if (len >= 8 && (h->misc & PERF_RECORD_MISC_COMM_EXEC) && p->stacks) {
			struct cm_stack_event m = { .type = CM_EV_MAPS };

			memcpy(&m.pid, d, 4);
			cm_stacks_event(p->stacks, &m, 16);
		}
		break;
	case PERF_RECORD_LOST:
		if (len >= 16) {
			memcpy(&lost, d + 8, 8);
			p->c.lost += lost;
		}
		break;
	case PERF_RECORD_THROTTLE:
		p->c.throttled++;
		break;
	default:
		break;
	}
}

static void drain_ring(struct cm_perf *p, struct ring *r)
{
	struct perf_event_mmap_page *m = r->base;
	unsigned char *data = (unsigned char *)r->base + p->page;
	uint64_t head = __atomic_load_n(&m->data_head, __ATOMIC_ACQUIRE), tail = m->data_tail;

	while (tail + sizeof(struct perf_event_header) <= head) {
		size_t off = (size_t)(tail & (r->size - 1));
		struct perf_event_header h;

		if (off + sizeof(h) <= r->size) {
			memcpy(&h, data + off, sizeof(h));
		} else {
			size_t first = r->size - off;

			memcpy(&h, data + off, first);
			memcpy((unsigned char *)&h + first, data, sizeof(h) - first);
		}
		if (h.size < sizeof(h) || tail + h.size > head)
			break;
		if (off + h.size <= r->size) {
			on_record(p, (const struct perf_event_header *)(data + off));
		} else {
			size_t first = r->size - off;

			memcpy(p->scratch, data + off, first);
			memcpy(p->scratch + first, data, h.size - first);
			on_record(p, (const struct perf_event_header *)p->scratch);
		}
		tail += h.size;
	}
	__atomic_store_n(&m->data_tail, tail, __ATOMIC_RELEASE);
}

void cm_perf_drain(struct cm_perf *p)
{
	for (int i = 0; p && i < p->ncpu; i++)
		if (p->rings[i].base)
			drain_ring(p, &p->rings[i]);
}

void cm_perf_get_counts(const struct cm_perf *p, struct cm_perf_counts *c)
{
	if (p)
		*c = p->c;
	else
		memset(c, 0, sizeof(*c));
}

void cm_perf_free(struct cm_perf *p)
{
	if (!p)
		return;
	for (int i = 0; p->rings && i < p->ncpu; i++)
		if (p->rings[i].base)
			munmap(p->rings[i].base, p->rings[i].size + (size_t)p->page);
	for (size_t i = 0; i < p->nfds; i++)
		close(p->fds[i]);
	free(p->fds);
	free(p->rings);
	free(p->scratch);
	free(p->ev);
	free(p);
}
