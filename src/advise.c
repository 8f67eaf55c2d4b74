// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * contactmap advise REPORT.json: from a contact map to the experiments that
 * test it. Each OS cost of the report (a contact-map row, or an off-CPU cause)
 * is weighed by its share of the wall time, which is the most any change to
 * it could remove; the rules below say which hypotheses that cost, with the
 * evidence the report holds, suggests, and which `contactmap experiment`
 * knobs test them. No model, no weights: the table is the whole of it.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cm.h"

/* Evidence a rule needs besides its cost's share (facts() reads it). */
enum ev {
	EV_ANY,
	EV_MINOR_FAULTS,	/* >= 1000 minor faults */
	EV_SMALL_PAGES,		/* minor faults, and THP is not "always" */
	EV_MAJOR_FAULTS,	/* >= 10 major faults */
	EV_OVERSUBSCRIBED,	/* more threads runnable on average than CPUs */
	EV_UNDERSUBSCRIBED,	/* fewer: the run queue is other work's doing */
	EV_MIGRATIONS,		/* >= 100 migrations per second */
	EV_THREADS,		/* a process with more threads than CPUs */
	EV_WAITING_THREAD,	/* a thread with a name of its own waits the most */
	EV_SMALL_CALLS,		/* >= 10000 file syscalls, each under 20 us on average */
	EV_BLOCK_DEVICE,	/* block requests on a device */
};

/* The rules. cost: a contact-map subsystem, or "cause:NAME" for an off-CPU
 * cause of the ledger; min_share: its share of the wall time from which the
 * rule speaks; knobs: what to try (with {CPUS} the CPU count, {HALF} half of
 * it, {LAST} the last CPU, {COMM} the most-waiting thread, {DEV} the busiest
 * block device), or NULL when no OS knob tests it and the advice is a change
 * to the program. */
static const struct rule {
	const char *cost;
	double min_share;
	enum ev when;
	const char *hypothesis;
	const char *knobs;
} rules[] = {
	{ "memory", 0.02, EV_MINOR_FAULTS,
	  "allocator churn: freed memory goes back to the kernel and is faulted in again",
	  "--knob malloc:notrim --knob prefault" },
	{ "memory", 0.02, EV_SMALL_PAGES,
	  "4 KiB pages: a fault for every 4 KiB touched", "--knob thp=always" },
	{ "memory", 0.01, EV_MAJOR_FAULTS,
	  "major faults: pages read back from disk or swap", "--knob sysctl:vm.swappiness=10" },
	{ "runq", 0.05, EV_OVERSUBSCRIBED,
	  "oversubscription: more runnable threads than CPUs",
	  "--knob env:OMP_NUM_THREADS={HALF} --knob env:OMP_NUM_THREADS=1" },
	{ "runq", 0.05, EV_WAITING_THREAD,
	  "a feeder thread delayed behind the others", "--knob sched=fifo:10@{COMM}" },
	{ "runq", 0.05, EV_UNDERSUBSCRIBED,
	  "other work on the machine takes the CPUs (autogroup shares them between sessions)",
	  "--knob sysctl:kernel.sched_autogroup_enabled=0" },
	{ "runq", 0.02, EV_MIGRATIONS,
	  "threads migrate between CPUs and lose their caches", "--knob cpus=0-{LAST}" },
	{ "sync", 0.10, EV_THREADS,
	  "thread pools larger than the CPUs wait on each other",
	  "--knob env:OMP_NUM_THREADS=1 --knob env:OMP_NUM_THREADS={HALF}" },
	{ "cause:gil", 0.05, EV_ANY,
	  "Python threads wait for the GIL", NULL },
	{ "file_io", 0.05, EV_SMALL_CALLS,
	  "syscall-heavy I/O: many small reads and writes (batch them: fewer, larger calls)", NULL },
	{ "block_io", 0.05, EV_BLOCK_DEVICE,
	  "waiting for the disk: the I/O scheduler orders and merges the requests",
	  "--knob iosched={DEV}:none --knob iosched={DEV}:mq-deadline" },
	{ "process", 0.05, EV_ANY,
	  "process creation: fork and exec on the critical path (reuse a pool of workers)", NULL },
};
#define NRULES (sizeof(rules) / sizeof(*rules))

struct facts {
	double wall, window, oncpu, runq;
	long cpus, threads, max_threads;
	double minor, major, migrations, file_calls, file_ns;
	const char *thp;
	char comm[64];		/* the thread with the most run-queue time, if no other thread of its
				 * process has its name (sched=...@COMM would set them all) */
	double comm_runq;
	char dev[64];		/* the block device with the most request time */
	json_object *causes;	/* totals.offcpu_by_cause */
};

#define obj(o, k) cm_json_get_type((o), (k), json_type_object)
#define arr(o, k) cm_json_get_type((o), (k), json_type_array)

static double num(json_object *o, const char *k)
{
	json_object *v = cm_json_get(o, k);

	return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
	       ? json_object_get_double(v) : 0;
}

/* "254:0" -> "vda" on this machine (the scheduler belongs to the whole disk). */
static void dev_name(const char *majmin, char *out, size_t sz)
{
	char path[128], link[PATH_MAX], *base;
	ssize_t n;

	snprintf(out, sz, "DEV");
	snprintf(path, sizeof(path), "/sys/dev/block/%s", majmin);
	if (strpbrk(majmin, "/.") || (n = readlink(path, link, sizeof(link) - 1)) <= 0)
		return;
	link[n] = '\0';
	snprintf(path, sizeof(path), "/sys/dev/block/%s/partition", majmin);
	if (!access(path, F_OK) && (base = strrchr(link, '/')))
		*base = '\0';
	base = strrchr(link, '/');
	snprintf(out, sz, "%.63s", base ? base + 1 : link);
}

static void facts(json_object *r, struct facts *f)
{
	json_object *procs = arr(r, "processes"), *tot = obj(r, "totals");
	double dev_ns = 0;

	*f = (struct facts){ .cpus = (long)num(obj(r, "host"), "cpus"), .thp = cm_json_str(obj(r, "host"), "thp") };
	if (f->cpus < 1)
		f->cpus = 1;
	f->wall = num(tot, "wall_ns");
	f->oncpu = num(tot, "oncpu_ns");
	f->runq = num(tot, "runq_ns");
	f->window = num(obj(r, "window"), "duration_ns");
	f->causes = obj(tot, "offcpu_by_cause");
	for (size_t i = 0; procs && i < json_object_array_length(procs); i++) {
		json_object *p = json_object_array_get_idx(procs, i), *th = arr(p, "threads"), *a;
		long nt = th ? (long)json_object_array_length(th) : 0;

		f->threads += nt;
		if (nt > f->max_threads)
			f->max_threads = nt;
		f->minor += num(obj(p, "faults"), "minor");
		f->major += num(obj(p, "faults"), "major");
		f->migrations += num(obj(p, "sched"), "migrations");
		for (long t = 0; nt > 1 && t < nt; t++) {
			json_object *x = json_object_array_get_idx(th, t);
			double q = num(obj(x, "ledger"), "runq_ns");
			const char *c = cm_json_str(x, "comm");
			int same = 0;

			for (long u = 0; c && u < nt; u++) {
				const char *o = cm_json_str(json_object_array_get_idx(th, u), "comm");

				same += o && !strcmp(o, c);
			}
			if (q > f->comm_runq && c && same == 1) {
				f->comm_runq = q;
				snprintf(f->comm, sizeof(f->comm), "%.15s", c);
			}
		}
		for (size_t k = 0; (a = arr(p, "syscalls")) && k < json_object_array_length(a); k++) {
			json_object *s = json_object_array_get_idx(a, k);
			int nr = cm_syscall_nr(cm_json_str(s, "name") ? cm_json_str(s, "name") : "");

			if (nr >= 0 && cm_syscall_group((unsigned)nr) == CM_SS_FILE_IO) {
				f->file_calls += num(s, "count");
				f->file_ns += num(s, "total_ns");
			}
		}
		for (size_t k = 0; (a = arr(p, "block_io")) && k < json_object_array_length(a); k++) {
			json_object *b = json_object_array_get_idx(a, k);

			if (num(b, "total_ns") > dev_ns && cm_json_str(b, "device")) {
				dev_ns = num(b, "total_ns");
				dev_name(cm_json_str(b, "device"), f->dev, sizeof(f->dev));
			}
		}
	}
}

/* Whether the rule's evidence holds; its words in buf. */
static bool holds(enum ev ev, const struct facts *f, char *buf, size_t sz)
{
	double secs = f->window > 0 ? f->window / 1e9 : 1;

	buf[0] = '\0';
	switch (ev) {
	case EV_ANY:
		return true;
	case EV_MINOR_FAULTS:
		snprintf(buf, sz, "%.0f minor faults (%.0f per second)", f->minor, f->minor / secs);
		return f->minor >= 1000;
	case EV_SMALL_PAGES:
		snprintf(buf, sz, "%.0f minor faults with THP '%s'", f->minor, f->thp ? f->thp : "unknown");
		return f->minor >= 1000 && f->thp && strcmp(f->thp, "always");
	case EV_MAJOR_FAULTS:
		snprintf(buf, sz, "%.0f major faults", f->major);
		return f->major >= 10;
	case EV_OVERSUBSCRIBED:
	case EV_UNDERSUBSCRIBED:
		snprintf(buf, sz, "%.2f threads runnable on average on %ld CPUs", (f->oncpu + f->runq) / (secs * 1e9),
			 f->cpus);
		return (f->oncpu + f->runq > f->cpus * secs * 1e9) == (ev == EV_OVERSUBSCRIBED);
	case EV_MIGRATIONS:
		snprintf(buf, sz, "%.0f migrations (%.0f per second)", f->migrations, f->migrations / secs);
		return f->migrations / secs >= 100 && f->cpus > 1;
	case EV_THREADS:
		snprintf(buf, sz, "a process with %ld threads on %ld CPUs", f->max_threads, f->cpus);
		return f->max_threads > f->cpus;
	case EV_WAITING_THREAD: {
		char q[32];

		snprintf(buf, sz, "thread '%s' waits longest on the run queue (%s)", f->comm,
			 cm_fmt_ns((uint64_t)f->comm_runq, q, sizeof(q)));
		return f->comm[0] && !strpbrk(f->comm, " '\"\\$`");
	}
	case EV_SMALL_CALLS:
		snprintf(buf, sz, "%.0f file syscalls, %.1f us each on average", f->file_calls,
			 f->file_calls ? f->file_ns / f->file_calls / 1e3 : 0);
		return f->file_calls >= 10000 && f->file_ns / f->file_calls < 20000;
	case EV_BLOCK_DEVICE:
		snprintf(buf, sz, "block requests on %s", f->dev);
		return f->dev[0] != '\0';
	}
	return false;
}

/* The rule's knobs with the report's facts put in. */
static char *fill(const char *tmpl, const struct facts *f)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);

	for (const char *p = tmpl; m && *p; p++) {
		if (*p != '{') {
			fputc(*p, m);
			continue;
		}
		if (!strncmp(p, "{CPUS}", 6))
			fprintf(m, "%ld", f->cpus);
		else if (!strncmp(p, "{HALF}", 6))
			fprintf(m, "%ld", f->cpus > 1 ? f->cpus / 2 : 1);
		else if (!strncmp(p, "{LAST}", 6))
			fprintf(m, "%ld", f->cpus - 1);
		else if (!strncmp(p, "{COMM}", 6))
			fputs(f->comm, m);
		else if (!strncmp(p, "{DEV}", 5))
			fputs(f->dev, m);
		else {
			fputc(*p, m);
			continue;
		}
		p = strchr(p, '}');
	}
	if (m)
		fclose(m);
	return out;
}

/* The share of a cost: its contact-map row, or its off-CPU cause in the totals. */
static double cost_share(json_object *r, const struct facts *f, const char *cost, const char **label)
{
	json_object *cm = arr(r, "contact_map");

	*label = cost;
	if (!strncmp(cost, "cause:", 6)) {
		*label = cost + 6;
		return f->wall > 0 ? num(f->causes, cost + 6) / f->wall : 0;
	}
	for (size_t i = 0; cm && i < json_object_array_length(cm); i++) {
		json_object *x = json_object_array_get_idx(cm, i);
		const char *ss = cm_json_str(x, "subsystem");

		if (ss && !strcmp(ss, cost)) {
			int k = cm_subsys_from_key(ss);

			*label = k >= 0 ? cm_subsys_label(k) : ss;
			return num(x, "share");
		}
	}
	return 0;
}

/* The report's command, for the suggested experiment; words with odd
 * characters are quoted so the line can be pasted into a shell. */
static char *command_line(json_object *r)
{
	json_object *a = arr(obj(r, "target"), "command");
	char *out = NULL;
	size_t len = 0;
	FILE *m;

	size_t first = 0, n = a ? json_object_array_length(a) : 0;

	/* a run of an experiment: COMMAND is what `experiment --apply ... --` ran */
	if (n > 3 && !strcmp(json_object_get_string(json_object_array_get_idx(a, 1)), "experiment") &&
	    !strcmp(json_object_get_string(json_object_array_get_idx(a, 2)), "--apply")) {
		for (first = 3; first < n; first++)
			if (!strcmp(json_object_get_string(json_object_array_get_idx(a, first)), "--"))
				break;
		first++;
	}
	if (first >= n)
		return strdup("COMMAND");
	m = open_memstream(&out, &len);
	for (size_t i = first; m && i < n; i++) {
		const char *w = json_object_get_string(json_object_array_get_idx(a, i));
		bool plain = *w && strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789_-./=:,+@%") == strlen(w);

		fputs(i > first ? " " : "", m);
		if (plain) {
			fputs(w, m);
			continue;
		}
		fputc('\'', m);
		for (; *w; w++)
			*w == '\'' ? fputs("'\\''", m) : fputc(*w, m);
		fputc('\'', m);
	}
	if (m)
		fclose(m);
	return out;
}

static const char advise_usage[] =
"Usage: contactmap advise [-o FILE] REPORT.json\n"
"\n"
"Names the report's largest OS costs and, for each, the hypotheses its\n"
"evidence supports and the `contactmap experiment` that tests them, with the\n"
"share of the wall time the change could at most remove (the cost's own\n"
"share). The rules are a table in src/advise.c.\n"
"\n"
"Options:\n"
"  -o, --json FILE   also write the advice as JSON (contactmap-advice/1; '-' = stdout)\n"
"  -h, --help        this help\n";

int cm_advise_main(int argc, char **argv)
{
	const char *path = NULL, *json_path = NULL;
	json_object *r, *j, *list;
	struct facts f;
	char *cmd;
	int shown = 0, rc = 0;
	bool done[NRULES] = { false };
	FILE *out;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(advise_usage, stdout);
			return 0;
		} else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--json")) {
			if (++i >= argc) {
				cm_err("option '%s' needs a file (see contactmap advise --help)", argv[i - 1]);
				return 2;
			}
			json_path = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cm_err("unknown option '%s' for advise (see contactmap advise --help)", argv[i]);
			return 2;
		} else if (path) {
			cm_err("advise takes one report, got '%s' too", argv[i]);
			return 2;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		cm_err("advise needs a report: contactmap advise REPORT.json");
		return 2;
	}
	if (!(r = cm_read_json(path)))
		return 1;
	if (!arr(r, "contact_map")) {
		cm_err("%s has no contact_map: not a contactmap report to advise on", path);
		json_object_put(r);
		return 1;
	}
	if (json_path && cm_check_writable(json_path)) {
		json_object_put(r);
		return 1;
	}
	out = json_path && !strcmp(json_path, "-") ? stderr : stdout;
	facts(r, &f);
	cmd = command_line(r);
	j = json_object_new_object();
	list = json_object_new_array();
	fprintf(out, "contactmap advise: %s\n", path);
	fprintf(out, "the largest OS costs, and the experiments that test them (the share is the\n"
		     "most of the wall time a change to that cost could remove)\n");
	/* costs largest first; each cost once, with every rule of it that holds */
	for (;;) {
		double best = -1;
		const char *label = NULL;
		int first = -1;

		for (size_t i = 0; i < NRULES; i++) {
			const char *l = NULL;
			double s = done[i] ? -1 : cost_share(r, &f, rules[i].cost, &l);

			if (s > best) {
				best = s;
				first = (int)i;
				label = l;
			}
		}
		if (first < 0)
			break;
		bool header = false;

		for (size_t i = 0; i < NRULES; i++) {
			char ev[160], *knobs;
			json_object *a;

			if (done[i] || strcmp(rules[i].cost, rules[first].cost))
				continue;
			done[i] = true;
			if (best < rules[i].min_share || !holds(rules[i].when, &f, ev, sizeof(ev)))
				continue;
			if (!header) {
				fprintf(out, "\n%s: %.1f%% of the wall time (at most %.1f%% to gain)\n", label,
					100 * best, 100 * best);
				header = true;
			}
			knobs = rules[i].knobs ? fill(rules[i].knobs, &f) : NULL;
			fprintf(out, "  - %s\n", rules[i].hypothesis);
			if (ev[0])
				fprintf(out, "    evidence: %s\n", ev);
			if (knobs) {
				fprintf(out, "    test: contactmap experiment %s -- ", knobs);
				cm_put_text(out, cmd, 4000);
				fputc('\n', out);
			} else {
				fprintf(out, "    test: no OS knob tests it: a change to the program does\n");
			}
			a = json_object_new_object();
			json_object_object_add(a, "cost", json_object_new_string(rules[i].cost));
			json_object_object_add(a, "share", json_object_new_double(best));
			json_object_object_add(a, "at_most", json_object_new_double(best));
			json_object_object_add(a, "hypothesis", json_object_new_string(rules[i].hypothesis));
			json_object_object_add(a, "evidence", json_object_new_string(ev));
			json_object_object_add(a, "knobs", knobs ? json_object_new_string(knobs) : NULL);
			json_object_array_add(list, a);
			free(knobs);
			shown++;
		}
	}
	if (!shown)
		fprintf(out, "\nno OS cost of this report reaches the shares the rules speak from: the\n"
			     "time is the program's own (CPU in user mode, its sleeps and waits)\n");
	json_object_object_add(j, "schema", json_object_new_string("contactmap-advice/1"));
	json_object_object_add(j, "report", json_object_new_string(path));
	json_object_object_add(j, "command", json_object_new_string(cmd ? cmd : ""));
	json_object_object_add(j, "advice", list);
	if (fflush(out) == EOF || (json_path && cm_write_json(j, json_path)))
		rc = 1;
	json_object_put(j);
	json_object_put(r);
	free(cmd);
	return rc;
}
