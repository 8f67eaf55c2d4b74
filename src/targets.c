// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* What -p may attach to (session.h). */
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include "cm.h"
#include "session.h"

/* A kernel thread has no user space to trace, and a zombie nothing left:
 * both refused here, in one line, rather than traced into nonsense. */
int cm_check_attach_target(pid_t pid)
{
	char path[64], line[256], name[64] = "?", state = 0;
	int kthread = -1, threads = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (!(fp = fopen(path, "re")))
		return 0;	/* it went: seeding says so */
	/* each pattern matches its own line only */
	while (fgets(line, sizeof(line), fp)) {
		sscanf(line, "Name: %63[^\n]", name);
		sscanf(line, "State: %c", &state);
		sscanf(line, "Kthread: %d", &kthread);
		sscanf(line, "Threads: %d", &threads);
	}
	fclose(fp);
	if (kthread < 0) {
		/* a kernel without the Kthread: line: PF_KTHREAD in stat's flags */
		unsigned long flags = 0;
		char *p;

		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if ((fp = fopen(path, "re"))) {
			if (fgets(line, sizeof(line), fp) && (p = strrchr(line, ')')) &&
			    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) == 1)
				kthread = (flags & 0x00200000) != 0;
			fclose(fp);
		}
	}
	char clean[4 * 64 + 1];
	cm_sanitize_comm(name, strlen(name), clean, sizeof(clean));
	if (kthread > 0) {
		cm_err("process %d (%s) is a kernel thread: it has no user space for contactmap to trace; "
		       "give the pid of a user process", pid, clean);
		return -1;
	}
	/* a leader that exited before its threads shows Z too, with threads left */
	if ((state == 'Z' || state == 'X') && threads <= 1) {
		cm_err("process %d (%s) has exited (a zombie its parent has not reaped yet): "
		       "there is nothing left to trace", pid, clean);
		return -1;
	}
	return 0;
}
