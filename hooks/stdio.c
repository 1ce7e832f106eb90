/* Descriptors that libc opens and closes inside itself, through internal symbols no hook sees:
 * fopen and fclose, opendir and closedir, popen and pclose, tmpfile, the mkstemp family, and the
 * fortified opens (__open_2: what `open` becomes in a program built with _FORTIFY_SOURCE when its
 * flags are not a constant). Without these hooks such an fd is counted only as `untracked` (from
 * /proc/self/fd) and has no creation site; a FILE leaked by a function is the most common fd
 * leak of all.
 *
 * The same pattern as hooks/fd.c: pass through unless the fd guard is tracking; ask fd.max first
 * (a refused fopen returns NULL with EMFILE, as glibc's does when the kernel refuses); call the
 * real function; record the descriptor it holds. A closing call forgets the descriptor *before*
 * the real call closes it, so a number that another thread gets meanwhile keeps its new entry.
 * Each hook keeps its own frame (the result is used after the call): the fd guard counts one
 * frame of ours above the program.
 */
#include "hooks/fd_hooks.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* `real`: the real function. These have no raw system call to fall back on while another
 * thread resolves the table: wait for it (microseconds, once per process). Inside the resolution
 * itself (this thread is in dlsym), fail with ENOSYS. */
#define REAL_OR(name, fail)                                                                        \
	__typeof__(lg_real.name) real = LG_REAL(name);                                             \
	while (LG_UNLIKELY(!real) && !lg_tls.busy &&                                               \
	       !atomic_load_explicit(&lg_real_ready, memory_order_acquire)) {                      \
		sched_yield();                                                                     \
		real = LG_REAL(name);                                                              \
	}                                                                                          \
	if (LG_UNLIKELY(!real)) {                                                                  \
		errno = ENOSYS;                                                                    \
		return fail;                                                                       \
	}

/* The descriptor behind a stream or directory the program passes in, -1 for none (errno kept:
 * fclose of an fmemopen stream must not leave EBADF behind). The pointer
 * is laundered: glibc declares some of these arguments nonnull, which would let the compiler drop
 * the test, and closedir(NULL) must still reach glibc (EINVAL). */
static inline int stream_fd(FILE *f)
{
	__asm__("" : "+r"(f));
	if (!f)
		return -1;
	int saved = errno, fd = fileno(f);   /* EBADF for a stream without a descriptor */
	errno = saved;
	return fd;
}

static inline int dir_fd(DIR *d)
{
	__asm__("" : "+r"(d));
	return d ? dirfd(d) : -1;
}

/* Forget fd (>= 0) before a closing call closes it. */
static inline void closing(int fd)
{
	int saved = errno;

	if (fd >= 0)
		lg_fd_on_close(fd);
	errno = saved;
}

/* A hook for a call that opens a stream (or directory) of one descriptor: fd.max first, then
 * the real call, then its descriptor (fd_of) recorded. */
#define STREAM_HOOK(type, name, params, args, fd_of, kind)                                         \
	LG_EXPORT type *name params                                                                \
	{                                                                                          \
		REAL_OR(name, NULL)                                                                \
                                                                                                   \
		if (!GUARDED())                                                                    \
			return real args;                                                          \
		REFUSE_IF_FULL_OR(1, NULL);                                                        \
		type *r = real args;                                                               \
		made(r ? fd_of(r) : -1, kind);   /* a stream made always has its descriptor */     \
		return r;                                                                          \
	}

/* A hook for a call that closes a stream's (or directory's) descriptor: forgotten first. */
#define CLOSE_HOOK(type, name, fd_of)                                                              \
	LG_EXPORT int name(type *stream)                                                           \
	{                                                                                          \
		REAL_OR(name, -1)                                                                  \
                                                                                                   \
		if (GUARDED())                                                                     \
			closing(fd_of(stream));                                                    \
		return real(stream);                                                               \
	}

/* A hook for a call that returns a new descriptor. */
#define FD_HOOK(name, params, args)                                                                \
	LG_EXPORT int name params                                                                  \
	{                                                                                          \
		REAL_OR(name, -1)                                                                  \
                                                                                                   \
		if (!GUARDED())                                                                    \
			return real args;                                                          \
		REFUSE_IF_FULL(1);                                                                 \
		return made(real args, LG_FD_FILE);                                                \
	}

/* ---- streams ---- */

STREAM_HOOK(FILE, fopen, (const char *path, const char *mode), (path, mode), fileno, LG_FD_FILE)
STREAM_HOOK(FILE, fopen64, (const char *path, const char *mode), (path, mode), fileno, LG_FD_FILE)
STREAM_HOOK(FILE, tmpfile, (void), (), fileno, LG_FD_FILE)
STREAM_HOOK(FILE, tmpfile64, (void), (), fileno, LG_FD_FILE)
STREAM_HOOK(FILE, popen, (const char *command, const char *how), (command, how), fileno,
	    LG_FD_PIPE)
/* A stream without a descriptor (fmemopen, fopencookie) has fileno -1: nothing to forget. */
CLOSE_HOOK(FILE, fclose, stream_fd)
CLOSE_HOOK(FILE, pclose, stream_fd)

/* freopen closes the stream's descriptor and opens another (often the same number: stdout
 * reopened on a file keeps fd 1). */
#define FREOPEN_HOOK(name)                                                                         \
	LG_EXPORT FILE *name(const char *path, const char *mode, FILE *stream)                     \
	{                                                                                          \
		REAL_OR(name, NULL)                                                                \
                                                                                                   \
		if (!GUARDED())                                                                    \
			return real(path, mode, stream);                                           \
		closing(stream_fd(stream));                                                        \
		FILE *f = real(path, mode, stream);                                                \
		made(f ? fileno(f) : -1, LG_FD_FILE);                                              \
		return f;                                                                          \
	}
FREOPEN_HOOK(freopen)
FREOPEN_HOOK(freopen64)

/* ---- directories ---- */

STREAM_HOOK(DIR, opendir, (const char *name), (name), dirfd, LG_FD_FILE)
CLOSE_HOOK(DIR, closedir, dir_fd)

/* ---- temporary files and fortified opens ---- */

FD_HOOK(mkstemp, (char *tmpl), (tmpl))
FD_HOOK(mkstemp64, (char *tmpl), (tmpl))
FD_HOOK(mkostemp, (char *tmpl, int flags), (tmpl, flags))
FD_HOOK(mkostemp64, (char *tmpl, int flags), (tmpl, flags))
FD_HOOK(mkstemps, (char *tmpl, int suffixlen), (tmpl, suffixlen))
FD_HOOK(mkstemps64, (char *tmpl, int suffixlen), (tmpl, suffixlen))
FD_HOOK(mkostemps, (char *tmpl, int suffixlen, int flags), (tmpl, suffixlen, flags))
FD_HOOK(mkostemps64, (char *tmpl, int suffixlen, int flags), (tmpl, suffixlen, flags))
FD_HOOK(__open_2, (const char *path, int flags), (path, flags))
FD_HOOK(__open64_2, (const char *path, int flags), (path, flags))
FD_HOOK(__openat_2, (int dirfd, const char *path, int flags), (dirfd, path, flags))
FD_HOOK(__openat64_2, (int dirfd, const char *path, int flags), (dirfd, path, flags))
