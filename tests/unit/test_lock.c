/* Lock contention guard (libguard/lock.c): sampling, de-biasing, which results count as
 * contention, and the report section. The hooks are not linked here: the tests drive
 * lg_lock_wait_begin/end as hooks/pthread.c does after a trylock said EBUSY.
 *
 * The runtime boots once (locks.sample = 4); the tests then run in the order of main().
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "boot_helpers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NOINLINE __attribute__((noinline, noclone))
#define SAMPLE 4

static const char policy_text[] =
	"{ \"version\": 1, \"report\": { \"at_exit\": false, \"signal\": null },"
	"  \"locks\": { \"enabled\": true, \"sample\": 4 } }";

static void spin_ns(uint64_t ns)
{
	uint64_t end = lg_now_ns() + ns;
	while (lg_now_ns() < end)
		;
}

/* One "contended acquisition" as the hooks make it: begin, a wait, end with rc. Its own
 * function, so that each caller below is a distinct stack. */
static NOINLINE bool contended(uint64_t wait_ns, int rc)
{
	struct lg_lock_wait w;
	bool tracked = lg_lock_wait_begin(&w, __builtin_return_address(0));
	if (tracked) {
		spin_ns(wait_ns);
		lg_lock_wait_end(&w, rc);
	}
	__asm__ volatile("");
	return tracked;
}

static NOINLINE void site_short(int n)
{
	for (int i = 0; i < n; i++)
		contended(20000, 0);
	__asm__ volatile("");
}

static NOINLINE void site_long(int n, int rc)
{
	for (int i = 0; i < n; i++)
		contended(200000, rc);
	__asm__ volatile("");
}

static NOINLINE void site_errors(int n)
{
	static const int codes[] = { EDEADLK, EINVAL, EAGAIN };
	for (int i = 0; i < n; i++)
		contended(20000, codes[i % 3]);
	__asm__ volatile("");
}

/* A fresh snapshot of the guards' sections (its arena is not freed: a test process). */
static struct lg_snapshot *snap(void)
{
	static struct lg_snapshot s;

	memset(&s, 0, sizeof(s));
	lg_guards_snapshot(&s);
	return &s;
}

static uint64_t total_count(const struct lg_snapshot *s)
{
	uint64_t n = 0;
	for (size_t i = 0; i < s->locks.n; i++)
		n += s->locks.contended[i].count;
	return n;
}

static int boot(void **state)
{
	(void)state;
	return boot_policy(policy_text) == 0 && lg_policy.locks.sample == SAMPLE ? 0 : -1;
}

static void test_lock_not_tracked_while_busy(void **state)
{
	(void)state;
	lg_enter();
	assert_false(contended(0, 0));
	lg_leave();
	assert_int_equal(total_count(snap()), 0);
}

static void test_lock_sample_counts_are_debiased(void **state)
{
	(void)state;
	/* 400 contended acquisitions at rate 4: exactly 100 are sampled whatever the random
	 * phase, each counted 4 times. */
	site_short(400);
	struct lg_snapshot *s = snap();
	assert_int_equal(s->locks.n, 1);
	assert_int_equal(s->locks.contended[0].count, 400);
	assert_int_equal(lg_tls.lock_contended, 400);
	/* Every wait is at least 20 us: the de-biased total is at least 400 of them. */
	assert_true(s->locks.contended[0].wait_ns >= 400 * 20000ull);
	assert_true(s->locks.contended[0].max_wait_ns >= 20000);
	assert_true(s->locks.contended[0].max_wait_ns <= s->locks.contended[0].wait_ns);
	assert_true(s->locks.contended[0].stack > 0);
}

static void test_lock_errors_that_never_waited_are_not_contention(void **state)
{
	(void)state;
	uint64_t before = total_count(snap());
	site_errors(300);   /* EDEADLK, EINVAL, EAGAIN */
	assert_int_equal(total_count(snap()), before);
}

static void test_lock_timeouts_and_dead_owners_count(void **state)
{
	(void)state;
	uint64_t before = total_count(snap());
	site_long(8, ETIMEDOUT);
	site_long(8, EOWNERDEAD);
	assert_int_equal(total_count(snap()), before + 16);
}

static void test_lock_report_sorted_by_wait(void **state)
{
	(void)state;
	struct lg_snapshot *s = snap();
	assert_true(s->locks.present);
	assert_true(s->locks.n >= 2);
	for (size_t i = 1; i < s->locks.n; i++)
		assert_true(s->locks.contended[i - 1].wait_ns >= s->locks.contended[i].wait_ns);
	/* site_long waits 10x longer per acquisition than site_short, 16 times against 400:
	 * different stacks, each its own row. */
	for (size_t i = 0; i < s->locks.n; i++)
		for (size_t j = i + 1; j < s->locks.n; j++)
			assert_int_not_equal(s->locks.contended[i].stack, s->locks.contended[j].stack);
}

static void *contend_thread(void *arg)
{
	(void)arg;
	site_short(100);
	return NULL;
}

static void test_lock_threads_aggregate_into_one_site(void **state)
{
	(void)state;
	pthread_t t[4];
	uint64_t before = total_count(snap());
	for (int i = 0; i < 4; i++)
		assert_int_equal(LG_REAL(pthread_create)(&t[i], NULL, contend_thread, NULL), 0);
	for (int i = 0; i < 4; i++)
		LG_REAL(pthread_join)(t[i], NULL);
	assert_int_equal(total_count(snap()), before + 400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_not_tracked_while_busy),
		cmocka_unit_test(test_lock_sample_counts_are_debiased),
		cmocka_unit_test(test_lock_errors_that_never_waited_are_not_contention),
		cmocka_unit_test(test_lock_timeouts_and_dead_owners_count),
		cmocka_unit_test(test_lock_report_sorted_by_wait),
		cmocka_unit_test(test_lock_threads_aggregate_into_one_site),
	};
	return cmocka_run_group_tests_name("lock", tests, boot, NULL);
}
