/* cm_fmt_ns / cm_fmt_bytes around their unit and rounding boundaries. */
#include "cm.h"
#include "check.h"

static void ns_is(uint64_t v, const char *want)
{
	char buf[32];

	CHECK_STR(cm_fmt_ns(v, buf, sizeof(buf)), want, "fmt_ns");
}

static void bytes_is(uint64_t v, const char *want)
{
	char buf[32];

	CHECK_STR(cm_fmt_bytes(v, buf, sizeof(buf)), want, "fmt_bytes");
}

int main(void)
{
	ns_is(0, "0 ns");
	ns_is(90, "90 ns");
	ns_is(999, "999 ns");
	ns_is(1000, "1 us");
	ns_is(1001, "1 us");
	ns_is(1005, "1 us");		/* 1.005 is 1.00499.. in binary */
	ns_is(1006, "1.01 us");
	ns_is(7800, "7.8 us");
	ns_is(9994, "9.99 us");
	ns_is(9996, "10 us");
	ns_is(99940, "99.9 us");
	ns_is(99960, "100 us");
	ns_is(456000000, "456 ms");
	ns_is(999499, "999 us");
	ns_is(999500, "1 ms");		/* not "1000 us" */
	ns_is(999999999, "1 s");
	ns_is(1230000000, "1.23 s");
	ns_is(3600000000000ull, "3600 s");
	ns_is(UINT64_MAX, "18446744074 s");

	bytes_is(0, "0 B");
	bytes_is(1023, "1023 B");
	bytes_is(1024, "1 KiB");
	bytes_is(1536, "1.5 KiB");
	bytes_is(1023 * 1024, "1023 KiB");
	bytes_is(1024 * 1024 - 1, "1 MiB");	/* not "1024 KiB" */
	bytes_is(1610612736, "1.5 GiB");
	bytes_is(1ull << 40, "1 TiB");
	bytes_is(UINT64_MAX, "16 EiB");

	/* small buffers truncate but stay terminated */
	char tiny[4];
	cm_fmt_ns(1230000000, tiny, sizeof(tiny));
	CHECK(memchr(tiny, '\0', sizeof(tiny)) != NULL, "tiny buffer terminated (\"%s\")", tiny);
	cm_fmt_bytes(1610612736, tiny, sizeof(tiny));
	CHECK(memchr(tiny, '\0', sizeof(tiny)) != NULL, "tiny buffer terminated (\"%s\")", tiny);
	return check_done();
}
