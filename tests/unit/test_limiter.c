/* The limiter (libguard/limiter.c): the public guard_limiter_* API on the real clock, then the
 * policy rules as the hooks see them (matching, verdicts, observe mode, counters, the report's
 * "limits" section) after booting the runtime with a policy file.
 *
 * The tests run in the order of main(): the API tests first, while the runtime is not started
 * (guard_limiter_* must not need it), then the runtime boots once for the rule tests. Rule buckets
 * refill at 1 token per 1000 s, so within this process a spent bucket stays spent.
 */
#include "libguard/guard.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define MS INT64_C(1000000)

/* ---- the public API ---- */

static void test_limiter_api_rejects_bad_parameters(void **state)
{
	(void)state;
	assert_int_not_equal(lg_state(), LG_READY);   /* a plain object: no runtime needed */
	const double bad[][2] = { { 0, 1 }, { -1, 1 }, { NAN, 1 }, { INFINITY, 1 }, { 10, 0.5 },
				  { 10, NAN }, { 10, INFINITY }, { 10, -INFINITY } };
	for (size_t i = 0; i < LG_ARRAY_SIZE(bad); i++) {
		errno = 0;
		assert_null(guard_limiter_new(bad[i][0], bad[i][1]));
		assert_int_equal(errno, EINVAL);
	}
	guard_limiter_free(NULL);
	assert_true(guard_limiter_take(NULL, 1) == INT64_MAX);
}

static void test_limiter_api_admits_burst_then_waits(void **state)
{
	(void)state;
	/* 1/s: the next token is ~1 s away, far beyond any scheduling delay of this test. */
	guard_limiter *l = guard_limiter_new(1, 5);
	assert_non_null(l);
	assert_true(((uintptr_t)l & 63) == 0);   /* own cache line */
	for (int i = 0; i < 5; i++)
		assert_true(guard_limiter_take(l, 1) == 0);
	int64_t w = guard_limiter_take(l, 1);
	assert_true(w > 900 * MS && w <= 1000 * MS);
	/* Refused: nothing taken, so asking again gives (almost) the same wait. */
	int64_t w2 = guard_limiter_take(l, 1);
	assert_true(w2 > 900 * MS && w2 <= w);
	assert_true(guard_limiter_take(l, 6) == INT64_MAX);
	assert_true(guard_limiter_take(l, UINT32_MAX) == INT64_MAX);
	assert_true(guard_limiter_take(l, 0) == 0);
	guard_limiter_free(l);

	l = guard_limiter_new(1, 5);
	assert_non_null(l);
	assert_true(guard_limiter_take(l, 5) == 0);
	assert_true(guard_limiter_take(l, 1) > 0);
	guard_limiter_free(l);
}

/* Threads take one token at a time and sleep for the wait they are told: at 1000/s with burst 20
 * over ~3 s, the admitted count is burst + rate * t. The upper bound is GCRA's guarantee (+1 for
 * the token due exactly at the end); the lower one allows 1% for sleep overshoot (once the burst
 * is spent TAT runs ~19 intervals ahead of now, so only a sleeper woken more than 19 ms late loses
 * credit). */
struct taker_arg {
	guard_limiter *l;
	uint64_t end_ns;
	uint64_t admitted;
	uint64_t first_ns, last_ns;   /* first and last admission */
};

static void *taker(void *p)
{
	struct taker_arg *a = p;

	for (;;) {
		uint64_t now = lg_now_ns();
		if (now >= a->end_ns)
			break;
		int64_t w = guard_limiter_take(a->l, 1);
		if (w == 0) {
			a->last_ns = lg_now_ns();
			if (a->admitted++ == 0)
				a->first_ns = now;
			continue;
		}
		struct timespec ts = { 0, w };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void admitted_within_one_percent(int nthreads)
{
	const double rate = 1000, burst = 20;
	struct taker_arg args[8];
	pthread_t tids[8];
	guard_limiter *l = guard_limiter_new(rate, burst);

	assert_non_null(l);
	uint64_t start = lg_now_ns();
	for (int i = 0; i < nthreads; i++) {
		args[i] = (struct taker_arg){ .l = l, .end_ns = start + 3000 * (uint64_t)MS };
		assert_int_equal(pthread_create(&tids[i], NULL, taker, &args[i]), 0);
	}
	uint64_t admitted = 0, first = UINT64_MAX, last = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(tids[i], NULL);
		admitted += args[i].admitted;
		if (args[i].admitted) {
			first = args[i].first_ns < first ? args[i].first_ns : first;
			last = args[i].last_ns > last ? args[i].last_ns : last;
		}
	}
	guard_limiter_free(l);
	assert_true(admitted > 0);
	/* t runs from the first admission (the clock read before it) to the last: time before the
	 * first take is credit a full bucket cannot hold, so it does not count. */
	double t = (double)(last - first) / 1e9;
	double expected = burst + rate * t;
	print_message("%d thread(s): %llu admitted in %.3f s, burst + rate*t = %.1f (%.3f%%)\n",
		      nthreads, (unsigned long long)admitted, t, expected,
		      100.0 * ((double)admitted - expected) / expected);
	assert_true(t > 2.9);
	assert_true((double)admitted <= expected + 1);
	assert_true((double)admitted >= expected * 0.99);
}

static void test_limiter_admits_burst_plus_rate_one_thread(void **state)
{
	(void)state;
	admitted_within_one_percent(1);
}

static void test_limiter_admits_burst_plus_rate_four_threads(void **state)
{
	(void)state;
	admitted_within_one_percent(4);
}

/* ---- policy rules, with the runtime booted ---- */

enum { R_ACC_WAIT, R_ACC_LOCAL, R_ACC_SHED, R_DB, R_V6NET, R_TENNET, R_MAPPED6, R_OBSERVED, R_CATCHALL, NRULES };

static const char policy_text[] =
	"{ \"version\": 1, \"mode\": \"enforce\", \"report\": { \"at_exit\": false },\n"
	"  \"limits\": [\n"
	"    { \"name\": \"acc-wait\", \"call\": \"accept\", \"rate\": 0.001, \"burst\": 2, \"port\": 8080,\n"
	"      \"on_limit\": \"wait\" },\n"
	"    { \"name\": \"acc-local\", \"call\": \"accept\", \"rate\": 0.001, \"addr\": \"127.0.0.3\",\n"
	"      \"on_limit\": \"shed\" },\n"
	"    { \"name\": \"acc-shed\", \"call\": \"accept\", \"rate\": 0.001, \"burst\": 1, \"on_limit\": \"shed\" },\n"
	"    { \"name\": \"db\", \"call\": \"connect\", \"rate\": 0.001, \"addr\": \"127.0.0.1/32\", \"port\": 5432,\n"
	"      \"on_limit\": \"fail\" },\n"
	"    { \"name\": \"v6net\", \"call\": \"connect\", \"rate\": 0.001, \"burst\": 100, \"addr\": \"fd00::/8\",\n"
	"      \"on_limit\": \"wait\" },\n"
	"    { \"name\": \"tennet\", \"call\": \"connect\", \"rate\": 0.001, \"burst\": 100, \"addr\": \"10.0.0.0/8\" },\n"
	"    { \"name\": \"mapped6\", \"call\": \"connect\", \"rate\": 0.001, \"burst\": 100,\n"
	"      \"addr\": \"::ffff:192.168.0.0/112\" },\n"
	"    { \"name\": \"observed\", \"call\": \"connect\", \"rate\": 0.001, \"port\": 7777 },\n"
	"    { \"name\": \"catchall\", \"call\": \"connect\", \"rate\": 0.001, \"burst\": 1000 }\n"
	"  ] }\n";

/* Boot the runtime with policy_text, once. */
static int boot(void **state)
{
	char path[] = "/tmp/lg-test-limiter-XXXXXX";
	int fd;

	(void)state;
	if (lg_state() == LG_READY)
		return lg_policy.nlimits == NRULES ? 0 : -1;
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (write(fd, policy_text, sizeof(policy_text) - 1) != (ssize_t)sizeof(policy_text) - 1) {
		close(fd);
		return -1;
	}
	close(fd);
	int rc = lg_init(path);
	unlink(path);
	return rc == 0 && lg_state() == LG_READY && lg_policy.nlimits == NRULES ? 0 : -1;
}

static struct sockaddr_in v4(const char *ip, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 v6(const char *ip, int port)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return sin6;
}

/* The rule a connect to ip:port is limited by (-1: none), and its verdict. */
static int connect_rule(const char *ip, int port, enum lg_verdict *verdict)
{
	uint64_t wait = 12345;
	int rule = -99;
	enum lg_verdict v;

	if (strchr(ip, ':')) {
		struct sockaddr_in6 a = v6(ip, port);
		v = lg_limit_before_connect((struct sockaddr *)&a, sizeof(a), &wait, &rule);
	} else {
		struct sockaddr_in a = v4(ip, port);
		v = lg_limit_before_connect((struct sockaddr *)&a, sizeof(a), &wait, &rule);
	}
	if (v == LG_PASS)
		assert_int_equal(wait, 0);
	else
		assert_true(wait > 0);
	if (verdict)
		*verdict = v;
	return rule;
}

struct counts { uint64_t allowed, limited, waited_ms; };

static struct counts counts_of(int rule)
{
	struct lg_snapshot snap;
	struct counts c;

	memset(&snap, 0, sizeof(snap));
	lg_guards_snapshot(&snap);
	assert_true(snap.limits.present);
	assert_int_equal(snap.limits.n, NRULES);
	assert_string_equal(snap.limits.items[rule].name, lg_policy.limits[rule].name);
	assert_string_equal(snap.limits.items[rule].call,
			    lg_policy.limits[rule].call == LG_LIMIT_ACCEPT ? "accept" : "connect");
	c.allowed = snap.limits.items[rule].allowed;
	c.limited = snap.limits.items[rule].limited;
	c.waited_ms = snap.limits.items[rule].waited_ms;
	/* The snapshot's arena (one 64 KiB chunk) is left to the process: report.c keeps its
	 * release private, and a few of them in a test do no harm. */
	return c;
}

static void test_limiter_first_matching_rule_applies(void **state)
{
	(void)state;
	/* db (127.0.0.1/32 port 5432) is written before catchall: it wins for its destination. */
	assert_int_equal(connect_rule("127.0.0.1", 5432, NULL), R_DB);
	assert_int_equal(connect_rule("127.0.0.1", 80, NULL), R_CATCHALL);
	assert_int_equal(connect_rule("127.0.0.2", 5432, NULL), R_CATCHALL);
	assert_int_equal(connect_rule("10.255.0.1", 443, NULL), R_TENNET);
	assert_int_equal(connect_rule("11.0.0.1", 443, NULL), R_CATCHALL);
	/* A refused first match does not fall through to a later rule with tokens. */
	enum lg_verdict v;
	assert_int_equal(connect_rule("127.0.0.1", 5432, &v), R_DB);
	assert_int_equal(v, LG_FAIL);
	assert_int_equal(connect_rule("127.0.0.1", 5432, &v), R_DB);
	assert_int_equal(v, LG_FAIL);
}

static void test_limiter_matches_ipv6_and_v4_mapped(void **state)
{
	(void)state;
	assert_int_equal(connect_rule("fd12:3456::1", 80, NULL), R_V6NET);
	assert_int_equal(connect_rule("fe80::1", 80, NULL), R_CATCHALL);
	/* ::ffff:a.b.c.d is the IPv4 address a.b.c.d: it matches IPv4 rules. */
	assert_int_equal(connect_rule("::ffff:10.1.2.3", 80, NULL), R_TENNET);
	assert_int_equal(connect_rule("::ffff:127.0.0.1", 5432, NULL), R_DB);
	/* And an IPv4 destination matches an IPv6 rule written over the mapped range. */
	assert_int_equal(connect_rule("192.168.7.7", 80, NULL), R_MAPPED6);
	assert_int_equal(connect_rule("::ffff:192.168.7.8", 80, NULL), R_MAPPED6);
	assert_int_equal(connect_rule("192.169.0.1", 80, NULL), R_CATCHALL);
	/* Not the same as the IPv4-compatible (deprecated) ::a.b.c.d. */
	assert_int_equal(connect_rule("::10.1.2.3", 80, NULL), R_CATCHALL);
}

static void test_limiter_ignores_non_inet_and_short_addresses(void **state)
{
	uint64_t wait = 1;
	int rule = 5;
	struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "/tmp/x" };
	struct sockaddr_in sin = v4("127.0.0.1", 5432);

	(void)state;
	assert_int_equal(lg_limit_before_connect((struct sockaddr *)&sun, sizeof(sun), &wait, &rule),
			 LG_PASS);
	assert_int_equal(rule, -1);
	assert_int_equal(wait, 0);
	rule = 5;
	assert_int_equal(lg_limit_before_connect((struct sockaddr *)&sin, sizeof(sin) - 1, &wait,
						 &rule), LG_PASS);
	assert_int_equal(rule, -1);
	rule = 5;
	assert_int_equal(lg_limit_before_connect(NULL, 0, &wait, &rule), LG_PASS);
	assert_int_equal(rule, -1);
	/* Out-of-range rules are ignored by lg_limit_waited. */
	lg_limit_waited(-1, 1000);
	lg_limit_waited(NRULES, 1000);
	lg_limit_waited(1 << 30, 1000);
}

static void test_limiter_accept_wait_rule_before_accept(void **state)
{
	uint64_t wait;
	int rule;

	(void)state;
	struct counts before = counts_of(R_ACC_WAIT);
	/* Port 8080: acc-wait (burst 2) is decided before accept(2). */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(lg_limit_before_accept(-1, 8080, &wait, &rule), LG_PASS);
		assert_int_equal(rule, R_ACC_WAIT);
	}
	assert_int_equal(lg_limit_before_accept(-1, 8080, &wait, &rule), LG_WAIT);
	assert_int_equal(rule, R_ACC_WAIT);
	assert_true(wait > 990000 * MS && wait <= 1000000 * MS);   /* 1000 s per token */
	/* The blocking accept sleeps and asks again: the same call is counted limited once. */
	assert_int_equal(lg_limit_before_accept(-1, 8080, &wait, &rule), LG_WAIT);
	lg_limit_waited(rule, 7 * (uint64_t)MS);
	lg_limit_waited(rule, 3 * (uint64_t)MS);
	/* ... and the wait rule was the first match for 8080: after accept, nothing more is asked
	 * (acc-shed, which also matches 8080, is not consulted). */
	assert_int_equal(lg_limit_after_accept(-1, 8080, &rule), LG_PASS);
	assert_int_equal(rule, -1);
	struct counts after = counts_of(R_ACC_WAIT);
	assert_int_equal(after.allowed - before.allowed, 2);
	assert_int_equal(after.limited - before.limited, 1);
	assert_int_equal(after.waited_ms - before.waited_ms, 10);
	assert_int_equal(counts_of(R_ACC_SHED).allowed, 0);
}

static void test_limiter_accept_shed_rule_after_accept(void **state)
{
	uint64_t wait = 99;
	int rule;

	(void)state;
	/* Port 9090 matches acc-shed (any port): nothing before accept, the decision after it. */
	assert_int_equal(lg_limit_before_accept(-1, 9090, &wait, &rule), LG_PASS);
	assert_int_equal(rule, -1);
	assert_int_equal(wait, 0);
	assert_int_equal(lg_limit_after_accept(-1, 9090, &rule), LG_PASS);
	assert_int_equal(rule, R_ACC_SHED);
	assert_int_equal(lg_limit_after_accept(-1, 9090, &rule), LG_SHED);
	assert_int_equal(lg_limit_after_accept(-1, 9091, &rule), LG_SHED);
	struct counts c = counts_of(R_ACC_SHED);
	assert_int_equal(c.allowed, 1);
	assert_int_equal(c.limited, 2);
}

static void test_limiter_observe_mode_counts_but_passes(void **state)
{
	enum lg_verdict v;

	(void)state;
	lg_policy.mode = LG_MODE_OBSERVE;
	struct counts before = counts_of(R_OBSERVED);
	assert_int_equal(connect_rule("127.0.0.1", 7777, &v), R_OBSERVED);   /* burst 1 */
	assert_int_equal(v, LG_PASS);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(connect_rule("127.0.0.1", 7777, &v), R_OBSERVED);
		assert_int_equal(v, LG_PASS);
	}
	/* A would-be wait on accept passes too. */
	uint64_t wait;
	int rule;
	assert_int_equal(lg_limit_before_accept(-1, 8080, &wait, &rule), LG_PASS);
	assert_int_equal(wait, 0);
	lg_policy.mode = LG_MODE_ENFORCE;
	struct counts after = counts_of(R_OBSERVED);
	assert_int_equal(after.allowed - before.allowed, 1);
	assert_int_equal(after.limited - before.limited, 3);
	/* Enforce again: the bucket is as observe left it (the refusals took nothing, and the one
	 * token is spent). */
	assert_int_equal(connect_rule("127.0.0.1", 7777, &v), R_OBSERVED);
	assert_int_equal(v, LG_FAIL);
}

static void test_limiter_connect_wait_rule_waits(void **state)
{
	enum lg_verdict v;

	(void)state;
	struct counts before = counts_of(R_V6NET);
	/* v6net has burst 100; some were spent above. Spend the rest, then it says wait. */
	uint64_t spent = before.allowed;
	for (uint64_t i = spent; i < 100; i++) {
		assert_int_equal(connect_rule("fd00::5", 1, &v), R_V6NET);
		assert_int_equal(v, LG_PASS);
	}
	assert_int_equal(connect_rule("fd00::5", 1, &v), R_V6NET);
	assert_int_equal(v, LG_WAIT);
	assert_int_equal(counts_of(R_V6NET).allowed, 100);
}

/* A listening socket on ip, port chosen by the kernel. */
static int listen_on(const char *ip, int *port)
{
	struct sockaddr_in a = v4(ip, 0);
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s, 1), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return s;
}

static void test_limiter_accept_addr_is_the_listeners(void **state)
{
	int rule, p3, p1;
	int s3 = listen_on("127.0.0.3", &p3), s1 = listen_on("127.0.0.1", &p1);

	(void)state;
	/* acc-local (127.0.0.3, any port, burst 1) is written before acc-shed (any listener). */
	errno = 4242;
	assert_int_equal(lg_limit_after_accept(s3, p3, &rule), LG_PASS);
	assert_int_equal(errno, 4242);   /* getsockname's errno, if any, is not leaked */
	assert_int_equal(rule, R_ACC_LOCAL);
	assert_int_equal(lg_limit_after_accept(s3, p3, &rule), LG_SHED);
	assert_int_equal(rule, R_ACC_LOCAL);
	assert_int_equal(lg_limit_after_accept(s1, p1, &rule), LG_SHED);   /* acc-shed, spent above */
	assert_int_equal(rule, R_ACC_SHED);
	/* Not a socket: no local address, so only address-free rules can match. */
	errno = 4242;
	assert_int_equal(lg_limit_after_accept(-1, p3, &rule), LG_SHED);
	assert_int_equal(rule, R_ACC_SHED);
	assert_int_equal(errno, 4242);
	struct counts c = counts_of(R_ACC_LOCAL);
	assert_int_equal(c.allowed, 1);
	assert_int_equal(c.limited, 1);
	close(s3);
	close(s1);
}

int main(void)
{
	/* One group (tests/run-unit.sh counts one summary per binary): the API tests come first and
	 * run without the runtime; each rule test boots it, once. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limiter_api_rejects_bad_parameters),
		cmocka_unit_test(test_limiter_api_admits_burst_then_waits),
		cmocka_unit_test(test_limiter_admits_burst_plus_rate_one_thread),
		cmocka_unit_test(test_limiter_admits_burst_plus_rate_four_threads),
		cmocka_unit_test_setup(test_limiter_first_matching_rule_applies, boot),
		cmocka_unit_test_setup(test_limiter_matches_ipv6_and_v4_mapped, boot),
		cmocka_unit_test_setup(test_limiter_ignores_non_inet_and_short_addresses, boot),
		cmocka_unit_test_setup(test_limiter_accept_wait_rule_before_accept, boot),
		cmocka_unit_test_setup(test_limiter_accept_shed_rule_after_accept, boot),
		cmocka_unit_test_setup(test_limiter_accept_addr_is_the_listeners, boot),
		cmocka_unit_test_setup(test_limiter_observe_mode_counts_but_passes, boot),
		cmocka_unit_test_setup(test_limiter_connect_wait_rule_waits, boot),
	};
	return cmocka_run_group_tests_name("limiter", tests, NULL, NULL);
}
