/* The GCRA bucket (libguard/gcra.h) on an injected clock: every boundary to the nanosecond.
 *
 * lg_gcra_take() takes its `now` from the caller, so these tests are the clock. A race between two
 * takers is staged at LG_GCRA_RACE_POINT, between the load of TAT and the CAS that replaces it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

struct lg_gcra;
/* Runs once at the race point, then clears itself (the retry after the lost CAS runs clean). */
static void (*race_once)(struct lg_gcra *g);
static void run_race(struct lg_gcra *g)
{
	void (*fn)(struct lg_gcra *) = race_once;

	race_once = NULL;
	if (fn)
		fn(g);
}
#define LG_GCRA_RACE_POINT(g) run_race(g)
#include "libguard/gcra.h"

#define SEC UINT64_C(1000000000)
#define MS UINT64_C(1000000)

static uint64_t tat_of(struct lg_gcra *g)
{
	return atomic_load(&g->tat);
}

static void test_gcra_rejects_bad_parameters(void **state)
{
	struct lg_gcra g;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 0, 1), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, -5, 1), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, NAN, 1), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, INFINITY, 1), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, 10, 0.999), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, 10, 0), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, 10, NAN), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, 10, INFINITY), -EINVAL);
	assert_int_equal(lg_gcra_init(&g, 10, 1), 0);
	assert_int_equal(g.interval, 100 * MS);
	assert_int_equal(g.limit, 100 * MS);
	assert_int_equal(g.max_n, 1);
}

static void test_gcra_admits_exactly_burst_at_once(void **state)
{
	struct lg_gcra g;
	uint64_t now = 1000 * SEC;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1000, 20), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	/* The 21st is due one interval (1 ms) from now, to the nanosecond. */
	assert_int_equal(lg_gcra_take(&g, 1, now), 1 * MS);
	assert_int_equal(tat_of(&g), now + 20 * MS);
}

static void test_gcra_next_token_due_after_one_interval(void **state)
{
	struct lg_gcra g;
	uint64_t now = 5 * SEC;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1000, 20), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now + 1 * MS - 1), 1);
	assert_int_equal(lg_gcra_take(&g, 1, now + 1 * MS), 0);
	/* And only one: the one after is another interval away. */
	assert_int_equal(lg_gcra_take(&g, 1, now + 1 * MS), 1 * MS);
	assert_int_equal(lg_gcra_take(&g, 1, now + 2 * MS), 0);
	/* Ten intervals later, ten tokens and no more. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now + 12 * MS), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now + 12 * MS), 1 * MS);
}

static void test_gcra_idle_hoards_no_credit_beyond_burst(void **state)
{
	struct lg_gcra g;
	uint64_t now = 7 * SEC;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1000, 20), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	/* An hour of idling earns 3.6 million intervals, of which the bucket keeps burst. */
	now += 3600 * SEC;
	for (int i = 0; i < 20; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now), 1 * MS);
	/* A fresh bucket (TAT 0) at a clock near 0 is full, not over-full either. */
	assert_int_equal(lg_gcra_init(&g, 1000, 3), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(lg_gcra_take(&g, 1, 0), 0);
	assert_int_equal(lg_gcra_take(&g, 1, 0), 1 * MS);
}

static void test_gcra_admits_nothing_on_a_clock_that_stands_still(void **state)
{
	struct lg_gcra g;
	uint64_t now = 9 * SEC;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1e6, 4), 0);   /* T = 1 us */
	for (int i = 0; i < 4; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	uint64_t tat = tat_of(&g);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(lg_gcra_take(&g, 1, now), 1000);
	/* Refused takes took nothing. */
	assert_int_equal(tat_of(&g), tat);
}

/* ---- a stale timestamp from another thread ---- */

static uint64_t other_now;
static uint64_t other_result;
static void other_taker(struct lg_gcra *g)
{
	other_result = lg_gcra_take(g, 1, other_now);
}

static void test_gcra_stale_timestamp_never_admits_extra(void **state)
{
	struct lg_gcra g;

	(void)state;
	/* rate 1e6/s (T = 1000 ns), burst 2. */
	assert_int_equal(lg_gcra_init(&g, 1e6, 2), 0);
	assert_int_equal(lg_gcra_take(&g, 1, 10000), 0);   /* TAT 11000 */
	/* Thread A read the clock at 10000 and loaded TAT 11000: one token left, it would pass.
	 * Before its CAS, thread B (clock 10500) takes that token: TAT 12000. A must then see no
	 * token at its own (older) time: three in 500 ns would exceed burst 2. */
	other_now = 10500;
	race_once = other_taker;
	uint64_t wait = lg_gcra_take(&g, 1, 10000);
	assert_int_equal(other_result, 0);
	assert_int_equal(wait, 1000);    /* 12000 + 1000 - 10000 - limit 2000 */
	assert_int_equal(tat_of(&g), 12000);

	/* With room for both, A's retry starts from B's TAT, never from the one it loaded first:
	 * TAT ends 2 intervals on, not 1 (a plain store of A's first computation would lose B's). */
	assert_int_equal(lg_gcra_init(&g, 1e6, 3), 0);
	assert_int_equal(lg_gcra_take(&g, 1, 10000), 0);   /* TAT 11000 */
	other_now = 10500;
	race_once = other_taker;
	assert_int_equal(lg_gcra_take(&g, 1, 10000), 0);
	assert_int_equal(other_result, 0);
	assert_int_equal(tat_of(&g), 13000);
	assert_int_equal(lg_gcra_take(&g, 1, 10500), 500);   /* burst 3 spent within 500 ns */

	/* A taker far in the past never moves TAT back either. */
	assert_int_equal(lg_gcra_take(&g, 1, 1), 13000 + 1000 - 1 - 3000);
	assert_int_equal(tat_of(&g), 13000);
}

/* Random interleavings with timestamps up to 50 intervals stale: whatever the order, the tokens
 * admitted never exceed burst + (newest - oldest timestamp) / T. */
static void test_gcra_out_of_order_timestamps_respect_the_bound(void **state)
{
	struct lg_gcra g;
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (int round = 0; round < 200; round++) {
		double burst = 1 + (double)(round % 17);
		assert_int_equal(lg_gcra_init(&g, 1e6, burst), 0);   /* T = 1000 ns */
		uint64_t clock = 1000000, lo = UINT64_MAX, hi = 0, admitted = 0;
		for (int i = 0; i < 5000; i++) {
			seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
			clock += seed % 700;                         /* faster than the rate */
			uint64_t now = clock - (seed >> 20) % 50000; /* up to 50 T stale */
			uint32_t n = 1 + (uint32_t)((seed >> 40) % 3);
			if (lg_gcra_take(&g, n, now) == 0) {
				admitted += n;
				lo = now < lo ? now : lo;
				hi = now > hi ? now : hi;
			}
		}
		assert_true(admitted > 0);
		assert_true(admitted <= (uint64_t)burst + (hi - lo) / 1000);
	}
}

/* ---- several tokens at once ---- */

static void test_gcra_takes_n_tokens_at_once(void **state)
{
	struct lg_gcra g;
	uint64_t now = 3 * SEC;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1000, 10), 0);
	assert_int_equal(lg_gcra_take(&g, 10, now), 0);   /* exactly burst */
	assert_int_equal(lg_gcra_take(&g, 1, now), 1 * MS);
	now += 10 * MS;
	assert_int_equal(lg_gcra_take(&g, 4, now), 0);
	assert_int_equal(lg_gcra_take(&g, 3, now), 0);
	/* 3 left; 5 are due in 2 intervals, and the refusal took none of the 3. */
	assert_int_equal(lg_gcra_take(&g, 5, now), 2 * MS);
	assert_int_equal(lg_gcra_take(&g, 3, now), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now), 1 * MS);
	/* n == 0 takes nothing and always passes. */
	assert_int_equal(lg_gcra_take(&g, 0, now), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now), 1 * MS);
}

static void test_gcra_never_admits_more_than_burst(void **state)
{
	struct lg_gcra g;

	(void)state;
	assert_int_equal(lg_gcra_init(&g, 1000, 10), 0);
	assert_int_equal(lg_gcra_take(&g, 11, 100 * SEC), LG_GCRA_NEVER);
	assert_int_equal(lg_gcra_take(&g, UINT32_MAX, 100 * SEC), LG_GCRA_NEVER);
	assert_int_equal(tat_of(&g), 0);
	/* A fractional burst lets its whole part through at once, and the next token comes after
	 * the fraction of an interval. */
	assert_int_equal(lg_gcra_init(&g, 1000, 2.5), 0);
	assert_int_equal(lg_gcra_take(&g, 3, 100 * SEC), LG_GCRA_NEVER);
	assert_int_equal(lg_gcra_take(&g, 2, 100 * SEC), 0);
	assert_int_equal(lg_gcra_take(&g, 1, 100 * SEC), MS / 2);
	/* A rate whose interval is not a whole number of ns: 3/s. */
	assert_int_equal(lg_gcra_init(&g, 3, 2), 0);
	assert_int_equal(g.interval, 333333333);
	assert_int_equal(lg_gcra_take(&g, 2, SEC), 0);
	assert_int_equal(lg_gcra_take(&g, 1, SEC), 333333333);
}

static void test_gcra_extreme_parameters_do_not_wrap(void **state)
{
	struct lg_gcra g;
	uint64_t now = 50 * SEC;

	(void)state;
	/* One token every ~31,700 years, a burst of 1e12: spans cap at 2^62 ns. */
	assert_int_equal(lg_gcra_init(&g, 1e-12, 1e12), 0);
	assert_true(g.limit <= LG_GCRA_MAX_SPAN && g.max_n >= 1);
	assert_int_equal(lg_gcra_take(&g, 1, now), 0);
	uint64_t w = lg_gcra_take(&g, (uint32_t)g.max_n, now);
	assert_true(w > 0 && w <= LG_GCRA_MAX_SPAN);
	/* Faster than one per ns: T is 1 ns, burst still exact. */
	assert_int_equal(lg_gcra_init(&g, 1e12, 5), 0);
	assert_int_equal(g.interval, 1);
	assert_int_equal(lg_gcra_take(&g, 5, now), 0);
	assert_int_equal(lg_gcra_take(&g, 1, now), 1);
	/* A huge burst at an ordinary rate takes whole uint32 counts. */
	assert_int_equal(lg_gcra_init(&g, 1, 1e10), 0);
	assert_int_equal(lg_gcra_take(&g, UINT32_MAX, now), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcra_rejects_bad_parameters),
		cmocka_unit_test(test_gcra_admits_exactly_burst_at_once),
		cmocka_unit_test(test_gcra_next_token_due_after_one_interval),
		cmocka_unit_test(test_gcra_idle_hoards_no_credit_beyond_burst),
		cmocka_unit_test(test_gcra_admits_nothing_on_a_clock_that_stands_still),
		cmocka_unit_test(test_gcra_stale_timestamp_never_admits_extra),
		cmocka_unit_test(test_gcra_out_of_order_timestamps_respect_the_bound),
		cmocka_unit_test(test_gcra_takes_n_tokens_at_once),
		cmocka_unit_test(test_gcra_never_admits_more_than_burst),
		cmocka_unit_test(test_gcra_extreme_parameters_do_not_wrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
