/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The signal state contactmap was started with. contactmap ignores SIGPIPE
 * and blocks SIGINT/SIGTERM/SIGHUP for its signalfd; a wrapped command must
 * not inherit that (an ignored SIGPIPE turns `yes | head -1` into "Broken
 * pipe" errors), so it gets exactly what contactmap itself was given.
 */
#ifndef CM_SIGSTATE_H
#define CM_SIGSTATE_H

/* Records every signal's disposition (ignored or not) and the mask. Call
 * first in main, before anything changes them. */
void cm_sig_save(void);
/* In a forked child before exec: the recorded mask, and each signal ignored
 * or default as recorded (handlers do not survive exec anyway).
 * Async-signal-safe. */
void cm_sig_restore(void);

#endif /* CM_SIGSTATE_H */
