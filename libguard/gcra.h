/* GCRA (the generic cell rate algorithm): a token bucket kept as one 64-bit word.
 *
 * The bucket is its theoretical arrival time (TAT): the moment at which it would be full again if
 * nothing more were taken. Taking n tokens moves TAT n emission intervals (T = 1e9 / rate ns)
 * forward from max(TAT, now); the take is allowed if TAT then runs at most `limit` = T * burst ahead
 * of now. This is the usual GCRA test "TAT - now <= tau" with tau = T * (burst - 1), applied to the
 * TAT after the take (hence tau + T): from a full bucket, k tokens leave TAT = now + k*T, which
 * passes exactly for k <= burst, and the next single token is due T later. A bucket that stood idle
 * has TAT in the past; max(TAT, now) forgets that past, so idle time never hoards credit beyond
 * burst.
 *
 * Concurrency: the decision is recomputed from the TAT that the failed CAS just loaded, and TAT only
 * ever moves forward (the new value is >= the one it replaces). A thread that read the clock before
 * another thread took tokens therefore sees the later TAT and, with its older `now`, finds the
 * bucket no fuller than it really is: a stale timestamp can delay a take, never admit one more.
 * No lock, no syscall; the caller reads the clock (lg_now_ns() in the library, a fake in tests).
 *
 * Resolution is one nanosecond: T is 1e9 / rate rounded to the nearest ns, so the rate is off by at
 * most 0.5 / T relative (1e-4 up to 200,000 tokens per second, 1% at 20 million), and rates above
 * 1e9 per second behave as 1e9 per second. Spans are capped at 2^62 ns (146 years), so
 * now + limit + n*T never wraps (a monotonic clock stays below 2^63 ns for 292 years of uptime).
 */
#ifndef LG_GCRA_H
#define LG_GCRA_H

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

/* Tests define this to run code between the load of TAT and the CAS that replaces it (to race
 * another taker deterministically); it is empty in the library. */
#ifndef LG_GCRA_RACE_POINT
#define LG_GCRA_RACE_POINT(g) ((void)0)
#endif

#define LG_GCRA_MAX_SPAN (UINT64_C(1) << 62)
#define LG_GCRA_NEVER UINT64_MAX

struct lg_gcra {
	_Atomic uint64_t tat;   /* theoretical arrival time, ns of the clock passed to take */
	uint64_t interval;      /* T: ns per token, 1 .. LG_GCRA_MAX_SPAN */
	uint64_t limit;         /* tau + T = T * burst: how far TAT may run ahead of now after a take */
	uint64_t max_n;         /* limit / T = floor(burst): the largest take that can ever pass */
};

/* rate tokens per second, at most burst at once. 0, or -EINVAL for rate <= 0, burst < 1, NaN or
 * infinity. The bucket starts full. */
static inline int lg_gcra_init(struct lg_gcra *g, double rate, double burst)
{
	if (!isfinite(rate) || !isfinite(burst) || !(rate > 0) || !(burst >= 1))
		return -EINVAL;
	double t = 1e9 / rate + 0.5;
	uint64_t interval = t < 1 ? 1 : t >= (double)LG_GCRA_MAX_SPAN ? LG_GCRA_MAX_SPAN : (uint64_t)t;

	/* limit = floor(T * burst), with the whole part of burst multiplied in integers: then
	 * n * T <= limit holds exactly for every whole n <= burst, whatever double rounding does to
	 * the fraction. */
	double whole = floor(burst);
	uint64_t limit;
	if (whole >= (double)(LG_GCRA_MAX_SPAN / interval)) {
		limit = LG_GCRA_MAX_SPAN;
	} else {
		limit = (uint64_t)whole * interval;
		double frac = (burst - whole) * (double)interval;   /* < interval */
		limit += (uint64_t)frac;
		if (limit > LG_GCRA_MAX_SPAN)
			limit = LG_GCRA_MAX_SPAN;
	}
	atomic_init(&g->tat, 0);
	g->interval = interval;
	g->limit = limit;
	g->max_n = limit / interval;
	return 0;
}

/* Take n tokens at time now (ns). Returns 0 when they were taken, else the ns until they would be
 * (nothing taken), or LG_GCRA_NEVER when n exceeds burst. n == 0 always passes. */
static inline uint64_t lg_gcra_take(struct lg_gcra *g, uint32_t n, uint64_t now)
{
	if (n > g->max_n)
		return LG_GCRA_NEVER;
	uint64_t cost = (uint64_t)n * g->interval;   /* <= limit <= 2^62 */
	uint64_t tat = atomic_load_explicit(&g->tat, memory_order_relaxed);

	if (n == 0)
		return 0;
	for (;;) {
		uint64_t base = tat > now ? tat : now;
		uint64_t next = base + cost;

		if (next - now > g->limit)
			return next - now - g->limit;
		LG_GCRA_RACE_POINT(g);
		/* Relaxed: the word carries no other data; its own modification order is enough.
		 * On failure tat holds the current value and the test above is redone with it. */
		if (atomic_compare_exchange_weak_explicit(&g->tat, &tat, next, memory_order_relaxed,
							  memory_order_relaxed))
			return 0;
	}
}

#endif
