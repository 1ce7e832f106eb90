/* The clock family: clock_gettime (every clock id), gettimeofday, time, timespec_get.
 *
 * Thin: call the real (vDSO) function, and for the clocks the guard watches hand the reading to
 * libguard/clock.c, which returns what the program sees (the reading itself unless a policy
 * injects a step or clamps). Async-signal-safe throughout: these run in signal handlers.
 *
 * Before the real-function table is resolved (a clock read from jemalloc's start-up, or from
 * another library's constructor, or one reached from inside dlsym while we resolve) the hooks
 * answer with the raw system call, which is always there and never re-enters us.
 */
#include "libguard/internal.h"

#include <errno.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL

/* The real table, or NULL while it is not resolved yet (never resolves it from here). */
#define REAL_OR_NULL(name)                                                                         \
	(LG_LIKELY(atomic_load_explicit(&lg_real_ready, memory_order_acquire)) ? lg_real.name : NULL)

/* The declarations say the pointer arguments are nonnull, so the compiler may drop a NULL test;
 * an empty asm hides where the pointer came from, keeping the test for callers that pass NULL. */
static inline void *launder(void *p)
{
	__asm__("" : "+r"(p));
	return p;
}

static int real_clock_gettime(clockid_t id, struct timespec *ts)
{
	int (*fn)(clockid_t, struct timespec *) = REAL_OR_NULL(clock_gettime);

	return fn ? fn(id, ts) : (int)syscall(SYS_clock_gettime, id, ts);
}

static int real_gettimeofday(struct timeval *tv, void *tz)
{
	int (*fn)(struct timeval *, void *) = REAL_OR_NULL(gettimeofday);

	return fn ? fn(tv, tz) : (int)syscall(SYS_gettimeofday, tv, tz);
}

static time_t real_time(time_t *t)
{
	time_t (*fn)(time_t *) = REAL_OR_NULL(time);

	return fn ? fn(t) : (time_t)syscall(SYS_time, t);
}

static int real_timespec_get(struct timespec *ts, int base)
{
	int (*fn)(struct timespec *, int) = REAL_OR_NULL(timespec_get);

	if (fn)
		return fn(ts, base);
	if (base != TIME_UTC || syscall(SYS_clock_gettime, CLOCK_REALTIME, ts) != 0)
		return 0;
	return base;
}

/* Floor division: a value before 1970 still splits into a valid (sec, sub-second) pair. */
static inline int64_t split_ns(int64_t ns, int64_t unit, int64_t *rem)
{
	int64_t q = ns / NS_PER_S, r = ns % NS_PER_S;

	if (r < 0) {
		q--;
		r += NS_PER_S;
	}
	*rem = r / unit;
	return q;
}

LG_EXPORT int clock_gettime(clockid_t id, struct timespec *ts)
{
	if (!lg_active())
		return real_clock_gettime(id, ts);
	switch (id) {
	case CLOCK_MONOTONIC: {
		uint64_t last = lg_tls.mono_last_ns;
		int rc = real_clock_gettime(id, ts);
		if (LG_LIKELY(rc == 0))
			lg_clock_on_monotonic(last, (uint64_t)ts->tv_sec * NS_PER_S +
							    (uint64_t)ts->tv_nsec);
		return rc;
	}
	case CLOCK_REALTIME:
	case CLOCK_REALTIME_COARSE: {
		int rc = real_clock_gettime(id, ts);
		if (LG_UNLIKELY(rc != 0))
			return rc;
		int64_t raw = (int64_t)ts->tv_sec * NS_PER_S + ts->tv_nsec;
		int64_t v = lg_clock_on_realtime(raw, id == CLOCK_REALTIME ? LG_RT_NS : LG_RT_COARSE);
		if (LG_UNLIKELY(v != raw)) {
			int64_t nsec;
			ts->tv_sec = (time_t)split_ns(v, 1, &nsec);
			ts->tv_nsec = (long)nsec;
		}
		return rc;
	}
	default:
		return real_clock_gettime(id, ts);
	}
}

LG_EXPORT int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	struct timeval *out = launder(tv);

	if (!lg_active() || !out)
		return real_gettimeofday(tv, tz);
	int rc = real_gettimeofday(tv, tz);
	if (LG_UNLIKELY(rc != 0))
		return rc;
	int64_t raw = (int64_t)out->tv_sec * NS_PER_S + (int64_t)out->tv_usec * 1000;
	int64_t v = lg_clock_on_realtime(raw, LG_RT_US);
	if (LG_UNLIKELY(v != raw)) {
		int64_t usec;
		out->tv_sec = (time_t)split_ns(v, 1000, &usec);
		out->tv_usec = (suseconds_t)usec;
	}
	return rc;
}

LG_EXPORT time_t time(time_t *t)
{
	if (!lg_active())
		return real_time(t);
	time_t s = real_time(NULL);
	if (LG_LIKELY(s != (time_t)-1)) {
		int64_t raw = (int64_t)s * NS_PER_S;
		int64_t v = lg_clock_on_realtime(raw, LG_RT_S);
		if (LG_UNLIKELY(v != raw)) {
			int64_t rem;
			s = (time_t)split_ns(v, NS_PER_S, &rem);
		}
	}
	if (t)
		*t = s;
	return s;
}

LG_EXPORT int timespec_get(struct timespec *ts, int base)
{
	if (!lg_active() || base != TIME_UTC)
		return real_timespec_get(ts, base);
	int rc = real_timespec_get(ts, base);
	if (LG_UNLIKELY(rc == 0))
		return rc;
	int64_t raw = (int64_t)ts->tv_sec * NS_PER_S + ts->tv_nsec;
	int64_t v = lg_clock_on_realtime(raw, LG_RT_NS);
	if (LG_UNLIKELY(v != raw)) {
		int64_t nsec;
		ts->tv_sec = (time_t)split_ns(v, 1, &nsec);
		ts->tv_nsec = (long)nsec;
	}
	return rc;
}
