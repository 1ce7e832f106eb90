/* Descriptor-creating and -closing calls: the fd guard's table follows every one of them.
 *
 * Each hook: pass through unless the guard is active and tracking; ask fd.max before creating
 * (enforce + on_max fail refuses with EMFILE); call the real function; record what it made.
 * errno is what the real call left (or EMFILE when refused).
 *
 * A hook must not tail-call into the guard: the fd guard counts the frames between its functions
 * and the program to start the recorded stack at the program's call, so every hook keeps its
 * own frame (the result is used after the call).
 */
#include "hooks/fd_hooks.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>


/* ---- open ---- */

static inline mode_t mode_arg(int flags, va_list ap)
{
	/* __OPEN_NEEDS_MODE: O_CREAT or O_TMPFILE read the third argument. */
	return __OPEN_NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0;
}

LG_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (!GUARDED())
		return LG_REAL(open)(path, flags, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(open)(path, flags, mode), LG_FD_FILE);
}

LG_EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (!GUARDED())
		return LG_REAL(open64)(path, flags, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(open64)(path, flags, mode), LG_FD_FILE);
}

LG_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (!GUARDED())
		return LG_REAL(openat)(dirfd, path, flags, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(openat)(dirfd, path, flags, mode), LG_FD_FILE);
}

LG_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (!GUARDED())
		return LG_REAL(openat64)(dirfd, path, flags, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(openat64)(dirfd, path, flags, mode), LG_FD_FILE);
}

LG_EXPORT int creat(const char *path, mode_t mode)
{
	if (!GUARDED())
		return LG_REAL(creat)(path, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(creat)(path, mode), LG_FD_FILE);
}

LG_EXPORT int creat64(const char *path, mode_t mode)
{
	if (!GUARDED())
		return LG_REAL(creat64)(path, mode);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(creat64)(path, mode), LG_FD_FILE);
}

/* ---- pipes, dup ---- */

/* A pipe made inside the guard is the guard's own (libunwind makes one to validate addresses,
 * and writes to it while unwinding): it goes above the fd numbers a program names by hand. */
static int own_pipe(int rc, int fds[2])
{
	if (rc == 0) {
		fds[0] = lg_fd_move_high(fds[0]);
		fds[1] = lg_fd_move_high(fds[1]);
	}
	return rc;
}

LG_EXPORT int pipe(int fds[2])
{
	if (lg_own_call() && lg_state() != LG_UNINIT)
		return own_pipe(LG_REAL(pipe)(fds), fds);
	if (!GUARDED())
		return LG_REAL(pipe)(fds);
	REFUSE_IF_FULL(2);
	return made2(LG_REAL(pipe)(fds), fds, LG_FD_PIPE);
}

LG_EXPORT int pipe2(int fds[2], int flags)
{
	if (lg_own_call() && lg_state() != LG_UNINIT)
		return own_pipe(LG_REAL(pipe2)(fds, flags), fds);
	if (!GUARDED())
		return LG_REAL(pipe2)(fds, flags);
	REFUSE_IF_FULL(2);
	return made2(LG_REAL(pipe2)(fds, flags), fds, LG_FD_PIPE);
}

/* The kind of a duplicate is its original's. */
static int kind_of(int fd)
{
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	uint32_t info = e ? atomic_load_explicit(&e->info, memory_order_relaxed) : 0;

	return info ? (int)(info & 0xffu) : LG_FD_OTHER;
}

LG_EXPORT int dup(int old)
{
	if (!GUARDED())
		return LG_REAL(dup)(old);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(dup)(old), kind_of(old));
}

/* dup2/dup3 onto an open fd close it implicitly; recording the new one over its entry replaces
 * it, so only a new number counts against fd.max. */
/* dup2/dup3 onto new: a new number counts against fd.max (an existing one is replaced, not
 * added); a held listener there is released, and the reserve fd is the program's from now on.
 * Returns -EMFILE when fd.max refuses. */
static inline __attribute__((always_inline)) int before_dup_onto(int old, int new)
{
	struct lg_fd_entry *e = lg_fd_entry(new, false);

	if ((!e || !atomic_load_explicit(&e->info, memory_order_relaxed)) && lg_fd_admit(1, 1) != 0) {
		/* Refuse only what the kernel would do: a bad old fd or a new one beyond the soft
		 * limit fail with EBADF there, and must here too. */
		struct rlimit rl;
		if (new >= 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)new < rl.rlim_cur &&
		    LG_REAL(fcntl)(old, F_GETFD) >= 0)
			return -EMFILE;
	}
	if (e && atomic_load_explicit(&e->held_until_ns, memory_order_relaxed))
		lg_fd_unhold(new, false);
	lg_fd_guard_yield(new);
	return 0;
}

LG_EXPORT int dup2(int old, int new)
{
	if (!GUARDED() || old == new)
		return LG_REAL(dup2)(old, new);
	if (LG_UNLIKELY(before_dup_onto(old, new) != 0)) {
		errno = EMFILE;
		return -1;
	}
	return made(LG_REAL(dup2)(old, new), kind_of(old));
}

LG_EXPORT int dup3(int old, int new, int flags)
{
	if (!GUARDED() || old == new)
		return LG_REAL(dup3)(old, new, flags);
	if (LG_UNLIKELY(before_dup_onto(old, new) != 0)) {
		errno = EMFILE;
		return -1;
	}
	return made(LG_REAL(dup3)(old, new, flags), kind_of(old));
}

/* fcntl's third argument is an int or a pointer; both travel in the same register on every ABI
 * glibc supports, which is how glibc's own wrapper reads it (va_arg as void *). */
LG_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (!GUARDED() || (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC))
		return LG_REAL(fcntl)(fd, cmd, arg);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(fcntl)(fd, cmd, arg), kind_of(fd));
}

LG_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	int (*real)(int, int, ...) = LG_REAL(fcntl64) ? LG_REAL(fcntl64) : LG_REAL(fcntl);
	if (!GUARDED() || (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC))
		return real(fd, cmd, arg);
	REFUSE_IF_FULL(1);
	return made(real(fd, cmd, arg), kind_of(fd));
}

/* ---- event descriptors ---- */

LG_EXPORT int eventfd(unsigned int initval, int flags)
{
	if (!GUARDED())
		return LG_REAL(eventfd)(initval, flags);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(eventfd)(initval, flags), LG_FD_EVENTFD);
}

LG_EXPORT int timerfd_create(int clockid, int flags)
{
	if (!GUARDED())
		return LG_REAL(timerfd_create)(clockid, flags);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(timerfd_create)(clockid, flags), LG_FD_TIMERFD);
}

LG_EXPORT int signalfd(int fd, const sigset_t *mask, int flags)
{
	/* fd != -1 changes an existing signalfd's mask: nothing is created. */
	if (!GUARDED() || fd != -1)
		return LG_REAL(signalfd)(fd, mask, flags);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(signalfd)(fd, mask, flags), LG_FD_SIGNALFD);
}

LG_EXPORT int inotify_init(void)
{
	if (!GUARDED())
		return LG_REAL(inotify_init)();
	REFUSE_IF_FULL(1);
	return made(LG_REAL(inotify_init)(), LG_FD_INOTIFY);
}

LG_EXPORT int inotify_init1(int flags)
{
	if (!GUARDED())
		return LG_REAL(inotify_init1)(flags);
	REFUSE_IF_FULL(1);
	return made(LG_REAL(inotify_init1)(flags), LG_FD_INOTIFY);
}

static int memfd_raw(const char *name, unsigned int flags)
{
	if (LG_REAL(memfd_create))
		return LG_REAL(memfd_create)(name, flags);
	return (int)syscall(SYS_memfd_create, name, flags);
}

LG_EXPORT int memfd_create(const char *name, unsigned int flags)
{
	if (!GUARDED())
		return memfd_raw(name, flags);
	REFUSE_IF_FULL(1);
	return made(memfd_raw(name, flags), LG_FD_MEMFD);
}

/* ---- close ---- */

LG_EXPORT int close(int fd)
{
	if (!GUARDED())
		return LG_REAL(close)(fd);
	/* Never let the program close the guard's own descriptors (a daemon closing "all fds"
	 * would otherwise take them): it is told they are closed. */
	if (LG_UNLIKELY(lg_fd_guard_owns(fd)))
		return 0;
	int saved = errno;
	lg_fd_on_close(fd);
	lg_guardian_poll();
	errno = saved;
	return LG_REAL(close)(fd);
}

static int close_range_raw(unsigned int first, unsigned int last, int flags)
{
	if (LG_REAL(close_range))
		return LG_REAL(close_range)(first, last, flags);
	return (int)syscall(SYS_close_range, first, last, flags);
}

/* The guard's descriptors were all made at init, when numbers are small: below this bound. */
#define GUARD_FD_BOUND 4096u

LG_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	/* CLOSE_RANGE_CLOEXEC only marks them (ours are close-on-exec already). */
	if (!GUARDED() || (flags & CLOSE_RANGE_CLOEXEC) || first > last)
		return close_range_raw(first, last, flags);
	/* closefrom(3) and daemons close "everything above 2": close around the guard's own. */
	int rc = 0, err = 0;
	unsigned int lo = first, end = last < GUARD_FD_BOUND ? last : GUARD_FD_BOUND - 1;
	for (unsigned int fd = first; fd <= end; fd++) {
		if (!lg_fd_guard_owns((int)fd))
			continue;
		if (fd > lo && close_range_raw(lo, fd - 1, flags) != 0 && !err)
			err = errno;
		lo = fd + 1;
	}
	if (lo <= last && lo >= first && close_range_raw(lo, last, flags) != 0 && !err)
		err = errno;
	if (err) {
		rc = -1;
		errno = err;
	}
	if (rc == 0) {
		int saved = errno;
		lg_fd_on_close_range(first, last, flags);
		errno = saved;
	}
	return rc;
}

/* glibc's closefrom calls its internal close_range, never the exported one: without this hook
 * it would close the guard's descriptors, and a number then reused by the program would receive
 * what was meant for them (libunwind writes to its validation pipe). */
LG_EXPORT void closefrom(int lowfd)
{
	unsigned int first = lowfd < 0 ? 0u : (unsigned int)lowfd;

	if (close_range(first, ~0u, 0) == 0)
		return;
	/* No close_range (kernel < 5.9): one close at a time, as glibc's own fallback does. */
	int saved = errno;
	long max = sysconf(_SC_OPEN_MAX);
	for (long fd = first; fd < max; fd++)
		close((int)fd);
	errno = saved;
}

/* ---- limits: fd.max 0 follows RLIMIT_NOFILE ---- */

LG_EXPORT int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	int rc = LG_REAL(setrlimit)(resource, rl);

	if (rc == 0 && GUARDED()) {
		int saved = errno;
		lg_fd_on_rlimit((int)resource);
		errno = saved;
	}
	return rc;
}

/* struct rlimit64 and struct rlimit are the same on LP64: programs built with
 * _FILE_OFFSET_BITS=64 call the 64 names. */
LG_EXPORT int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	return setrlimit(resource, (const struct rlimit *)(const void *)rl);
}

LG_EXPORT int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *new_rl,
		      struct rlimit *old)
{
	int rc = LG_REAL(prlimit)(pid, resource, new_rl, old);

	if (rc == 0 && new_rl && (pid == 0 || pid == getpid()) && GUARDED()) {
		int saved = errno;
		lg_fd_on_rlimit((int)resource);
		errno = saved;
	}
	return rc;
}

LG_EXPORT int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64 *new_rl,
			struct rlimit64 *old)
{
	return prlimit(pid, resource, (const struct rlimit *)(const void *)new_rl,
		       (struct rlimit *)(void *)old);
}
