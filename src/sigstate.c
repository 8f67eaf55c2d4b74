// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The signal state contactmap was started with, restored in a wrapped
 * command before exec (sigstate.h). */
#include <signal.h>
#include <stdbool.h>
#include "sigstate.h"

static sigset_t saved_mask;
static bool saved_ignored[_NSIG];
static bool saved;

void cm_sig_save(void)
{
	sigprocmask(SIG_SETMASK, NULL, &saved_mask);
	for (int sig = 1; sig < _NSIG; sig++) {
		struct sigaction sa;

		if (sigaction(sig, NULL, &sa) == 0)
			saved_ignored[sig] = sa.sa_handler == SIG_IGN;
	}
	saved = true;
}

void cm_sig_restore(void)
{
	if (!saved)
		return;
	for (int sig = 1; sig < _NSIG; sig++) {
		struct sigaction sa = { .sa_handler = saved_ignored[sig] ? SIG_IGN : SIG_DFL };

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigemptyset(&sa.sa_mask);
		sigaction(sig, &sa, NULL);	/* fails harmlessly for glibc's own (32, 33) */
	}
	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
}
