// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The observer cost: what contactmap's own BPF programs cost, from the
 * kernel's run-time statistics (bpf_enable_stats). While any process holds
 * them on, every BPF program on the machine reads the clock twice per run
 * (~100 ns more per syscall on the test VM, traced process or not), so by
 * default they are on for only part of the window: 50 ms at the start of
 * every second of it, the first included (5%). The report scales what the
 * kernel counted by window / time on, which assumes the load while they were
 * on is typical.
 * BPF_ENABLE_STATS needs CAP_SYS_ADMIN; without it the report says "not measured".
 */
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "tracer.h"
#include "observer.h"
#include "contactmap.skel.h"

#define FIRST_NS	50000000ULL	/* on from the window's start (= DUTY_NS) */
#define PERIOD_NS	1000000000ULL
#define DUTY_NS		50000000ULL	/* then on at the start of every later period */

struct cm_observer {
	enum cm_observer_mode mode;
	struct bpf_object *obj;
	pthread_mutex_t lock;		/* everything below, and the programs' counters
					 * against a toggle while a snapshot reads them */
	pthread_cond_t cond;		/* CLOCK_MONOTONIC: the clock of cm_now_ns() */
	pthread_t thread;
	bool thread_started;
	bool stop;
	bool failed;			/* bpf_enable_stats failed: said once, not retried */
	bool enabled;			/* they were on at least once */
	bool others;
	int fd;				/* >= 0 while our statistics are on */
	uint64_t window_ns;		/* the window's start; 0 until it opens */
	uint64_t on_since;		/* when fd was opened */
	uint64_t on_ns;			/* on-time of the periods already closed */
	uint64_t cnt_at_off;		/* our programs' run_cnt when we last turned them off */
};

const char *cm_observer_mode_name(enum cm_observer_mode m)
{
	switch (m) {
	case CM_OBS_SAMPLED:
		return "sampled";
	case CM_OBS_FULL:
		return "full";
	case CM_OBS_OFF:
		return "off";
	}
	return "?";
}

/* Only the sysctl's own setting: a process holding a bpf_enable_stats fd
 * does not show here (on 6.18 it reads 0 while one is held). */
static bool sysctl_stats_on(void)
{
	FILE *fp = fopen("/proc/sys/kernel/bpf_stats_enabled", "re");
	int v = 0;

	if (fp) {
		if (fscanf(fp, "%d", &v) != 1)
			v = 0;
		fclose(fp);
	}
	return v != 0;
}

static uint64_t run_cnt_sum(struct bpf_object *obj)
{
	struct bpf_program *p;
	uint64_t n = 0;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		uint32_t len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, &info, &len))
			n += info.run_cnt;
	}
	return n;
}

/* Called with ob->lock held. */
static void stats_on(struct cm_observer *ob)
{
	int err;

	if (ob->fd >= 0 || ob->failed)
		return;
	if (!ob->enabled && sysctl_stats_on())
		ob->others = true;
	/* run_cnt grows only while someone has the statistics on: if it grew
	 * while ours were off (or before we first turned them on), someone did */
	if (run_cnt_sum(ob->obj) > ob->cnt_at_off)
		ob->others = true;
	ob->fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (ob->fd < 0) {
		err = errno;
		ob->fd = -1;
		ob->failed = true;
		if (!ob->enabled)
			cm_info("BPF run-time statistics unavailable (%s): no observer cost",
				strerror(err));
		else
			cm_info("BPF run-time statistics could not be turned on again (%s): "
				"observer cost from the periods before", strerror(err));
		return;
	}
	ob->on_since = cm_now_ns();
	ob->enabled = true;
}

/* Called with ob->lock held; on-time counts up to limit at most (the window's
 * end: after it the programs are detached and count nothing). */
static void stats_off(struct cm_observer *ob, uint64_t limit)
{
	uint64_t now;

	if (ob->fd < 0)
		return;
	close(ob->fd);
	ob->fd = -1;
	now = cm_now_ns();
	if (now > limit)
		now = limit;
	if (now > ob->on_since)
		ob->on_ns += now - ob->on_since;
	ob->cnt_at_off = run_cnt_sum(ob->obj);
}

/* d: time since the window opened. */
static bool want_on(uint64_t d)
{
	return d < FIRST_NS || d % PERIOD_NS < DUTY_NS;
}

static uint64_t next_edge(uint64_t d)
{
	uint64_t r = d % PERIOD_NS;

	if (d < FIRST_NS)
		return FIRST_NS;
	return d - r + (r < DUTY_NS ? DUTY_NS : PERIOD_NS);
}

static void *sampler(void *arg)
{
	struct cm_observer *ob = arg;

	pthread_mutex_lock(&ob->lock);
	while (!ob->stop) {
		uint64_t now = cm_now_ns(), d, edge;
		struct timespec ts;

		if (!ob->window_ns || ob->failed) {
			pthread_cond_wait(&ob->cond, &ob->lock);
			continue;
		}
		d = now > ob->window_ns ? now - ob->window_ns : 0;
		if (want_on(d))
			stats_on(ob);
		else
			stats_off(ob, UINT64_MAX);
		edge = ob->window_ns + next_edge(d);
		ts.tv_sec = edge / 1000000000ULL;
		ts.tv_nsec = edge % 1000000000ULL;
		/* a signal from cm_observer_stop ends the wait at once */
		pthread_cond_timedwait(&ob->cond, &ob->lock, &ts);
	}
	pthread_mutex_unlock(&ob->lock);
	return NULL;
}

static int start_sampler(struct cm_observer *ob)
{
	sigset_t all, old;
	int err;

	/* the thread takes no signals: main blocks SIGINT/SIGTERM later for its
	 * signalfd, and one delivered here would kill the process instead */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&ob->thread, NULL, sampler, ob);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	ob->thread_started = true;
	return 0;
}

int cm_observer_start(struct cm_tracer *tr, enum cm_observer_mode mode)
{
	struct cm_observer *ob = calloc(1, sizeof(*ob));
	pthread_condattr_t ca;
	int err;

	if (!ob) {
		cm_err("out of memory");
		return -1;
	}
	ob->mode = mode;
	ob->obj = tr->skel->obj;
	ob->fd = -1;
	pthread_mutex_init(&ob->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ob->cond, &ca);
	pthread_condattr_destroy(&ca);
	tr->obs = ob;
	if (mode == CM_OBS_FULL) {
		pthread_mutex_lock(&ob->lock);
		stats_on(ob);
		pthread_mutex_unlock(&ob->lock);
	} else if (mode == CM_OBS_SAMPLED) {
		err = start_sampler(ob);
		if (err) {
			cm_err("cannot start the observer-cost thread: %s (try --observer-cost full or off)",
			       strerror(-err));
			return -1;
		}
	}
	return 0;
}

void cm_observer_window(struct cm_tracer *tr)
{
	struct cm_observer *ob = tr->obs;

	if (!ob || ob->mode != CM_OBS_SAMPLED)
		return;
	pthread_mutex_lock(&ob->lock);
	ob->window_ns = tr->start_ns;
	/* here rather than in the thread, so they are on from the first event */
	stats_on(ob);
	pthread_cond_signal(&ob->cond);
	pthread_mutex_unlock(&ob->lock);
}

void cm_observer_stop(struct cm_tracer *tr)
{
	struct cm_observer *ob = tr->obs;

	if (!ob)
		return;
	pthread_mutex_lock(&ob->lock);
	ob->stop = true;
	pthread_cond_signal(&ob->cond);
	pthread_mutex_unlock(&ob->lock);
	if (ob->thread_started) {
		pthread_join(ob->thread, NULL);
		ob->thread_started = false;
	}
	pthread_mutex_lock(&ob->lock);
	stats_off(ob, tr->end_ns ? tr->end_ns : cm_now_ns());
	pthread_mutex_unlock(&ob->lock);
}

/* The programs' counters (run counts and times: what the kernel counted while
 * the statistics were on; recursion misses: always counted). */
static void read_prog_info(struct bpf_object *obj, struct cm_snapshot *s)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		uint32_t len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			continue;
		s->recursion_misses += info.recursion_misses;
		if (s->nprogs < sizeof(s->progs) / sizeof(s->progs[0])) {
			struct cm_prog_cost *c = &s->progs[s->nprogs++];

			snprintf(c->name, sizeof(c->name), "%s", bpf_program__name(p));
			c->run_cnt = info.run_cnt;
			c->run_time_ns = info.run_time_ns;
		}
	}
}

void cm_observer_read(const struct cm_tracer *tr, struct cm_snapshot *s)
{
	struct cm_observer *ob = tr->obs;

	if (!ob) {
		read_prog_info(tr->skel->obj, s);
		s->obs_mode = CM_OBS_OFF;
		return;
	}
	/* held across the read: no toggle between the on-time and the counts */
	pthread_mutex_lock(&ob->lock);
	read_prog_info(tr->skel->obj, s);
	s->obs_mode = ob->mode;
	s->stats_on = ob->enabled;
	s->others_had_stats = ob->others;
	if (ob->mode == CM_OBS_FULL) {
		s->sampled_ns = ob->enabled && tr->end_ns > tr->start_ns
			? tr->end_ns - tr->start_ns : 0;
	} else {
		s->sampled_ns = ob->on_ns;
		if (ob->fd >= 0 && tr->end_ns > ob->on_since)
			s->sampled_ns += tr->end_ns - ob->on_since;
	}
	pthread_mutex_unlock(&ob->lock);
}

void cm_observer_free(struct cm_tracer *tr)
{
	struct cm_observer *ob = tr->obs;

	if (!ob)
		return;
	cm_observer_stop(tr);
	pthread_cond_destroy(&ob->cond);
	pthread_mutex_destroy(&ob->lock);
	free(ob);
	tr->obs = NULL;
}

json_object *cm_observer_self_json(void)
{
	json_object *j = json_object_new_object();
	struct rusage ru;

	/* contactmap's own process: its threads, not the traced programs (a
	 * wrapped command is reaped after the report is built) */
	if (getrusage(RUSAGE_SELF, &ru))
		return j;
	json_object_object_add(j, "cpu_user_ns", json_object_new_int64(
		(int64_t)ru.ru_utime.tv_sec * 1000000000LL + ru.ru_utime.tv_usec * 1000LL));
	json_object_object_add(j, "cpu_sys_ns", json_object_new_int64(
		(int64_t)ru.ru_stime.tv_sec * 1000000000LL + ru.ru_stime.tv_usec * 1000LL));
	json_object_object_add(j, "max_rss_bytes", json_object_new_int64((int64_t)ru.ru_maxrss * 1024));
	return j;
}
