/* Stacks with known shapes and weights, for the folded-stack tests.
 *
 *   stackwl LIB.so
 * A worker thread runs outer_a -> middle_b -> spin_c (CPU, SPIN_MS) and then
 * outer_a -> sleeper_d -> clock_nanosleep (SLEEPS x SLEEP_MS); a second thread
 * blocks in waiter_f on a mutex that holder_e keeps for HOLD_MS; the main
 * thread calls lib_spin_g from a dlopen'ed library (LIB_MS of CPU); a child
 * process runs child_spin_h (CHILD_MS) and exits early. Built twice: with and
 * without frame pointers.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sys/wait.h>
#include "wl.h"

#define SPIN_MS 400
#define SLEEPS 10
#define SLEEP_MS 20
#define HOLD_MS 200
#define LIB_MS 200
#define CHILD_MS 150

#define NOINLINE __attribute__((noinline))
#define BARRIER() __asm__ volatile("" ::: "memory")

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long sink;

static void burn_ms(long ms)
{
	long long end = wl_now_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;

	while (wl_now_ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 1000; i++)
			sink += i;
}

NOINLINE void spin_c(void) { burn_ms(SPIN_MS); BARRIER(); }
NOINLINE void middle_b(void) { spin_c(); BARRIER(); }

NOINLINE void sleeper_d(void)
{
	struct timespec ts = { 0, SLEEP_MS * 1000000L };

	for (int i = 0; i < SLEEPS; i++)
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	BARRIER();
}

NOINLINE void outer_a(void) { middle_b(); sleeper_d(); BARRIER(); }

static void *worker(void *arg) { outer_a(); return NULL; }

NOINLINE void waiter_f(void)
{
	pthread_mutex_lock(&lock);
	pthread_mutex_unlock(&lock);
	BARRIER();
}

static void *waiter(void *arg) { waiter_f(); return NULL; }

NOINLINE void holder_e(pthread_t *w)
{
	struct timespec ts = { 0, HOLD_MS * 1000000L };

	pthread_mutex_lock(&lock);
	if (pthread_create(w, NULL, waiter, NULL))
		wl_die("pthread_create");
	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	pthread_mutex_unlock(&lock);
	BARRIER();
}

NOINLINE void child_spin_h(void) { burn_ms(CHILD_MS); BARRIER(); }

int main(int argc, char **argv)
{
	void (*lib_spin_g)(long);
	pthread_t t1, t2;
	void *lib;
	pid_t child;
	int st;

	if (argc < 2) {
		fprintf(stderr, "usage: stackwl LIB.so\n");
		return 2;
	}
	lib = dlopen(argv[1], RTLD_NOW);
	if (!lib || !(lib_spin_g = (void (*)(long))dlsym(lib, "lib_spin_g"))) {
		fprintf(stderr, "workload: %s\n", dlerror());
		return 100;
	}
	child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		child_spin_h();
		_exit(0);
	}
	if (pthread_create(&t1, NULL, worker, NULL))
		wl_die("pthread_create");
	holder_e(&t2);
	lib_spin_g(LIB_MS);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	waitpid(child, &st, 0);
	printf("{\"pid\":%d,\"child\":%d,\"spin_ms\":%d,\"sleep_ms\":%d,\"hold_ms\":%d,"
	       "\"lib_ms\":%d,\"child_ms\":%d}\n", getpid(), child, SPIN_MS, SLEEPS * SLEEP_MS,
	       HOLD_MS, LIB_MS, CHILD_MS);
	return 0;
}
