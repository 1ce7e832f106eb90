/* Socket calls: the fd guard records sockets, the connection guard (net.c) runs accept and
 * connect under its limits and timeouts.
 *
 * Hooks keep their own frame (no tail call into the guard): the recorded stacks start at the
 * program's call by counting the guard's frames.
 */
#include "hooks/fd_hooks.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <sys/socket.h>

/* Keeps a call out of tail position: the hook's frame stays on the stack during it. */
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

LG_EXPORT int socket(int domain, int type, int protocol)
{
	if (!GUARDED())
		return LG_REAL(socket)(domain, type, protocol);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(socket)(domain, type, protocol), LG_FD_SOCKET);
}

LG_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	if (!GUARDED())
		return LG_REAL(socketpair)(domain, type, protocol, sv);
	REFUSE_IF_FULL(2);
	return made2(LG_REAL(socketpair)(domain, type, protocol, sv), sv, LG_FD_SOCKET);
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
