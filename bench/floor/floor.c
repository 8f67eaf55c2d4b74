// SPDX-License-Identifier: GPL-2.0
/*
 * floor: attaches the floor programs (tp_btf sys_enter, sys_exit,
 * sched_switch, each bumping a per-CPU counter) system-wide, prints
 * "floor: attached" once they are live, waits for SIGINT/SIGTERM (or
 * -d SECONDS), then prints the event counts as one JSON line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "floor.h"
#include "floor.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

int main(int argc, char **argv)
{
	static const char *names[FLOOR_NCOUNTERS] = { "sys_enter", "sys_exit", "sched_switch" };
	struct sigaction sa = { .sa_handler = on_signal };
	int ncpu = libbpf_num_possible_cpus();
	bool ktime = false, hash = false, tstore = false, stats = false;
	unsigned int kreads = 1;
	int err, opt, stats_fd = -1;
	struct bpf_program *prog;
	double duration = 0;
	struct floor_bpf *skel;
	__u64 *vals;

	while ((opt = getopt(argc, argv, "d:kK:HTsh")) != -1) {
		switch (opt) {
		case 'd':
			duration = atof(optarg);
			break;
		case 'k':
			ktime = true;
			break;
		case 'K':
			ktime = true;
			kreads = (unsigned int)atoi(optarg);
			break;
		case 'H':
			hash = true;
			break;
		case 'T':
			tstore = true;
			break;
		case 's':
			stats = true;
			break;
		default:
			fprintf(stderr, "usage: floor [-d SECONDS] [-k | -K N] [-H] [-T] [-s]\n"
				"  counts sys_enter, sys_exit and sched_switch system-wide until Ctrl-C\n"
				"  -k  also read bpf_ktime_get_ns() per event (-K N: N times, up to 32)\n"
				"  -H  also look the thread up in a (empty) hash map keyed by tid\n"
				"  -T  also look the task up in (empty) task-local storage\n"
				"  -s  turn on BPF run-time statistics and print ns per program run\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (ncpu <= 0) {
		fprintf(stderr, "floor: cannot count CPUs: %s\n", strerror(-ncpu));
		return 1;
	}
	libbpf_set_print(quiet);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	skel = floor_bpf__open();
	if (!skel) {
		fprintf(stderr, "floor: cannot open BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->with_ktime = ktime;
	skel->rodata->ktime_reads = kreads;
	skel->rodata->with_hash = hash;
	skel->rodata->with_task_storage = tstore;
	err = floor_bpf__load(skel);
	if (err) {
		fprintf(stderr, "floor: cannot load BPF programs: %s (needs root)\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "floor: cannot attach: %s\n", strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	if (stats) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0)
			fprintf(stderr, "floor: cannot enable BPF stats: %s\n", strerror(errno));
	}
	printf("floor: attached\n");
	fflush(stdout);

	if (duration > 0) {
		struct timespec ts = { (time_t)duration, (long)((duration - (time_t)duration) * 1e9) };

		while (!stop && nanosleep(&ts, &ts) && errno == EINTR)
			;
	} else {
		while (!stop)
			pause();
	}
	floor_bpf__detach(skel);

	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return 1;
	printf("{\"floor\":{");
	__u32 k;

	for (k = 0; k < FLOOR_NCOUNTERS; k++) {
		__u64 sum = 0;

		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.counts), &k, vals) == 0)
			for (int c = 0; c < ncpu; c++)
				sum += vals[c];
		printf("%s\"%s\":%llu", k ? "," : "", names[k], (unsigned long long)sum);
	}
	printf("}");
	if (stats_fd >= 0) {
		printf(",\"programs\":{");
		k = 0;
		bpf_object__for_each_program(prog, skel->obj) {
			struct bpf_prog_info info = {};
			__u32 len = sizeof(info);

			if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
				continue;
			printf("%s\"%s\":{\"run_cnt\":%llu,\"run_time_ns\":%llu}", k++ ? "," : "",
			       bpf_program__name(prog), (unsigned long long)info.run_cnt,
			       (unsigned long long)info.run_time_ns);
		}
		printf("}");
		close(stats_fd);
	}
	printf("}\n");
	free(vals);
	floor_bpf__destroy(skel);
	return 0;
}
