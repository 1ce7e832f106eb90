/* Mutexes, rwlocks and threads.
 *
 * Locks: the fast path is the real trylock and nothing else: no clock, no busy-flag check, no
 * branch on the policy. An uncontended acquisition (the case that must stay within a few ns of
 * plain) ends there. trylock returns what lock would for every mutex kind when it does not have
 * to wait: 0 (also for the owner of a recursive mutex), EOWNERDEAD / ENOTRECOVERABLE for a robust
 * mutex, EAGAIN at the recursion limit, EINVAL for a priority-protect ceiling below the caller.
 * On EBUSY the real blocking call decides, so its result passes through unchanged: EDEADLK for
 * the owner of an error-checking mutex, ETIMEDOUT for a timed lock, the robust-mutex codes.
 *
 * Robust mutexes are the exception: glibc's trylock on one that is not recoverable returns
 * ENOTRECOVERABLE but leaves the lock word holding the caller's TID (glibc 2.36; lock itself
 * releases it), so every later lock of that mutex would hang instead of failing again. For them
 * the hook reads the lock word instead: 0 (free, or not recoverable) goes straight to the real
 * lock; anything else (held, or its owner died) is timed as a wait. The kind is fixed at init.
 *
 * pthread_mutex_unlock is not hooked: nothing about it is needed, and it would cost every pair.
 *
 * While the real table is being resolved (a lock taken by jemalloc or dlsym during our own
 * startup), LG_REAL can be NULL: the blocking calls then poll the try function (try_loop).
 */
#include "libguard/internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/single_threaded.h>
#include <time.h>

/* The try functions are not hooked, so a direct call binds to glibc's (or to whatever the
 * program itself interposes): one PLT jump, cheaper than going through the real table. */

/* The stack capture skips a fixed number of frames (lg_lock_wait_begin, the slow-path helper,
 * the hook), so the hook must keep its frame: the helper is not called in tail position. A
 * separate helper also keeps the prologue off the fast path. */
#define NO_SIBCALL() __asm__ volatile("")

static bool timespec_valid(const struct timespec *ts)
{
	return ts && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000L;
}

static bool past(clockid_t clock, const struct timespec *abs)
{
	struct timespec now;

	clock_gettime(clock, &now);
	return now.tv_sec > abs->tv_sec || (now.tv_sec == abs->tv_sec && now.tv_nsec >= abs->tv_nsec);
}

/* Before the real table is resolved (a lock taken by dlsym or jemalloc during our own startup,
 * before any program code runs): poll the try function, yielding, until it stops saying EBUSY
 * or the deadline passes (abs NULL: no deadline). */
static int try_loop(int (*try)(void *), void *lock, clockid_t clock, const struct timespec *abs)
{
	for (;;) {
		int rc = try(lock);
		if (rc != EBUSY)
			return rc;
		if (abs && past(clock, abs))
			return ETIMEDOUT;
		sched_yield();
	}
}

static int try_mutex(void *m) { return pthread_mutex_trylock(m); }
static int try_rd(void *l) { return pthread_rwlock_tryrdlock(l); }
static int try_wr(void *l) { return pthread_rwlock_trywrlock(l); }

/* ---- mutexes ---- */

/* glibc's kind bit for robust mutexes (nptl/pthreadP.h: PTHREAD_MUTEX_ROBUST_NORMAL_NP); set for
 * every robust kind, priority-inheriting ones included. */
#define MUTEX_KIND_ROBUST 16

static inline bool is_robust(const pthread_mutex_t *m)
{
	return LG_UNLIKELY(__atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) & MUTEX_KIND_ROBUST);
}

/* glibc's kind bit for process-shared mutexes (PTHREAD_MUTEX_PSHARED_BIT). */
#define MUTEX_KIND_PSHARED 128

/* While the process has one thread, a private mutex can make nobody wait: the real lock goes
 * first, so glibc keeps its single-threaded shortcut (no atomic instruction; trylock always has
 * one). glibc clears __libc_single_threaded when a second thread starts and never sets it again.
 * A process-shared mutex can be held by another process, so it is tried as usual. */
static inline bool cannot_wait(const pthread_mutex_t *m)
{
	return __libc_single_threaded &&
	       !(__atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) & MUTEX_KIND_PSHARED);
}

/* For a robust mutex: would it make the caller wait (or report a dead owner)? */
static inline bool robust_busy(pthread_mutex_t *m)
{
	return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) != 0;
}

static __attribute__((noinline)) int mutex_lock_slow(pthread_mutex_t *m, const void *caller)
{
	struct lg_lock_wait w;
	int (*lock)(pthread_mutex_t *) = LG_REAL(pthread_mutex_lock);

	if (LG_UNLIKELY(!lock))
		return try_loop(try_mutex, m, CLOCK_MONOTONIC, NULL);
	if (!lg_lock_wait_begin(&w, caller))
		return lock(m);
	int rc = lock(m);
	lg_lock_wait_end(&w, rc);
	return rc;
}

/* A robust mutex that is free or not recoverable, or any private mutex in a single-threaded
 * process: the real lock decides at once. */
static __attribute__((noinline)) int lock_now(pthread_mutex_t *m)
{
	int (*lock)(pthread_mutex_t *) = LG_REAL(pthread_mutex_lock);

	return lock ? lock(m) : try_loop(try_mutex, m, CLOCK_MONOTONIC, NULL);
}

LG_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
	int rc;

	if (LG_UNLIKELY(cannot_wait(m)))
		return lock_now(m);
	if (is_robust(m)) {
		if (!robust_busy(m))
			return lock_now(m);
		rc = EBUSY;
	} else {
		rc = pthread_mutex_trylock(m);
	}
	if (LG_LIKELY(rc != EBUSY))
		return rc;
	rc = mutex_lock_slow(m, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

static __attribute__((noinline)) int mutex_timed_slow(pthread_mutex_t *m, clockid_t clock,
						       const struct timespec *abs, bool clocked,
						       const void *caller)
{
	struct lg_lock_wait w;
	bool tracked = lg_lock_wait_begin(&w, caller);
	int rc;

	if (clocked)
		rc = lg_real.pthread_mutex_clocklock(m, clock, abs);
	else
		rc = lg_real.pthread_mutex_timedlock(m, abs);
	if (tracked)
		lg_lock_wait_end(&w, rc);
	return rc;
}

LG_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abs)
{
	if (!LG_REAL(pthread_mutex_timedlock))
		return try_loop(try_mutex, m, CLOCK_REALTIME, abs);
	/* An invalid deadline goes straight to glibc, so that its own checks decide. */
	if (!timespec_valid(abs) || (is_robust(m) && !robust_busy(m)))
		return lg_real.pthread_mutex_timedlock(m, abs);
	int rc = is_robust(m) ? EBUSY : pthread_mutex_trylock(m);
	if (rc != EBUSY)
		return rc;
	rc = mutex_timed_slow(m, CLOCK_REALTIME, abs, false, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

LG_EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clock, const struct timespec *abs)
{
	if (!LG_REAL(pthread_mutex_clocklock)) {
		if (atomic_load(&lg_real_ready))   /* resolved, but this glibc predates 2.30 */
			return ENOSYS;
		return try_loop(try_mutex, m, clock, abs);
	}
	/* glibc rejects other clocks with EINVAL before looking at the mutex: let it. */
	if (!timespec_valid(abs) || (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME) ||
	    (is_robust(m) && !robust_busy(m)))
		return lg_real.pthread_mutex_clocklock(m, clock, abs);
	int rc = is_robust(m) ? EBUSY : pthread_mutex_trylock(m);
	if (rc != EBUSY)
		return rc;
	rc = mutex_timed_slow(m, clock, abs, true, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

/* ---- rwlocks ---- */

static __attribute__((noinline)) int rwlock_slow(pthread_rwlock_t *l, int (*lock)(pthread_rwlock_t *),
						  int (*try)(void *), const void *caller)
{
	struct lg_lock_wait w;

	if (LG_UNLIKELY(!lock))
		return try_loop(try, l, CLOCK_MONOTONIC, NULL);
	if (!lg_lock_wait_begin(&w, caller))
		return lock(l);
	int rc = lock(l);
	lg_lock_wait_end(&w, rc);
	return rc;
}

LG_EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
	int rc = pthread_rwlock_tryrdlock(l);

	if (LG_LIKELY(rc != EBUSY))
		return rc;
	rc = rwlock_slow(l, LG_REAL(pthread_rwlock_rdlock), try_rd, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

LG_EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
	int rc = pthread_rwlock_trywrlock(l);

	if (LG_LIKELY(rc != EBUSY))
		return rc;
	rc = rwlock_slow(l, LG_REAL(pthread_rwlock_wrlock), try_wr, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

static __attribute__((noinline)) int rwlock_timed_slow(pthread_rwlock_t *l, const struct timespec *abs,
							int (*lock)(pthread_rwlock_t *,
								    const struct timespec *),
							const void *caller)
{
	struct lg_lock_wait w;
	bool tracked = lg_lock_wait_begin(&w, caller);
	int rc = lock(l, abs);

	if (tracked)
		lg_lock_wait_end(&w, rc);
	return rc;
}

LG_EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *abs)
{
	if (!LG_REAL(pthread_rwlock_timedrdlock))
		return try_loop(try_rd, l, CLOCK_REALTIME, abs);
	if (!timespec_valid(abs))
		return lg_real.pthread_rwlock_timedrdlock(l, abs);
	int rc = pthread_rwlock_tryrdlock(l);
	if (rc != EBUSY)
		return rc;
	rc = rwlock_timed_slow(l, abs, lg_real.pthread_rwlock_timedrdlock, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

LG_EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *abs)
{
	if (!LG_REAL(pthread_rwlock_timedwrlock))
		return try_loop(try_wr, l, CLOCK_REALTIME, abs);
	if (!timespec_valid(abs))
		return lg_real.pthread_rwlock_timedwrlock(l, abs);
	int rc = pthread_rwlock_trywrlock(l);
	if (rc != EBUSY)
		return rc;
	rc = rwlock_timed_slow(l, abs, lg_real.pthread_rwlock_timedwrlock, __builtin_return_address(0));
	NO_SIBCALL();
	return rc;
}

/* glibc 2.30's clock variants (what libstdc++ uses for std::shared_timed_mutex with a steady
 * clock). */
static __attribute__((noinline)) int rwlock_clock_slow(pthread_rwlock_t *l, clockid_t clock,
							const struct timespec *abs,
							int (*lock)(pthread_rwlock_t *, clockid_t,
								    const struct timespec *),
							const void *caller)
{
	struct lg_lock_wait w;
	bool tracked = lg_lock_wait_begin(&w, caller);
	int rc = lock(l, clock, abs);

	if (tracked)
		lg_lock_wait_end(&w, rc);
	return rc;
}

/* Inlined into each hook: the lock guard counts a fixed number of frames of ours above the
 * program, whatever the compiler does with the tail call. */
static inline __attribute__((always_inline)) int
rwlock_clocklock(pthread_rwlock_t *l, clockid_t clock, const struct timespec *abs,
		 int (*lock)(pthread_rwlock_t *, clockid_t, const struct timespec *),
		 int (*try)(void *), const void *caller)
{
	if (!lock) {
		if (atomic_load(&lg_real_ready))   /* resolved, but this glibc predates 2.30 */
			return ENOSYS;
		return try_loop(try, l, clock, abs);
	}
	/* glibc rejects other clocks and bad deadlines with EINVAL: let it. */
	if (!timespec_valid(abs) || (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME))
		return lock(l, clock, abs);
	int rc = try(l);
	if (rc != EBUSY)
		return rc;
	return rwlock_clock_slow(l, clock, abs, lock, caller);
}

#define RWLOCK_CLOCK_HOOK(name, try)                                                               \
	LG_EXPORT int name(pthread_rwlock_t *l, clockid_t clock, const struct timespec *abs)       \
	{                                                                                          \
		int rc = rwlock_clocklock(l, clock, abs, LG_REAL(name), try,                       \
					  __builtin_return_address(0));                            \
		NO_SIBCALL();                                                                      \
		return rc;                                                                         \
	}
RWLOCK_CLOCK_HOOK(pthread_rwlock_clockrdlock, try_rd)
RWLOCK_CLOCK_HOOK(pthread_rwlock_clockwrlock, try_wr)

/* ---- threads ---- */

LG_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
			     void *arg)
{
	int rc = lg_thread_create(thread, attr, start, arg);

	NO_SIBCALL();
	return rc;
}

LG_EXPORT int pthread_join(pthread_t t, void **ret)
{
	int (*join)(pthread_t, void **) = LG_REAL(pthread_join);

	if (!join)
		return ENOSYS;
	int rc = join(t, ret);
	if (rc == 0)
		lg_thread_released(t);
	return rc;
}

LG_EXPORT int pthread_tryjoin_np(pthread_t t, void **ret)
{
	int (*join)(pthread_t, void **) = LG_REAL(pthread_tryjoin_np);

	if (!join)
		return ENOSYS;
	int rc = join(t, ret);
	if (rc == 0)
		lg_thread_released(t);
	return rc;
}

LG_EXPORT int pthread_timedjoin_np(pthread_t t, void **ret, const struct timespec *abs)
{
	int (*join)(pthread_t, void **, const struct timespec *) = LG_REAL(pthread_timedjoin_np);

	if (!join)
		return ENOSYS;
	int rc = join(t, ret, abs);
	if (rc == 0)
		lg_thread_released(t);
	return rc;
}

LG_EXPORT int pthread_detach(pthread_t t)
{
	int (*detach)(pthread_t) = LG_REAL(pthread_detach);

	if (!detach)
		return ENOSYS;
	int rc = detach(t);
	if (rc == 0)
		lg_thread_released(t);
	return rc;
}

LG_EXPORT void pthread_exit(void *ret)
{
	/* Whatever the state: a thread we started must be marked finished even if the guard is
	 * busy in it, or its record would count as a running thread forever. */
	lg_thread_on_exit();
	LG_REAL(pthread_exit)(ret);
	__builtin_unreachable();
}
