/* libguard's public C API, for programs that link libguard (static or shared, e.g. from Go
 * through cgo) instead of preloading it.
 *
 * A preloaded libguard starts by itself, before main, with $GUARD_POLICY or the embedded default
 * policy. A linked one guards nothing until the program calls guard_start(): the program chooses
 * its policy. Every function is thread-safe.
 */
#ifndef GUARD_H
#define GUARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start the guard with the policy at policy_path (NULL: $GUARD_POLICY, else the embedded
 * default). Returns 0 (also when it was already started), -EINVAL for an invalid policy (one
 * line on stderr says why; the program runs on unguarded), or another -errno. */
int guard_start(const char *policy_path);

/* Write a report now, with reason "api", in every format the policy asks for.
 * Returns 0, -EAGAIN when the guard is not started, or -errno from writing. */
int guard_report(const char *reason);

/* A token bucket (GCRA: one 64-bit word updated with a CAS, no lock): rate_per_s tokens a
 * second, at most burst at once. NULL with errno EINVAL for rate <= 0, burst < 1, or NaN. */
typedef struct guard_limiter guard_limiter;
guard_limiter *guard_limiter_new(double rate_per_s, double burst);
/* Take n tokens: 0 = allowed now (and taken); > 0 = nanoseconds until they would be (nothing
 * taken). n > burst can never be allowed: returns INT64_MAX. */
int64_t guard_limiter_take(guard_limiter *l, uint32_t n);
void guard_limiter_free(guard_limiter *l);

struct guard_stats {
	uint64_t heap_live_bytes;   /* estimated from samples (exact with heap.sample_bytes 1) */
	uint64_t fds_open;
	uint64_t threads_live;
	uint64_t violations;
};
/* Current figures; zeros for guards that are off or not started. */
void guard_stats(struct guard_stats *out);

#ifdef __cplusplus
}
#endif

#endif
