/* libguard's public C API, for programs that link libguard instead of preloading it (a C or C++
 * program linked against libguard.a, a Go program through cgo), and for preloaded programs that
 * want a report or a rate limiter of their own.
 *
 * Starting. A preloaded libguard (LD_PRELOAD=.../libguard.so) starts by itself, before main, with
 * $GUARD_POLICY or the embedded default policy. A linked one guards nothing until the program
 * calls guard_start(): until then every hook passes straight through to libc, so the program
 * chooses its policy and the moment the guard starts. Allocations made before guard_start() are
 * not in the heap profile; descriptors opened before it are counted as inherited, without a site.
 *
 * Linking. `pkg-config --cflags --libs libguard` (with or without --static) links libguard.a
 * whole: the interposed libc symbols must come from the executable, and nothing in the program
 * references them, so the archive is wrapped in -Wl,--whole-archive. See docs/linking.md.
 *
 * What is seen. Interposition sees the calls that go through the dynamic linker to libc: the
 * program's C and C++ code, and the libraries it calls. A runtime that makes its own system calls
 * (Go: goroutines' sockets, timers, the Go heap) is invisible; only its C code is guarded.
 *
 * Threads and signals. Every function here is thread-safe and may be called before guard_start()
 * (they then do nothing, or, for the limiter, work without the runtime). None is
 * async-signal-safe: do not call them from a signal handler.
 *
 * Errors are returned as negative errno values (0 is success), as the contract in DESIGN.md says;
 * guard_limiter_new() is the exception, returning NULL and setting errno like malloc(3).
 */
#ifndef GUARD_H
#define GUARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start the guard with the policy at policy_path, or, for NULL (or ""), $GUARD_POLICY, else the
 * embedded default policy. $GUARD_REPORT_DIR, $GUARD_STRICT and $GUARD_LOG apply as when
 * preloaded. Returns:
 *   0          started, or already running (a preloaded guard, a second call); a path that
 *              differs from the running policy is then ignored with one warning on stderr
 *   -EINVAL    the policy is invalid: one line on stderr says where and why, and the program
 *              runs on unguarded (with GUARD_STRICT=1 the process exits with status 2 instead)
 *   -ENOENT, -EACCES, ...  the policy file cannot be read (also unguarded)
 *   -EALREADY  another thread is starting the guard right now
 *   -ECANCELED the guard is off for good: GUARD_DISABLE=1, or an earlier start failed
 * A start is attempted once: after a failure the process stays unguarded. */
int guard_start(const char *policy_path);

/* Write a report now, in every format the policy's "report.formats" asks for, to the report
 * directory ($GUARD_REPORT_DIR, "report.dir", else the working directory if writable, else /tmp)
 * under the policy's "report.name". The report's guard.reason is "api" whatever reason says (the
 * report schema's reasons are exit|interval|signal|api); reason is only logged, at debug level,
 * and may be NULL. Reports are written one at a time (a concurrent call waits) and atomically
 * (temp file + rename). Returns 0, -EAGAIN when the guard is not started, or the -errno of the
 * write (-ENOSPC, -EACCES, ...). A report with the same name replaces the previous one: with the
 * default name "guard-%e-%p", the exit report replaces an api report of the same process. */
int guard_report(const char *reason);

/* A token bucket (GCRA: one 64-bit word updated with a CAS, no lock, no allocation per call),
 * independent of the policy's "limits" and usable whether or not the guard is started.
 *
 * guard_limiter_new: rate_per_s tokens a second, at most burst at once (a new limiter is full).
 * Returns NULL with errno EINVAL for rate_per_s <= 0, burst < 1, an infinite or NaN argument,
 * or ENOMEM. The limiter's memory is the guard's own, not the program's heap. */
typedef struct guard_limiter guard_limiter;
guard_limiter *guard_limiter_new(double rate_per_s, double burst);

/* Take n tokens at once. Returns 0 when they were available (they are taken), or the number of
 * nanoseconds until they would be (nothing is taken: call again after sleeping that long, or
 * shed the work). n > burst can never be allowed: INT64_MAX. Example: a new limiter of 100/s,
 * burst 5 gives 0 for take(l, 5), then about 10000000 (10 ms) for take(l, 1).
 * Never blocks, never allocates; safe to share between threads. l NULL: INT64_MAX. */
int64_t guard_limiter_take(guard_limiter *l, uint32_t n);

/* Free a limiter (NULL is a no-op). No other thread may be using it. */
void guard_limiter_free(guard_limiter *l);

/* Figures of the running guard. */
struct guard_stats {
	uint64_t heap_live_bytes;   /* live heap bytes allocated since guard_start, estimated from
	                             * samples (exact with "heap.sample_bytes": 1) */
	uint64_t fds_open;          /* descriptors open, as the fd guard tracks them */
	uint64_t threads_live;      /* threads created since guard_start that have not ended */
	uint64_t violations;        /* violations recorded so far, all kinds */
};
/* Fill *out; a guard that is off (or not started) gives zeros. out NULL is a no-op. */
void guard_stats(struct guard_stats *out);

#ifdef __cplusplus
}
#endif

#endif
