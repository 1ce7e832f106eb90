/* Calls that wait: sleep, usleep, nanosleep, clock_nanosleep, poll, ppoll, select, pselect.
 *
 * Nothing is guarded here. They are where a single-threaded program with a deferred guardian
 * (guardian.c) gives it a turn: before it sleeps, the periodic tasks that are due run; after, a
 * report signal that cut the wait short is served. Each returns exactly what the real call did,
 * errno included; with the guardian's thread running, a turn is one relaxed load.
 */
#include "libguard/internal.h"

LG_EXPORT unsigned sleep(unsigned seconds)
{
	lg_guardian_turn();
	unsigned left = LG_REAL(sleep)(seconds);
	lg_guardian_turn();
	return left;
}

LG_EXPORT int usleep(useconds_t usec)
{
	lg_guardian_turn();
	int rc = LG_REAL(usleep)(usec);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	lg_guardian_turn();
	int rc = LG_REAL(nanosleep)(req, rem);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int clock_nanosleep(clockid_t id, int flags, const struct timespec *req,
			      struct timespec *rem)
{
	lg_guardian_turn();
	int rc = LG_REAL(clock_nanosleep)(id, flags, req, rem);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	lg_guardian_turn();
	int rc = LG_REAL(poll)(fds, n, timeout);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		    const sigset_t *sigmask)
{
	lg_guardian_turn();
	int rc = LG_REAL(ppoll)(fds, n, timeout, sigmask);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)
{
	lg_guardian_turn();
	int rc = LG_REAL(select)(n, r, w, e, timeout);
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout,
		      const sigset_t *sigmask)
{
	lg_guardian_turn();
	int rc = LG_REAL(pselect)(n, r, w, e, timeout, sigmask);
	lg_guardian_turn();
	return rc;
}
