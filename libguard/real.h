/* The real functions behind the hooks.
 *
 * One table, filled with dlsym(RTLD_NEXT) under the busy flag, either by the constructor or by
 * the first hook that needs it (a hook can run before the constructor, from another library's
 * constructor). A REQUIRED symbol that is missing is one error at init; an OPTIONAL one (newer
 * glibc only) stays NULL and its hook passes through to the raw syscall or fails with ENOSYS.
 *
 * Included by internal.h; add a function here and a hook in hooks/, nothing else.
 */
#ifndef LG_REAL_H
#define LG_REAL_H

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct signalfd_siginfo;
struct rlimit64;

/* X(REQUIRED|OPTIONAL, return type, name, (parameters)) */
#define LG_REAL_FUNCS(X)                                                                          \
	/* sockets */                                                                             \
	X(REQUIRED, int, socket, (int, int, int))                                                 \
	X(REQUIRED, int, socketpair, (int, int, int, int *))                                      \
	X(REQUIRED, int, accept, (int, struct sockaddr *, socklen_t *))                           \
	X(REQUIRED, int, accept4, (int, struct sockaddr *, socklen_t *, int))                     \
	X(REQUIRED, int, connect, (int, const struct sockaddr *, socklen_t))                      \
	X(REQUIRED, int, listen, (int, int))                                                      \
	X(REQUIRED, int, shutdown, (int, int))                                                    \
	X(REQUIRED, int, setsockopt, (int, int, int, const void *, socklen_t))                    \
	/* descriptors */                                                                         \
	X(REQUIRED, int, close, (int))                                                            \
	X(OPTIONAL, int, close_range, (unsigned, unsigned, int))                                  \
	X(REQUIRED, int, open, (const char *, int, ...))                                          \
	X(REQUIRED, int, open64, (const char *, int, ...))                                        \
	X(REQUIRED, int, openat, (int, const char *, int, ...))                                   \
	X(REQUIRED, int, openat64, (int, const char *, int, ...))                                 \
	X(REQUIRED, int, creat, (const char *, mode_t))                                           \
	X(REQUIRED, int, creat64, (const char *, mode_t))                                         \
	X(REQUIRED, int, pipe, (int *))                                                           \
	X(REQUIRED, int, pipe2, (int *, int))                                                     \
	X(REQUIRED, int, dup, (int))                                                              \
	X(REQUIRED, int, dup2, (int, int))                                                        \
	X(REQUIRED, int, dup3, (int, int, int))                                                   \
	X(REQUIRED, int, fcntl, (int, int, ...))                                                  \
	X(OPTIONAL, int, fcntl64, (int, int, ...))                                                \
	X(REQUIRED, int, eventfd, (unsigned, int))                                                \
	X(REQUIRED, int, timerfd_create, (int, int))                                              \
	X(REQUIRED, int, signalfd, (int, const sigset_t *, int))                                  \
	X(REQUIRED, int, inotify_init, (void))                                                    \
	X(REQUIRED, int, inotify_init1, (int))                                                    \
	X(OPTIONAL, int, memfd_create, (const char *, unsigned))                                  \
	X(REQUIRED, int, setrlimit, (__rlimit_resource_t, const struct rlimit *))                \
	X(REQUIRED, int, prlimit, (pid_t, __rlimit_resource_t, const struct rlimit *,            \
				   struct rlimit *))                                               \
	/* event loops */                                                                         \
	X(REQUIRED, int, epoll_create, (int))                                                     \
	X(REQUIRED, int, epoll_create1, (int))                                                    \
	X(REQUIRED, int, epoll_ctl, (int, int, int, struct epoll_event *))                        \
	X(REQUIRED, int, epoll_wait, (int, struct epoll_event *, int, int))                       \
	X(REQUIRED, int, epoll_pwait, (int, struct epoll_event *, int, int, const sigset_t *))    \
	X(OPTIONAL, int, epoll_pwait2,                                                            \
	  (int, struct epoll_event *, int, const struct timespec *, const sigset_t *))            \
	X(REQUIRED, int, poll, (struct pollfd *, nfds_t, int))                                    \
	X(REQUIRED, int, ppoll,                                                                   \
	  (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))                   \
	X(REQUIRED, int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *))           \
	X(REQUIRED, int, pselect,                                                                 \
	  (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *))         \
	/* sleeps */                                                                              \
	X(REQUIRED, unsigned, sleep, (unsigned))                                                  \
	X(REQUIRED, int, usleep, (useconds_t))                                                    \
	X(REQUIRED, int, nanosleep, (const struct timespec *, struct timespec *))                 \
	X(REQUIRED, int, clock_nanosleep,                                                         \
	  (clockid_t, int, const struct timespec *, struct timespec *))                           \
	/* clocks */                                                                              \
	X(REQUIRED, int, clock_gettime, (clockid_t, struct timespec *))                           \
	X(REQUIRED, int, gettimeofday, (struct timeval *, void *))                                \
	X(REQUIRED, time_t, time, (time_t *))                                                     \
	X(REQUIRED, int, timespec_get, (struct timespec *, int))                                  \
	/* threads and locks */                                                                   \
	X(REQUIRED, int, pthread_create,                                                          \
	  (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))                       \
	X(REQUIRED, int, pthread_join, (pthread_t, void **))                                      \
	X(REQUIRED, int, pthread_tryjoin_np, (pthread_t, void **))                                \
	X(REQUIRED, int, pthread_timedjoin_np, (pthread_t, void **, const struct timespec *))     \
	X(REQUIRED, int, pthread_detach, (pthread_t))                                             \
	X(REQUIRED, void, pthread_exit, (void *))                                                 \
	X(REQUIRED, int, pthread_mutex_lock, (pthread_mutex_t *))                                 \
	X(REQUIRED, int, pthread_mutex_trylock, (pthread_mutex_t *))                              \
	X(REQUIRED, int, pthread_mutex_timedlock, (pthread_mutex_t *, const struct timespec *))   \
	X(OPTIONAL, int, pthread_mutex_clocklock,                                                 \
	  (pthread_mutex_t *, clockid_t, const struct timespec *))                                \
	X(REQUIRED, int, pthread_mutex_unlock, (pthread_mutex_t *))                               \
	X(REQUIRED, int, pthread_rwlock_rdlock, (pthread_rwlock_t *))                             \
	X(REQUIRED, int, pthread_rwlock_wrlock, (pthread_rwlock_t *))                             \
	X(REQUIRED, int, pthread_rwlock_tryrdlock, (pthread_rwlock_t *))                          \
	X(REQUIRED, int, pthread_rwlock_trywrlock, (pthread_rwlock_t *))                          \
	X(REQUIRED, int, pthread_rwlock_timedrdlock,                                              \
	  (pthread_rwlock_t *, const struct timespec *))                                          \
	X(REQUIRED, int, pthread_rwlock_timedwrlock,                                              \
	  (pthread_rwlock_t *, const struct timespec *))                                          \
	X(OPTIONAL, int, pthread_rwlock_clockrdlock,                                              \
	  (pthread_rwlock_t *, clockid_t, const struct timespec *))                               \
	X(OPTIONAL, int, pthread_rwlock_clockwrlock,                                              \
	  (pthread_rwlock_t *, clockid_t, const struct timespec *))                               \
	X(REQUIRED, int, pthread_rwlock_unlock, (pthread_rwlock_t *))                             \
	/* descriptors opened and closed inside libc (hooks/stdio.c) */                            \
	X(REQUIRED, FILE *, fopen, (const char *, const char *))                                  \
	X(REQUIRED, FILE *, fopen64, (const char *, const char *))                                \
	X(REQUIRED, FILE *, freopen, (const char *, const char *, FILE *))                        \
	X(REQUIRED, FILE *, freopen64, (const char *, const char *, FILE *))                      \
	X(REQUIRED, FILE *, tmpfile, (void))                                                      \
	X(REQUIRED, FILE *, tmpfile64, (void))                                                    \
	X(REQUIRED, FILE *, popen, (const char *, const char *))                                  \
	X(REQUIRED, int, pclose, (FILE *))                                                        \
	X(REQUIRED, int, fclose, (FILE *))                                                        \
	X(REQUIRED, DIR *, opendir, (const char *))                                               \
	X(REQUIRED, int, closedir, (DIR *))                                                       \
	X(REQUIRED, int, mkstemp, (char *))                                                       \
	X(REQUIRED, int, mkstemp64, (char *))                                                     \
	X(REQUIRED, int, mkostemp, (char *, int))                                                 \
	X(REQUIRED, int, mkostemp64, (char *, int))                                               \
	X(REQUIRED, int, mkstemps, (char *, int))                                                 \
	X(REQUIRED, int, mkstemps64, (char *, int))                                               \
	X(REQUIRED, int, mkostemps, (char *, int, int))                                           \
	X(REQUIRED, int, mkostemps64, (char *, int, int))                                         \
	X(REQUIRED, int, __open_2, (const char *, int))                                           \
	X(REQUIRED, int, __open64_2, (const char *, int))                                         \
	X(REQUIRED, int, __openat_2, (int, const char *, int))                                    \
	X(REQUIRED, int, __openat64_2, (int, const char *, int))                                  \
	/* processes and the loader */                                                            \
	X(REQUIRED, void *, dlopen, (const char *, int))                                          \
	X(REQUIRED, int, dlclose, (void *))

#define LG_REAL_FIELD(req, ret, name, params) ret(*name) params;
struct lg_real_table {
	LG_REAL_FUNCS(LG_REAL_FIELD)
};
#undef LG_REAL_FIELD

extern struct lg_real_table lg_real;
extern _Atomic int lg_real_ready;

/* Resolve every entry (idempotent, thread-safe; a nested call while resolving returns at once
 * and leaves unresolved entries NULL). Returns the number of missing REQUIRED symbols. */
int lg_real_init(void);

/* The pointer to call for `name`, resolving the table on first use. Can be NULL while the table
 * is being resolved (a hook re-entered from dlsym) or for a missing OPTIONAL symbol. */
#define LG_REAL(name)                                                                             \
	(LG_LIKELY(atomic_load_explicit(&lg_real_ready, memory_order_acquire)) ? lg_real.name     \
									       : (lg_real_init(), lg_real.name))

#endif
