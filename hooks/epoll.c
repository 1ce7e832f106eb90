/* epoll: the fd guard counts epoll instances, remembers registrations (so it can hold a listener
 * back and put it back), and keeps epoll_wait from sleeping past the release of a held listener.
 * With no listener held, epoll_wait costs one relaxed load over the real call.
 */
#include "hooks/fd_hooks.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <sys/epoll.h>


LG_EXPORT int epoll_create(int size)
{
	if (!GUARDED())
		return LG_REAL(epoll_create)(size);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(epoll_create)(size), LG_FD_EPOLL);
}

LG_EXPORT int epoll_create1(int flags)
{
	if (!GUARDED())
		return LG_REAL(epoll_create1)(flags);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(epoll_create1)(flags), LG_FD_EPOLL);
}

LG_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	if (!GUARDED())
		return LG_REAL(epoll_ctl)(epfd, op, fd, ev);
	return lg_fd_epoll_ctl(epfd, op, fd, ev);
}

static inline bool holding(void)
{
	return GUARDED() && atomic_load_explicit(&lg_fd_nheld, memory_order_relaxed) != 0;
}

/* Before a wait and after it (a signal may have cut it short): the deferred guardian's turn
 * (guardian.c, hooks/wait.c). */
static inline int polled(int rc)
{
	lg_guardian_turn();
	return rc;
}

LG_EXPORT int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	lg_guardian_turn();
	if (LG_LIKELY(!holding()))
		return polled(LG_REAL(epoll_wait)(epfd, events, maxevents, timeout));
	return lg_fd_epoll_wait(epfd, events, maxevents,
				timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL, 0);
}

LG_EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
			  const sigset_t *sigmask)
{
	lg_guardian_turn();
	if (LG_LIKELY(!holding()))
		return polled(LG_REAL(epoll_pwait)(epfd, events, maxevents, timeout, sigmask));
	return lg_fd_epoll_wait(epfd, events, maxevents,
				timeout < 0 ? -1 : (int64_t)timeout * 1000000, sigmask, 1);
}

LG_EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
			   const struct timespec *timeout, const sigset_t *sigmask)
{
	if (!LG_REAL(epoll_pwait2)) {
		errno = ENOSYS;
		return -1;
	}
	lg_guardian_turn();
	if (LG_LIKELY(!holding()) || (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
						  timeout->tv_nsec >= 1000000000)))
		return polled(LG_REAL(epoll_pwait2)(epfd, events, maxevents, timeout, sigmask));
	return lg_fd_epoll_wait(epfd, events, maxevents,
				timeout ? (int64_t)timeout->tv_sec * 1000000000 + timeout->tv_nsec : -1,
				sigmask, 2);
}
