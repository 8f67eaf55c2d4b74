// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Quantiles of the kernel's log2 latency histograms. */
#include <math.h>
#include "cm.h"

/* The rank-th event is placed as if the count events of its bucket were spread
 * evenly up to the bucket's top, so the last one sits at the top (less one, to
 * stay inside [2^i, 2^(i+1))); clamping to max_ns then makes p50/p99 exact for
 * buckets holding a single event and never reports more than was observed. */
uint64_t cm_hist_quantile(const uint64_t *hist, unsigned nslots, double q, uint64_t max_ns)
{
	uint64_t total = 0, before = 0;
	unsigned i;

	if (nslots > 64)
		nslots = 64;	/* slot 64 would start past UINT64_MAX */
	for (i = 0; i < nslots; i++)
		total += hist[i];
	if (!total)
		return 0;
	if (!(q > 0))		/* also catches NaN */
		q = 0;
	if (q > 1)
		q = 1;
	/* the relative nudge keeps 0.07 * 100 = 7.000000000000001 from ranking 8th */
	double x = q * (double)total;
	uint64_t rank = (uint64_t)ceil(x - x * 1e-12);
	if (rank < 1)
		rank = 1;	/* q=0 is the smallest event */
	if (rank > total)
		rank = total;
	for (i = 0; i < nslots; i++) {
		if (before + hist[i] >= rank)
			break;
		before += hist[i];
	}
	uint64_t lo = (uint64_t)1 << i, width = lo;
	/* 128-bit: width * rank overflows 64 bits for large counts */
	uint64_t off = (uint64_t)((unsigned __int128)width * (rank - before) / hist[i]);
	uint64_t v = lo + (off < width ? off : width - 1);
	if (max_ns && v > max_ns)
		v = max_ns;
	return v;
}
