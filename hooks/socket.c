/* Socket calls: the fd guard records sockets, the connection guard (net.c) runs accept and
 * connect under its limits and timeouts.
 *
 * Hooks keep their own frame (no tail call into the guard): the recorded stacks start at the
 * program's call by counting the guard's frames.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <sys/socket.h>

#define GUARDED() (lg_active() && lg_fd_tracking())
/* Keeps a call out of tail position: the hook's frame stays on the stack during it. */
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

LG_EXPORT int socket(int domain, int type, int protocol)
{
	if (!GUARDED())
		return LG_REAL(socket)(domain, type, protocol);
	if (LG_UNLIKELY(lg_fd_admit(1, 1) != 0)) {
		errno = EMFILE;
		return -1;
	}
	int fd = LG_REAL(socket)(domain, type, protocol);
	int err = errno;
	if (fd >= 0)
		lg_fd_on_create(fd, LG_FD_SOCKET, 0, 1);
	else
		lg_fd_after_create(fd, err, 1);
	errno = err;
	return fd;
}

LG_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	if (!GUARDED())
		return LG_REAL(socketpair)(domain, type, protocol, sv);
	if (LG_UNLIKELY(lg_fd_admit(2, 1) != 0)) {
		errno = EMFILE;
		return -1;
	}
	int rc = LG_REAL(socketpair)(domain, type, protocol, sv);
	int err = errno;
	if (rc == 0) {
		lg_fd_on_create(sv[0], LG_FD_SOCKET, 0, 1);
		lg_fd_on_create(sv[1], LG_FD_SOCKET, 0, 1);
	} else {
		lg_fd_after_create(rc, err, 1);
	}
	errno = err;
	return rc;
}

LG_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	if (!GUARDED())
		return LG_REAL(accept)(fd, addr, len);
	int rc = lg_net_accept(fd, addr, len, 0);
	KEEP_FRAME();
	return rc;
}

LG_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (!GUARDED())
		return LG_REAL(accept4)(fd, addr, len, flags);
	int rc = lg_net_accept(fd, addr, len, flags);
	KEEP_FRAME();
	return rc;
}

LG_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!GUARDED())
		return LG_REAL(connect)(fd, addr, len);
	int rc = lg_net_connect(fd, addr, len);
	KEEP_FRAME();
	return rc;
}

LG_EXPORT int listen(int fd, int backlog)
{
	int rc = LG_REAL(listen)(fd, backlog);

	if (rc == 0 && GUARDED()) {
		int saved = errno;
		lg_net_on_listen(fd);
		errno = saved;
	}
	return rc;
}

LG_EXPORT int shutdown(int fd, int how)
{
	/* Nothing to record yet: a program's own shutdown leaves the fd open and in the table. */
	return LG_REAL(shutdown)(fd, how);
}

LG_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int rc = LG_REAL(setsockopt)(fd, level, name, val, len);

	if (rc == 0 && GUARDED()) {
		int saved = errno;
		lg_net_on_setsockopt(fd, level, name);
		errno = saved;
	}
	return rc;
}
