/* The mutrace-style baseline for bench/mutex.sh: an LD_PRELOAD hook that reads the monotonic
 * clock around every pthread_mutex_lock and adds the wait to per-thread totals, contended or not.
 * This is what libguard's trylock-first fast path avoids. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

static int (*real_lock)(pthread_mutex_t *);
static __thread unsigned long long locks, wait_ns;

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

__attribute__((visibility("default"))) int pthread_mutex_lock(pthread_mutex_t *m)
{
	if (__builtin_expect(!real_lock, 0))
		real_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	unsigned long long t0 = now_ns();
	int rc = real_lock(m);
	wait_ns += now_ns() - t0;
	locks++;
	return rc;
}
