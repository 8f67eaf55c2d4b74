// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* contactmap diff: placeholder, replaced shortly. */
#include "cm.h"

int cm_diff_main(int argc, char **argv)
{
	cm_err("diff is not implemented yet");
	return 1;
}
