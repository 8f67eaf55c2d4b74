/* The dlopen'ed library of stackwl: its frames must resolve too. */
#include <time.h>

static volatile unsigned long sink;

__attribute__((noinline)) void lib_spin_g(long ms)
{
	struct timespec ts;
	long long end;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	end = ts.tv_sec * 1000000000LL + ts.tv_nsec + ms * 1000000LL;
	do {
		for (int i = 0; i < 1000; i++)
			sink += i;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	} while (ts.tv_sec * 1000000000LL + ts.tv_nsec < end);
	__asm__ volatile("" ::: "memory");
}
