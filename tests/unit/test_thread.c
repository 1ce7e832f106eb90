/* Thread guard (libguard/thread.c): live and peak, unjoined threads per creation site, records
 * released by join and detach, thread exit by return, pthread_exit and cancellation, and
 * threads.max in both modes. The hooks are not linked: the tests call lg_thread_create and
 * lg_thread_released as hooks/pthread.c does, and the real join/detach through LG_REAL.
 *
 * The runtime boots once (threads.max = 6); the tests run in the order of main() and each one
 * leaves no thread of its own running unless it says so.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "boot_helpers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NOINLINE __attribute__((noinline, noclone))
#define MAX 6

static const char policy_text[] =
	"{ \"version\": 1, \"mode\": \"enforce\", \"report\": { \"at_exit\": false, \"signal\": null },"
	"  \"threads\": { \"enabled\": true, \"max\": 6 } }";

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void *quick(void *arg) { return arg; }
static void *exits(void *arg) { lg_thread_on_exit(); LG_REAL(pthread_exit)(arg); return NULL; }
static void *waits(void *arg)
{
	LG_REAL(pthread_mutex_lock)(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	LG_REAL(pthread_mutex_unlock)(&gate_mu);
	return arg;
}
static void *sleeps(void *arg) { (void)arg; for (;;) pause(); return NULL; }

static void open_gate(int open)
{
	LG_REAL(pthread_mutex_lock)(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	LG_REAL(pthread_mutex_unlock)(&gate_mu);
}

extern const struct lg_guard_desc __start_lg_guards[] __attribute__((weak, visibility("hidden")));
extern const struct lg_guard_desc __stop_lg_guards[] __attribute__((weak, visibility("hidden")));

static struct lg_snapshot *snap(void)
{
	static struct lg_snapshot s;

	memset(&s, 0, sizeof(s));
	lg_guards_snapshot(&s);
	return &s;
}

static uint64_t unjoined_total(void)
{
	struct lg_snapshot *s = snap();
	uint64_t n = 0;
	for (size_t i = 0; i < s->threads.n; i++)
		n += s->threads.unjoined[i].count;
	return n;
}

static void wait_live(uint64_t want)
{
	for (int i = 0; i < 2000 && lg_threads_live() != want; i++)
		usleep(1000);
	assert_int_equal(lg_threads_live(), want);
}

static int join(pthread_t t)
{
	int rc = LG_REAL(pthread_join)(t, NULL);
	if (rc == 0)
		lg_thread_released(t);
	return rc;
}

/* Two creation sites. Each creates n threads from one call instruction (the loop is in here,
 * with n unknown to the compiler, so it cannot be unrolled into several call sites); the
 * result is the first non-zero one. */
static NOINLINE int create_here(pthread_t *t, int n, const pthread_attr_t *a, void *(*fn)(void *))
{
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++)
		rc = lg_thread_create(&t[i], a, fn, NULL);
	__asm__ volatile("");
	return rc;
}

static NOINLINE int create_there(pthread_t *t, int n, void *(*fn)(void *))
{
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++)
		rc = lg_thread_create(&t[i], NULL, fn, NULL);
	__asm__ volatile("");
	return rc;
}

static int boot(void **state)
{
	(void)state;
	return boot_policy(policy_text) == 0 && lg_policy.threads.max == MAX ? 0 : -1;
}

static void test_thread_live_and_peak_follow_threads(void **state)
{
	(void)state;
	pthread_t t[3];
	open_gate(0);
	assert_int_equal(create_here(t, 3, NULL, waits), 0);
	assert_int_equal(lg_threads_live(), 3);
	open_gate(1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(join(t[i]), 0);
	wait_live(0);
	struct lg_snapshot *s = snap();
	assert_true(s->threads.present);
	assert_int_equal(s->threads.peak, 3);
	assert_int_equal(s->threads.n, 0);
}

static void test_thread_finished_unjoined_are_reported_per_site(void **state)
{
	(void)state;
	pthread_t a[3], b[2];
	assert_int_equal(create_here(a, 3, NULL, quick), 0);
	assert_int_equal(create_there(b, 2, quick), 0);
	wait_live(0);
	struct lg_snapshot *s = snap();
	assert_int_equal(s->threads.n, 2);
	assert_int_equal(s->threads.unjoined[0].count, 3);   /* sorted by count */
	assert_int_equal(s->threads.unjoined[1].count, 2);
	assert_int_not_equal(s->threads.unjoined[0].stack, s->threads.unjoined[1].stack);
	/* Joining them late releases them. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(join(a[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(join(b[i]), 0);
	assert_int_equal(unjoined_total(), 0);
}

static void test_thread_detached_are_not_leaks(void **state)
{
	(void)state;
	pthread_t t[3];
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	assert_int_equal(create_here(&t[0], 1, &a, quick), 0);
	pthread_attr_destroy(&a);
	/* Detached before and after it ended. */
	open_gate(0);
	assert_int_equal(create_here(&t[1], 1, NULL, waits), 0);
	assert_int_equal(LG_REAL(pthread_detach)(t[1]), 0);
	lg_thread_released(t[1]);
	open_gate(1);
	assert_int_equal(create_here(&t[2], 1, NULL, quick), 0);
	wait_live(0);
	assert_int_equal(unjoined_total(), 1);
	assert_int_equal(LG_REAL(pthread_detach)(t[2]), 0);
	lg_thread_released(t[2]);
	assert_int_equal(unjoined_total(), 0);
}

static void test_thread_exit_and_cancel_end_the_thread(void **state)
{
	(void)state;
	pthread_t t[2];
	assert_int_equal(create_here(&t[0], 1, NULL, exits), 0);
	assert_int_equal(create_here(&t[1], 1, NULL, sleeps), 0);
	usleep(10000);
	assert_int_equal(pthread_cancel(t[1]), 0);
	wait_live(0);
	assert_int_equal(unjoined_total(), 2);
	assert_int_equal(join(t[0]), 0);
	assert_int_equal(join(t[1]), 0);
	assert_int_equal(unjoined_total(), 0);
}

static void test_thread_max_enforced_then_observed(void **state)
{
	(void)state;
	pthread_t t[MAX + 1];
	uint64_t v0 = lg_violations_total();
	open_gate(0);
	assert_int_equal(create_here(t, MAX, NULL, waits), 0);
	assert_int_equal(create_here(&t[MAX], 1, NULL, waits), EAGAIN);
	assert_int_equal(lg_threads_live(), MAX);
	assert_int_equal(lg_violations_total(), v0 + 1);
	/* Observe mode: the same creation passes and is recorded. */
	lg_policy.mode = LG_MODE_OBSERVE;
	assert_int_equal(create_here(&t[MAX], 1, NULL, waits), 0);
	lg_policy.mode = LG_MODE_ENFORCE;
	assert_int_equal(lg_violations_total(), v0 + 2);
	assert_int_equal(snap()->threads.peak, MAX + 1);
	open_gate(1);
	for (int i = 0; i <= MAX; i++)
		assert_int_equal(join(t[i]), 0);
	wait_live(0);
}

static void test_thread_running_joinable_count_at_exit(void **state)
{
	(void)state;
	pthread_t t;
	assert_int_equal(create_here(&t, 1, NULL, sleeps), 0);
	assert_int_equal(unjoined_total(), 0);   /* running, may still be joined */
	/* What the destructor does before the exit report: the guard's at_exit. */
	const struct lg_guard_desc *g;
	for (g = __start_lg_guards; g < __stop_lg_guards && strcmp(g->name, "threads") != 0; g++)
		;
	assert_true(g < __stop_lg_guards && g->at_exit);
	g->at_exit();
	assert_int_equal(unjoined_total(), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_live_and_peak_follow_threads),
		cmocka_unit_test(test_thread_finished_unjoined_are_reported_per_site),
		cmocka_unit_test(test_thread_detached_are_not_leaks),
		cmocka_unit_test(test_thread_exit_and_cancel_end_the_thread),
		cmocka_unit_test(test_thread_max_enforced_then_observed),
		cmocka_unit_test(test_thread_running_joinable_count_at_exit),
	};
	return cmocka_run_group_tests_name("thread", tests, boot, NULL);
}
