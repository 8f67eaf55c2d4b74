/* SPDX-License-Identifier: GPL-2.0 */
#ifndef FLOOR_H
#define FLOOR_H

#define FLOOR_SYS_ENTER 0
#define FLOOR_SYS_EXIT 1
#define FLOOR_SCHED_SWITCH 2
#define FLOOR_NCOUNTERS 3

#endif
