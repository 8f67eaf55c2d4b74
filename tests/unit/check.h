/* Minimal test harness: one line per check, a final "N passed, M failed". */
#ifndef CHECK_H
#define CHECK_H
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond, ...) do {						\
	int ok_ = !!(cond);						\
	check_passed += ok_;						\
	check_failed += !ok_;						\
	printf("%s: ", ok_ ? "ok  " : "FAIL");				\
	printf(__VA_ARGS__);						\
	printf(ok_ ? "\n" : "  [%s:%d: %s]\n", __FILE__, __LINE__, #cond); \
} while (0)

#define CHECK_U64(got, want, what) do {					\
	unsigned long long g_ = (got), w_ = (want);			\
	CHECK(g_ == w_, "%s = %llu (want %llu)", what, g_, w_);		\
} while (0)

#define CHECK_STR(got, want, what) do {					\
	const char *g_ = (got), *w_ = (want);				\
	CHECK(g_ && !strcmp(g_, w_), "%s = \"%s\" (want \"%s\")", what,	\
	      g_ ? g_ : "(null)", w_);					\
} while (0)

static inline int check_done(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed != 0;
}
#endif
