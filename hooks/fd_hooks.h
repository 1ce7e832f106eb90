/* What every descriptor-creating hook does around the real call (fd.c, socket.c, epoll.c): ask
 * fd.max before (REFUSE_IF_FULL), record what the call made after (made, made2), errno as the
 * real call left it. Static inline, so each hook keeps exactly one frame of ours above the
 * program: the fd guard starts the recorded stack at the program's call by counting them. */
#ifndef LG_HOOKS_FD_H
#define LG_HOOKS_FD_H

#include "libguard/internal.h"

#include <errno.h>

/* Inlined into each hook, so the hook's frame is the one frame of ours above the program. */
static inline __attribute__((always_inline)) int made(int fd, int kind)
{
	int err = errno;

	if (fd >= 0)
		lg_fd_on_create(fd, kind, 0, 1);
	else
		lg_fd_after_create(fd, err, 1);
	lg_guardian_poll();
	errno = err;
	return fd;
}

static inline __attribute__((always_inline)) int made2(int rc, int *fds, int kind)
{
	int err = errno;

	if (rc == 0) {
		lg_fd_on_create(fds[0], kind, 0, 1);
		lg_fd_on_create(fds[1], kind, 0, 1);
	} else {
		lg_fd_after_create(rc, err, 1);
	}
	lg_guardian_poll();
	errno = err;
	return rc;
}

/* fd.max refuses n more descriptors: the hook returns fail (-1 for a call that returns an fd,
 * NULL for one that returns a stream) with EMFILE, as the kernel's refusal would leave it. */
#define REFUSE_IF_FULL_OR(n, fail)                                                                 \
	do {                                                                                       \
		if (LG_UNLIKELY(lg_fd_admit((n), 1) != 0)) {                                      \
			errno = EMFILE;                                                            \
			return fail;                                                               \
		}                                                                                  \
	} while (0)
#define REFUSE_IF_FULL(n) REFUSE_IF_FULL_OR(n, -1)

#define GUARDED() (lg_active() && lg_fd_tracking())

#endif
