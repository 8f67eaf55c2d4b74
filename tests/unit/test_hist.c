/* cm_hist_quantile on histograms whose answers can be worked out by hand. */
#include "cm.h"
#include "check.h"

static uint64_t h[CM_NSLOTS];

static void reset(void)
{
	memset(h, 0, sizeof(h));
}

int main(void)
{
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0), 0, "empty p50");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.99, 1000), 0, "empty p99 with max");
	CHECK_U64(cm_hist_quantile(h, 0, 0.5, 0), 0, "zero slots");

	/* 10 events in slot 10 = [1024, 2048): the k-th sits at 1024 + 1024*k/10 */
	reset();
	h[10] = 10;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0), 1024 + 512, "one bucket p50");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.1, 0), 1024 + 102, "one bucket p10");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.99, 0), 2047, "one bucket p99 stays in bucket");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.0, 0), 1024 + 102, "q=0 is the smallest event");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 1.0, 0), 2047, "q=1 is the bucket top");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 1.0, 1500), 1500, "q=1 clamped to max");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 1200), 1200, "p50 clamped to max");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.1, 1200), 1126, "below max unchanged");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, -1, 0), 1126, "q<0 treated as 0");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 2, 0), 2047, "q>1 treated as 1");

	/* 90 events in [256, 512), 10 in [65536, 131072): p50 is rank 50 of the
	 * first bucket, p90 its last, p91 the first of the second, p99 rank 9/10 */
	reset();
	h[8] = 90;
	h[16] = 10;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0), 256 + 256 * 50 / 90, "two buckets p50");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.9, 0), 511, "two buckets p90");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.91, 0), 65536 + 6553, "two buckets p91");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.99, 0), 65536 + 65536 * 9 / 10, "two buckets p99");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.99, 100000), 100000, "two buckets p99 clamped");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.07, 0), 256 + 256 * 7 / 90, "p7 not pushed to rank 8 by rounding");

	/* a single event: clamping to max gives it back exactly */
	reset();
	h[20] = 1;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 1234567), 1234567, "single event p50 = max");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0), (1u << 21) - 1, "single event p50, no max");

	/* slot 0 is [1, 2) */
	reset();
	h[0] = 3;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0), 1, "slot 0");

	/* the last slot, where the kernel puts everything from ~550 s up */
	reset();
	h[CM_NSLOTS - 1] = 4;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 0.5, 0),
		  (1ull << 39) + (1ull << 38), "last slot p50");
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 1, 600000000000ull), 600000000000ull,
		  "last slot q=1 clamped");

	/* huge counts must not overflow the interpolation */
	reset();
	h[39] = UINT64_MAX / 4;
	CHECK_U64(cm_hist_quantile(h, CM_NSLOTS, 1, 0), (1ull << 40) - 1, "huge count q=1");
	return check_done();
}
