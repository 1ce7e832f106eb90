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

#define REFUSE_STREAM_IF_FULL()                                                                    \
	do {                                                                                       \
		if (LG_UNLIKELY(lg_fd_admit(1, 1) != 0)) {                                         \
			errno = EMFILE;                                                            \
			return NULL;                                                               \
		}                                                                                  \
	} while (0)

/* Record the descriptor behind a stream the real call returned (NULL: its failure). */
static inline __attribute__((always_inline)) void *made_stream(void *stream, int fd, int kind)
{
	int err = errno;

	if (stream && fd >= 0)
		lg_fd_on_create(fd, kind, 0, 1);
	else if (!stream)
		lg_fd_after_create(-1, err, 1);
	lg_guardian_poll();
	errno = err;
	return stream;
}

/* The descriptor behind a stream or directory the program passes in, -1 for none. The pointer
 * is laundered: glibc declares some of these arguments nonnull, which would let the compiler drop
 * the test, and closedir(NULL) must still reach glibc (EINVAL). */
static inline int stream_fd(FILE *f)
{
	__asm__("" : "+r"(f));
	return f ? fileno(f) : -1;
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

/* ---- streams ---- */

LG_EXPORT FILE *fopen(const char *path, const char *mode)
{
	REAL_OR(fopen, NULL)

	if (!GUARDED())
		return real(path, mode);
	REFUSE_STREAM_IF_FULL();
	FILE *f = real(path, mode);
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

LG_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	REAL_OR(fopen64, NULL)

	if (!GUARDED())
		return real(path, mode);
	REFUSE_STREAM_IF_FULL();
	FILE *f = real(path, mode);
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

/* freopen closes the stream's descriptor and opens another (often the same number: stdout
 * reopened on a file keeps fd 1). */
LG_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
	REAL_OR(freopen, NULL)

	if (!GUARDED())
		return real(path, mode, stream);
	closing(stream_fd(stream));
	FILE *f = real(path, mode, stream);
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

LG_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
	REAL_OR(freopen64, NULL)

	if (!GUARDED())
		return real(path, mode, stream);
	closing(stream_fd(stream));
	FILE *f = real(path, mode, stream);
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

LG_EXPORT FILE *tmpfile(void)
{
	REAL_OR(tmpfile, NULL)

	if (!GUARDED())
		return real();
	REFUSE_STREAM_IF_FULL();
	FILE *f = real();
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

LG_EXPORT FILE *tmpfile64(void)
{
	REAL_OR(tmpfile64, NULL)

	if (!GUARDED())
		return real();
	REFUSE_STREAM_IF_FULL();
	FILE *f = real();
	return made_stream(f, f ? fileno(f) : -1, LG_FD_FILE);
}

LG_EXPORT FILE *popen(const char *command, const char *type)
{
	REAL_OR(popen, NULL)

	if (!GUARDED())
		return real(command, type);
	REFUSE_STREAM_IF_FULL();
	FILE *f = real(command, type);
	return made_stream(f, f ? fileno(f) : -1, LG_FD_PIPE);
}

LG_EXPORT int pclose(FILE *stream)
{
	REAL_OR(pclose, -1)

	if (GUARDED())
		closing(stream_fd(stream));
	return real(stream);
}

/* A stream without a descriptor (fmemopen, fopencookie) has fileno -1: nothing to forget. */
LG_EXPORT int fclose(FILE *stream)
{
	REAL_OR(fclose, -1)

	if (GUARDED())
		closing(stream_fd(stream));
	return real(stream);
}

/* ---- directories ---- */

LG_EXPORT DIR *opendir(const char *name)
{
	REAL_OR(opendir, NULL)

	if (!GUARDED())
		return real(name);
	REFUSE_STREAM_IF_FULL();
	DIR *d = real(name);
	return made_stream(d, d ? dirfd(d) : -1, LG_FD_FILE);
}

LG_EXPORT int closedir(DIR *d)
{
	REAL_OR(closedir, -1)

	if (GUARDED())
		closing(dir_fd(d));
	return real(d);
}

/* ---- temporary files and fortified opens ---- */

#define MADE_FD(call)                                                                              \
	do {                                                                                       \
		REFUSE_IF_FULL(1);                                                                 \
		return made(call, LG_FD_FILE);                                                     \
	} while (0)

LG_EXPORT int mkstemp(char *tmpl)
{
	REAL_OR(mkstemp, -1)

	if (!GUARDED())
		return real(tmpl);
	MADE_FD(real(tmpl));
}

LG_EXPORT int mkstemp64(char *tmpl)
{
	REAL_OR(mkstemp64, -1)

	if (!GUARDED())
		return real(tmpl);
	MADE_FD(real(tmpl));
}

LG_EXPORT int mkostemp(char *tmpl, int flags)
{
	REAL_OR(mkostemp, -1)

	if (!GUARDED())
		return real(tmpl, flags);
	MADE_FD(real(tmpl, flags));
}

LG_EXPORT int mkostemp64(char *tmpl, int flags)
{
	REAL_OR(mkostemp64, -1)

	if (!GUARDED())
		return real(tmpl, flags);
	MADE_FD(real(tmpl, flags));
}

LG_EXPORT int mkstemps(char *tmpl, int suffixlen)
{
	REAL_OR(mkstemps, -1)

	if (!GUARDED())
		return real(tmpl, suffixlen);
	MADE_FD(real(tmpl, suffixlen));
}

LG_EXPORT int mkstemps64(char *tmpl, int suffixlen)
{
	REAL_OR(mkstemps64, -1)

	if (!GUARDED())
		return real(tmpl, suffixlen);
	MADE_FD(real(tmpl, suffixlen));
}

LG_EXPORT int mkostemps(char *tmpl, int suffixlen, int flags)
{
	REAL_OR(mkostemps, -1)

	if (!GUARDED())
		return real(tmpl, suffixlen, flags);
	MADE_FD(real(tmpl, suffixlen, flags));
}

LG_EXPORT int mkostemps64(char *tmpl, int suffixlen, int flags)
{
	REAL_OR(mkostemps64, -1)

	if (!GUARDED())
		return real(tmpl, suffixlen, flags);
	MADE_FD(real(tmpl, suffixlen, flags));
}

LG_EXPORT int __open_2(const char *path, int flags)
{
	REAL_OR(__open_2, -1)

	if (!GUARDED())
		return real(path, flags);
	MADE_FD(real(path, flags));
}

LG_EXPORT int __open64_2(const char *path, int flags)
{
	REAL_OR(__open64_2, -1)

	if (!GUARDED())
		return real(path, flags);
	MADE_FD(real(path, flags));
}

LG_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	REAL_OR(__openat_2, -1)

	if (!GUARDED())
		return real(dirfd, path, flags);
	MADE_FD(real(dirfd, path, flags));
}

LG_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	REAL_OR(__openat64_2, -1)

	if (!GUARDED())
		return real(dirfd, path, flags);
	MADE_FD(real(dirfd, path, flags));
}
