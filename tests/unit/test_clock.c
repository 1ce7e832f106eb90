/* The clock guard's core (libguard/clock.c): what a realtime reading becomes under each policy,
 * jumps, clamping, the readers' profile, monotonic regressions.
 *
 * The hooks are not linked here: each test feeds readings to lg_clock_on_realtime() the way
 * hooks/clock.c does, from a function that stands where the hook would, so the frames the guard
 * skips are the same. Each test sets lg_policy.clock and calls lg_clock_init(), which resets
 * every figure. lg_started_ns() is 0 here (the runtime is not booted), so a step at at_ms 0 is
 * due at once, and one at "uptime + an hour" is not.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* noipa: also keeps identical functions from being folded into one (-fipa-icf). */
#define NOINLINE __attribute__((noipa))
#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

static __thread volatile unsigned sink;

static int64_t now_rt_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Stands where the hook stands: one frame between the guard and the "program". */
static NOINLINE int64_t hook_realtime(int64_t raw, enum lg_rt_kind kind)
{
	int64_t v = lg_clock_on_realtime(raw, kind);
	sink++;
	return v;
}

/* Two "program" sites that read the wall clock. */
static NOINLINE int64_t reader_site_a(void)
{
	int64_t v = hook_realtime(now_rt_ns(), LG_RT_NS);
	sink++;
	return v;
}

static NOINLINE int64_t reader_site_b(void)
{
	int64_t v = hook_realtime(now_rt_ns(), LG_RT_NS);
	sink++;
	return v;
}

static void configure(enum lg_clock_realtime mode, uint32_t jump_ms)
{
	lg_policy_defaults(&lg_policy);
	lg_policy.clock.enabled = true;
	lg_policy.clock.jump_ms = jump_ms;
	lg_policy.clock.realtime = mode;
	lg_policy.clock.ninject = 0;
}

static void add_inject(int64_t at_ms, int64_t step_ms)
{
	uint32_t i = lg_policy.clock.ninject++;
	lg_policy.clock.inject[i] = (struct lg_clock_inject){ .at_ms = at_ms,
							      .clock = LG_CLOCK_REALTIME,
							      .step_ms = step_ms };
}

static struct lg_snap_clock snap(void)
{
	static struct lg_snapshot s;   /* its arena is left to the process: a test binary */

	memset(&s, 0, sizeof(s));
	assert_int_equal(lg_clock_snapshot(&s), 0);
	return s.clock;
}

static const char *innermost_fn(uint32_t stack)
{
	const uintptr_t *frames;
	struct lg_symbol sym;

	if (lg_stack_frames(stack, &frames) == 0 || lg_symbolize(frames[0], &sym) != 0)
		return "";
	return sym.fn ? sym.fn : "";
}

static int group_setup(void **state)
{
	(void)state;
	lg_real_init();
	lg_stack_init(32);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Pass mode
 * ------------------------------------------------------------------------------------------- */

static void test_clock_pass_returns_readings_unchanged(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 1000);
	lg_clock_init();
	for (int i = 0; i < 5000; i++) {
		int64_t raw = now_rt_ns();
		assert_true(hook_realtime(raw, LG_RT_NS) == raw);
		assert_true(hook_realtime(raw / 1000 * 1000, LG_RT_US) == raw / 1000 * 1000);
		assert_true(hook_realtime(raw / NS_PER_S * NS_PER_S, LG_RT_S) ==
			    raw / NS_PER_S * NS_PER_S);
	}
	struct lg_snap_clock c = snap();
	assert_true(c.present);
	assert_int_equal(c.njumps, 0);
	assert_int_equal(c.clamped_ms, 0);
}

static void test_clock_disabled_is_absent_and_injects_nothing(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 100);
	add_inject(0, -5000);
	lg_policy.clock.enabled = false;
	lg_clock_init();
	int64_t raw = now_rt_ns();
	assert_true(hook_realtime(raw, LG_RT_NS) == raw);
	assert_false(snap().present);
}

static void test_clock_preserves_errno_on_the_slow_path(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	add_inject(0, -2000);
	lg_clock_init();
	errno = 4242;
	reader_site_a();   /* samples, applies the step, captures a stack */
	assert_int_equal(errno, 4242);
}

/* ---------------------------------------------------------------------------------------------
 * Injection
 * ------------------------------------------------------------------------------------------- */

static void test_clock_injected_step_shifts_realtime_and_is_one_jump(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	add_inject(0, -2000);
	lg_clock_init();
	int64_t before = now_rt_ns();
	int64_t seen = reader_site_a();
	int64_t after = now_rt_ns();
	assert_true(seen >= before - 2000 * NS_PER_MS && seen <= after - 2000 * NS_PER_MS);
	for (int i = 0; i < 1000; i++) {   /* the offset stays; no second jump */
		int64_t raw = now_rt_ns();
		assert_true(hook_realtime(raw, LG_RT_US) == raw - 2000 * NS_PER_MS);
	}
	struct lg_snap_clock c = snap();
	assert_int_equal(c.njumps, 1);
	assert_int_equal(c.jumps[0].delta_ms, -2000);
	assert_string_equal(c.jumps[0].clock, "realtime");
	assert_true(c.jumps[0].unix_ms > (uint64_t)(before / NS_PER_MS) - 2100);
	assert_true(c.jumps[0].unix_ms < (uint64_t)(after / NS_PER_MS) - 1900);
	/* The stack is the reader's: its innermost frame is the function that read the clock. */
	assert_int_not_equal(c.jumps[0].stack, 0);
	assert_string_equal(innermost_fn(c.jumps[0].stack), "reader_site_a");
}

static void test_clock_forward_step_and_small_step(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	add_inject(0, 3600 * 1000);
	add_inject(0, 50);   /* below jump_ms: applied, but not a jump */
	lg_clock_init();
	int64_t raw = now_rt_ns();
	assert_true(hook_realtime(raw, LG_RT_NS) == raw + 3600 * NS_PER_S + 50 * NS_PER_MS);
	struct lg_snap_clock c = snap();
	assert_int_equal(c.njumps, 1);
	assert_int_equal(c.jumps[0].delta_ms, 3600 * 1000);
}

static void test_clock_step_not_yet_due_is_not_applied(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	add_inject(lg_now_ns() / NS_PER_MS + 3600 * 1000, -2000);
	lg_clock_init();
	for (int i = 0; i < 2000; i++) {
		int64_t raw = now_rt_ns();
		assert_true(hook_realtime(raw, LG_RT_NS) == raw);
	}
	lg_clock_poll(lg_now_ns());
	assert_int_equal(snap().njumps, 0);
}

static void test_clock_step_applied_by_guardian_takes_next_readers_stack(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	add_inject(0, -2000);
	lg_clock_init();
	lg_clock_poll(lg_now_ns());
	struct lg_snap_clock c = snap();
	assert_int_equal(c.njumps, 1);
	assert_int_equal(c.jumps[0].stack, 0);   /* nobody has read the clock since */
	reader_site_b();
	c = snap();
	assert_int_equal(c.njumps, 1);
	assert_int_not_equal(c.jumps[0].stack, 0);
	assert_string_equal(innermost_fn(c.jumps[0].stack), "reader_site_b");
}

/* ---------------------------------------------------------------------------------------------
 * Clamp
 * ------------------------------------------------------------------------------------------- */

static void sleep_ms(long ms)
{
	struct timespec d = { ms / 1000, (ms % 1000) * NS_PER_MS };
	nanosleep(&d, NULL);
}

static void test_clock_clamp_holds_after_a_backward_step(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 100);
	lg_clock_init();
	int64_t t = now_rt_ns();
	assert_true(hook_realtime(t, LG_RT_NS) == t);
	/* The clock steps back 2 s: the program keeps seeing t until the clock is past it. */
	assert_true(hook_realtime(t - 2 * NS_PER_S, LG_RT_NS) == t);
	sleep_ms(60);
	assert_true(hook_realtime(t - NS_PER_S, LG_RT_US) == t);
	/* clamped_ms is the time it stood still: ~60 ms so far, still held. */
	uint64_t held = snap().clamped_ms;
	assert_true(held >= 60 && held < 1000);
	assert_true(hook_realtime(t + 5, LG_RT_NS) == t + 5);   /* caught up: the hold ends */
	assert_true(hook_realtime(t + 3, LG_RT_NS) == t + 5);   /* a small step back is held too */
	sleep_ms(60);
	/* ... but a lag within a coarse clock's tick is not counted as a hold. */
	uint64_t after = snap().clamped_ms;
	assert_true(after >= held && after < held + 30);
}

static void test_clock_clamp_respects_a_readings_resolution(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 100);
	lg_clock_init();
	int64_t sec = now_rt_ns() / NS_PER_S * NS_PER_S;
	hook_realtime(sec + 700 * NS_PER_MS, LG_RT_NS);
	/* time() in the same second is not behind: it truncates the same, and is left alone. */
	assert_true(hook_realtime(sec, LG_RT_S) == sec);
	/* gettimeofday in the same microsecond as the mark is left alone too. */
	assert_true(hook_realtime(sec + 700 * NS_PER_MS, LG_RT_US) == sec + 700 * NS_PER_MS);
	assert_int_equal(snap().clamped_ms, 0);
	/* time() a whole second behind the mark is held. */
	hook_realtime(sec + 2 * NS_PER_S, LG_RT_NS);
	assert_true(hook_realtime(sec, LG_RT_S) == sec + 2 * NS_PER_S);
	sleep_ms(30);
	assert_true(snap().clamped_ms >= 30);
}

static void test_clock_clamp_with_injected_back_step(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 100);
	add_inject((int64_t)(lg_now_ns() / NS_PER_MS) + 200, -2000);   /* due in 200 ms */
	lg_clock_init();
	int64_t prev = 0, first = reader_site_b();
	int64_t end = (int64_t)lg_now_ns() + 500 * NS_PER_MS;
	while ((int64_t)lg_now_ns() < end) {
		int64_t v = reader_site_b();
		assert_true(v >= prev);
		prev = v;
	}
	/* Held since the step, 300 ms ago: the program's clock stood still. */
	assert_true(prev - first < 250 * NS_PER_MS);
	struct lg_snap_clock c = snap();
	assert_int_equal(c.njumps, 1);
	assert_int_equal(c.jumps[0].delta_ms, -2000);
	/* Still held (the step was 2 s): it has stood still for ~300 ms so far. */
	assert_true(c.clamped_ms >= 250 && c.clamped_ms <= 2000);
}

struct clamp_thread { int64_t backwards; };

static void *clamp_reader(void *arg)
{
	struct clamp_thread *ct = arg;
	int64_t prev = 0;

	for (int i = 0; i < 200000; i++) {
		int64_t raw = now_rt_ns();
		/* Every 1000th reading comes from a clock 50 ms behind: a step back, seen by only
		 * some readers at first. */
		if (i % 1000 == 999)
			raw -= 50 * NS_PER_MS;
		int64_t v = hook_realtime(raw, LG_RT_NS);
		if (v < prev)
			ct->backwards++;
		prev = v;
	}
	return NULL;
}

static void test_clock_clamp_is_monotone_across_threads(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 1000);
	lg_clock_init();
	pthread_t th[3];
	struct clamp_thread ct[3] = { { 0 } };
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, clamp_reader, &ct[i]), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ct[i].backwards, 0);
	}
	/* Each step back lasted until the next precise reading: holds of microseconds. */
	assert_true(snap().clamped_ms < 100);
}

/* ---------------------------------------------------------------------------------------------
 * Readers and monotonic
 * ------------------------------------------------------------------------------------------- */

static void *read_from_two_sites(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000; i++) {
		reader_site_a();
		if (i % 4 == 0)
			reader_site_b();
	}
	return NULL;
}

static void test_clock_readers_are_sampled_and_debiased(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 1000);
	lg_clock_init();
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_from_two_sites, NULL), 0);
	pthread_join(th, NULL);

	struct lg_snap_clock c = snap();
	uint64_t a = 0, b = 0, total = 0;
	assert_true(c.nreaders >= 2);
	for (size_t i = 0; i < c.nreaders; i++) {
		const char *fn = innermost_fn(c.readers[i].stack);
		if (i > 0)
			assert_true(c.readers[i - 1].calls >= c.readers[i].calls);   /* sorted */
		if (strcmp(fn, "reader_site_a") == 0)
			a += c.readers[i].calls;
		else if (strcmp(fn, "reader_site_b") == 0)
			b += c.readers[i].calls;
		total += c.readers[i].calls;
	}
	/* 125,000 reads; credited up to the last sample, so at most one interval (< 1024) short. */
	assert_true(total <= 125000 && total > 125000 - 1024);
	assert_int_equal(a + b, total);
	/* 100,000 from a, 25,000 from b, within sampling noise. */
	/* ~244 samples of mean weight 512: one standard deviation is ~5,000 calls. */
	assert_true(a > 80000 && a < 115000);
	assert_true(b > 10000 && b < 45000);
	assert_true(strcmp(innermost_fn(c.readers[0].stack), "reader_site_a") == 0);
}

static void *read_once_at_b(void *arg)
{
	(void)arg;
	reader_site_b();
	return NULL;
}

static void test_clock_first_read_of_a_thread_is_sampled(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 1000);
	lg_clock_init();
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, read_once_at_b, NULL), 0);
	pthread_join(th, NULL);
	struct lg_snap_clock c = snap();
	assert_int_equal(c.nreaders, 1);
	assert_int_equal(c.readers[0].calls, 1);
	assert_string_equal(innermost_fn(c.readers[0].stack), "reader_site_b");
}

static void test_clock_monotonic_regressions_counted_per_reading(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 1000);
	lg_clock_init();
	lg_clock_on_monotonic(0, 100);
	lg_clock_on_monotonic(100, 200);
	assert_int_equal(snap().monotonic_regressions, 0);
	lg_clock_on_monotonic(200, 150);
	assert_int_equal(lg_tls.mono_last_ns, 150);
	lg_clock_on_monotonic(150, 150);   /* equal is not backwards */
	assert_int_equal(snap().monotonic_regressions, 1);
}

static void test_clock_reader_far_from_its_last_reading_is_no_jump(void **state)
{
	(void)state;
	configure(LG_REALTIME_PASS, 100);
	lg_clock_init();
	/* A thread that reads twice, 300 ms apart (more than jump_ms), checks the offset against
	 * monotonic and finds no jump: the clock did not move against monotonic. */
	reader_site_a();
	struct timespec d = { 0, 300 * NS_PER_MS };
	nanosleep(&d, NULL);
	reader_site_a();
	lg_clock_poll(lg_now_ns());
	assert_int_equal(snap().njumps, 0);
}

static void test_clock_owns_a_cancel_on_set_timerfd(void **state)
{
	(void)state;
	char path[64], target[128];
	int owned = -1;

	configure(LG_REALTIME_PASS, 100);
	lg_clock_init();
	for (int fd = 0; fd < 1024 && owned < 0; fd++)
		if (lg_clock_owns_fd(fd))
			owned = fd;
	assert_true(owned >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", owned);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "anon_inode:[timerfd]");
	/* Nobody set the clock: polling finds nothing, and leaves the descriptor in place. */
	lg_clock_poll(lg_now_ns());
	assert_int_equal(snap().njumps, 0);
	assert_true(lg_clock_owns_fd(owned));
	assert_false(lg_clock_owns_fd(0));
}

/* ---------------------------------------------------------------------------------------------
 * Signal handlers
 * ------------------------------------------------------------------------------------------- */

static volatile sig_atomic_t handler_reads;

static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	reader_site_a();
	lg_clock_on_monotonic(lg_tls.mono_last_ns, (uint64_t)lg_now_ns());
	handler_reads++;
	errno = saved;
}

static void *busy_reader(void *arg)
{
	volatile int *stop = arg;
	while (!*stop) {
		reader_site_b();
		lg_clock_poll(lg_now_ns());
	}
	return NULL;
}

static void test_clock_reads_from_a_signal_handler_at_high_rate(void **state)
{
	(void)state;
	configure(LG_REALTIME_CLAMP, 100);
	add_inject(0, -2000);
	lg_clock_init();
	struct sigaction sa = { 0 };
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	volatile int stop = 0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, busy_reader, (void *)&stop), 0);
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	setitimer(ITIMER_REAL, &it, NULL);
	int64_t end = lg_now_ns() + NS_PER_S;
	while ((int64_t)lg_now_ns() < end)
		reader_site_a();
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	stop = 1;
	pthread_join(th, NULL);
	assert_true(handler_reads > 100);
	assert_int_equal(snap().njumps, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_pass_returns_readings_unchanged),
		cmocka_unit_test(test_clock_disabled_is_absent_and_injects_nothing),
		cmocka_unit_test(test_clock_preserves_errno_on_the_slow_path),
		cmocka_unit_test(test_clock_injected_step_shifts_realtime_and_is_one_jump),
		cmocka_unit_test(test_clock_forward_step_and_small_step),
		cmocka_unit_test(test_clock_step_not_yet_due_is_not_applied),
		cmocka_unit_test(test_clock_step_applied_by_guardian_takes_next_readers_stack),
		cmocka_unit_test(test_clock_clamp_holds_after_a_backward_step),
		cmocka_unit_test(test_clock_clamp_respects_a_readings_resolution),
		cmocka_unit_test(test_clock_clamp_with_injected_back_step),
		cmocka_unit_test(test_clock_clamp_is_monotone_across_threads),
		cmocka_unit_test(test_clock_readers_are_sampled_and_debiased),
		cmocka_unit_test(test_clock_first_read_of_a_thread_is_sampled),
		cmocka_unit_test(test_clock_monotonic_regressions_counted_per_reading),
		cmocka_unit_test(test_clock_reader_far_from_its_last_reading_is_no_jump),
		cmocka_unit_test(test_clock_owns_a_cancel_on_set_timerfd),
		cmocka_unit_test(test_clock_reads_from_a_signal_handler_at_high_rate),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
