/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every file contactmap writes goes through here. contactmap runs as root and
 * is often pointed at /tmp, where other users can plant names, so an output:
 *  - follows a symbolic link (anywhere in the path) only when it belongs to
 *    root or to the caller (a link another user planted is refused);
 *  - replaces a regular file (or creates one) by writing a fresh temp file in
 *    the same directory (O_TMPFILE, or an O_EXCL random name) and renaming it
 *    into place, so it never writes into an inode someone else can reach;
 *  - writes character devices, FIFOs and '-' (stdout) in place, and refuses
 *    directories and block devices;
 *  - reports every failed write, flush and close as one error line.
 */
#ifndef CM_OUTFILE_H
#define CM_OUTFILE_H

#include <stdbool.h>
#include <stdio.h>

struct cm_out;

/* Opens PATH for the output called WHAT ("report", "timeline" ...) and names
 * it OPTION ("-o") in messages. NULL on error (one line printed). Nothing is
 * visible at PATH until cm_out_commit (or cm_out_publish). */
struct cm_out *cm_out_open(const char *path, const char *what, const char *option);
/* The stream to write to; errors are caught at commit. */
FILE *cm_out_fp(struct cm_out *o);
/* Makes a streamed file visible at its path now (the interval stream, which
 * is read while it grows). 0, or -1 with the error printed. */
int cm_out_publish(struct cm_out *o);
/* Flushes, syncs and closes, and renames the file into place. 0, or -1 with
 * the error printed; frees o either way (NULL is a no-op returning 0). */
int cm_out_commit(struct cm_out *o);
/* Drops the output: nothing is left at its path (a published stream is
 * removed). Frees o; NULL is a no-op. */
void cm_out_abort(struct cm_out *o);
/* Whether a and b would write the same file (the same inode, or the same name
 * in the same directory); character devices (/dev/null, a tty) may be shared. */
bool cm_out_same(const struct cm_out *a, const struct cm_out *b);
/* The path as given ("-" for stdout) and the option it came from. */
const char *cm_out_path(const struct cm_out *o);
const char *cm_out_option(const struct cm_out *o);
/* True when the output is stdout ("-"). */
bool cm_out_is_stdout(const struct cm_out *o);

/* Flushes a stream contactmap does not own (stdout, stderr) and says, in one
 * error line, if anything written to it was lost. 0 or -1. */
int cm_out_check_stream(FILE *fp, const char *what, const char *name);

#endif /* CM_OUTFILE_H */
