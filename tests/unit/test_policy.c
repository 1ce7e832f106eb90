/* Policy parsing of valid policies: the defaults, every key, numbers, limits and report values,
 * loading from files (its errors included), the examples, names, and parsing from many threads.
 * Every class of parse error with its exact position is in test_policy_errors.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy_helpers.h"

/* ---- defaults ---- */

static void test_policy_embedded_default_matches_defaults(void **state)
{
	struct lg_policy parsed, defaults;
	char err[512] = "";
	(void)state;

	assert_int_equal(lg_policy_default_json_len, strlen(lg_policy_default_json));
	memset(&parsed, 0xa5, sizeof(parsed));
	assert_int_equal(lg_policy_parse(lg_policy_default_json, lg_policy_default_json_len,
					 "default", &parsed, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	lg_policy_defaults(&defaults);

	/* Field by field first, so a mismatch names itself; then every byte. */
	assert_int_equal(parsed.version, defaults.version);
	assert_int_equal(parsed.mode, defaults.mode);
	assert_string_equal(parsed.report.dir, defaults.report.dir);
	assert_string_equal(parsed.report.name, defaults.report.name);
	assert_int_equal(parsed.report.formats, defaults.report.formats);
	assert_int_equal(parsed.report.at_exit, defaults.report.at_exit);
	assert_int_equal(parsed.report.interval_s, defaults.report.interval_s);
	assert_int_equal(parsed.report.signal, defaults.report.signal);
	assert_int_equal(parsed.report.violation_exit_code, defaults.report.violation_exit_code);
	assert_int_equal(parsed.stacks.max_depth, defaults.stacks.max_depth);
	assert_int_equal(parsed.heap.enabled, defaults.heap.enabled);
	assert_int_equal(parsed.heap.sample_bytes, defaults.heap.sample_bytes);
	assert_int_equal(parsed.heap.max_bytes, defaults.heap.max_bytes);
	assert_int_equal(parsed.heap.on_max, defaults.heap.on_max);
	assert_int_equal(parsed.heap.growth_windows, defaults.heap.growth_windows);
	assert_int_equal(parsed.fd.enabled, defaults.fd.enabled);
	assert_int_equal(parsed.fd.max, defaults.fd.max);
	assert_true(parsed.fd.warn_ratio == defaults.fd.warn_ratio);
	assert_int_equal(parsed.fd.on_max, defaults.fd.on_max);
	assert_int_equal(parsed.fd.stacks, defaults.fd.stacks);
	assert_memory_equal(&parsed.net, &defaults.net, sizeof(parsed.net));
	assert_int_equal(parsed.nlimits, defaults.nlimits);
	assert_int_equal(parsed.clock.enabled, defaults.clock.enabled);
	assert_int_equal(parsed.clock.jump_ms, defaults.clock.jump_ms);
	assert_int_equal(parsed.clock.realtime, defaults.clock.realtime);
	assert_int_equal(parsed.clock.ninject, defaults.clock.ninject);
	assert_int_equal(parsed.locks.enabled, defaults.locks.enabled);
	assert_int_equal(parsed.locks.sample, defaults.locks.sample);
	assert_int_equal(parsed.threads.enabled, defaults.threads.enabled);
	assert_int_equal(parsed.threads.max, defaults.threads.max);
	assert_memory_equal(&parsed, &defaults, sizeof(parsed));
}

/* DESIGN.md section 4 states these values; the embedded file and the struct must hold them. */
static void test_policy_defaults_hold_the_documented_values(void **state)
{
	struct lg_policy p;
	(void)state;

	memset(&p, 0xa5, sizeof(p));
	lg_policy_defaults(&p);
	assert_int_equal(p.version, 1);
	assert_int_equal(p.mode, LG_MODE_OBSERVE);
	assert_string_equal(p.report.dir, "");
	assert_string_equal(p.report.name, "guard-%e-%p");
	assert_int_equal(p.report.formats, LG_FORMAT_JSON);
	assert_true(p.report.at_exit);
	assert_int_equal(p.report.signal, SIGUSR2);
	assert_int_equal(p.stacks.max_depth, 32);
	assert_int_equal(p.heap.sample_bytes, 524288);
	assert_int_equal(p.heap.on_max, LG_ON_MAX_REPORT);
	assert_int_equal(p.heap.growth_windows, 3);
	assert_true(p.fd.warn_ratio == 0.8);
	assert_int_equal(p.fd.on_max, LG_ON_MAX_FAIL);
	assert_true(p.fd.stacks);
	assert_int_equal(p.clock.jump_ms, 1000);
	assert_int_equal(p.locks.sample, 1);
	assert_true(p.threads.enabled);
}

static void test_policy_empty_object_is_the_defaults(void **state)
{
	struct lg_policy parsed, defaults;
	(void)state;

	memset(&parsed, 0x5a, sizeof(parsed));
	parse_ok("{}", &parsed);
	lg_policy_defaults(&defaults);
	assert_memory_equal(&parsed, &defaults, sizeof(parsed));
	/* Whitespace of every JSON kind around it changes nothing. */
	memset(&parsed, 0x5a, sizeof(parsed));
	parse_ok(" \t\r\n{ \n}\n", &parsed);
	assert_memory_equal(&parsed, &defaults, sizeof(parsed));
}

/* ---- every key ---- */

static const char full_policy[] =
	"{\n"
	"  \"version\": 1,\n"
	"  \"mode\": \"enforce\",\n"
	"  \"report\": {\n"
	"    \"dir\": \"/var/tmp/g\",\n"
	"    \"name\": \"r-%e-%p-%t-%%\",\n"
	"    \"formats\": [\"prom\", \"json\", \"pprof\", \"folded\"],\n"
	"    \"at_exit\": false,\n"
	"    \"interval_s\": 30,\n"
	"    \"signal\": \"SIGUSR1\",\n"
	"    \"violation_exit_code\": 3\n"
	"  },\n"
	"  \"stacks\": { \"max_depth\": 128 },\n"
	"  \"heap\": { \"enabled\": false, \"sample_bytes\": 1, \"max_bytes\": 1073741824,\n"
	"            \"on_max\": \"abort\", \"growth_windows\": 5 },\n"
	"  \"fd\": { \"enabled\": false, \"max\": 100, \"warn_ratio\": 1, \"on_max\": \"report\",\n"
	"          \"stacks\": false },\n"
	"  \"net\": { \"connect_timeout_ms\": 1, \"read_timeout_ms\": 2, \"write_timeout_ms\": 3,\n"
	"           \"idle_timeout_ms\": 4, \"max_connections\": 5 },\n"
	"  \"limits\": [\n"
	"    { \"name\": \"inbound\", \"call\": \"accept\", \"rate\": 1000, \"burst\": 100,\n"
	"      \"port\": 8080, \"on_limit\": \"wait\" },\n"
	"    { \"on_limit\": \"fail\", \"name\": \"db\", \"call\": \"connect\", \"rate\": 0.5,\n"
	"      \"addr\": \"fd00::/8\", \"port\": 5432 }\n"
	"  ],\n"
	"  \"clock\": { \"enabled\": false, \"jump_ms\": 250, \"realtime\": \"clamp\",\n"
	"             \"inject\": [ { \"at_ms\": 0, \"clock\": \"realtime\", \"step_ms\": -2000 },\n"
	"                         { \"at_ms\": 5000, \"step_ms\": 7 } ] },\n"
	"  \"locks\": { \"enabled\": false, \"sample\": 16 },\n"
	"  \"threads\": { \"enabled\": false, \"max\": 64 }\n"
	"}\n";

static void test_policy_full_policy_sets_every_key(void **state)
{
	struct lg_policy p;
	static const uint8_t fd00[16] = { 0xfd };
	(void)state;

	parse_ok(full_policy, &p);
	assert_int_equal(p.version, 1);
	assert_int_equal(p.mode, LG_MODE_ENFORCE);
	assert_string_equal(p.report.dir, "/var/tmp/g");
	assert_string_equal(p.report.name, "r-%e-%p-%t-%%");
	assert_int_equal(p.report.formats,
			 LG_FORMAT_JSON | LG_FORMAT_FOLDED | LG_FORMAT_PPROF | LG_FORMAT_PROM);
	assert_false(p.report.at_exit);
	assert_int_equal(p.report.interval_s, 30);
	assert_int_equal(p.report.signal, SIGUSR1);
	assert_int_equal(p.report.violation_exit_code, 3);
	assert_int_equal(p.stacks.max_depth, 128);
	assert_false(p.heap.enabled);
	assert_int_equal(p.heap.sample_bytes, 1);
	assert_int_equal(p.heap.max_bytes, 1073741824);
	assert_int_equal(p.heap.on_max, LG_ON_MAX_ABORT);
	assert_int_equal(p.heap.growth_windows, 5);
	assert_false(p.fd.enabled);
	assert_int_equal(p.fd.max, 100);
	assert_true(p.fd.warn_ratio == 1.0);
	assert_int_equal(p.fd.on_max, LG_ON_MAX_REPORT);
	assert_false(p.fd.stacks);
	assert_int_equal(p.net.connect_timeout_ms, 1);
	assert_int_equal(p.net.read_timeout_ms, 2);
	assert_int_equal(p.net.write_timeout_ms, 3);
	assert_int_equal(p.net.idle_timeout_ms, 4);
	assert_int_equal(p.net.max_connections, 5);

	assert_int_equal(p.nlimits, 2);
	assert_string_equal(p.limits[0].name, "inbound");
	assert_int_equal(p.limits[0].call, LG_LIMIT_ACCEPT);
	assert_true(p.limits[0].rate == 1000.0);
	assert_true(p.limits[0].burst == 100.0);
	assert_int_equal(p.limits[0].port, 8080);
	assert_int_equal(p.limits[0].addr.family, 0);
	assert_int_equal(p.limits[0].on_limit, LG_ON_LIMIT_WAIT);
	assert_string_equal(p.limits[1].name, "db");
	assert_int_equal(p.limits[1].call, LG_LIMIT_CONNECT);
	assert_true(p.limits[1].rate == 0.5);
	assert_true(p.limits[1].burst == 1.0);
	assert_int_equal(p.limits[1].port, 5432);
	assert_int_equal(p.limits[1].addr.family, AF_INET6);
	assert_int_equal(p.limits[1].addr.prefix, 8);
	assert_memory_equal(p.limits[1].addr.addr, fd00, 16);
	assert_int_equal(p.limits[1].on_limit, LG_ON_LIMIT_FAIL);

	assert_false(p.clock.enabled);
	assert_int_equal(p.clock.jump_ms, 250);
	assert_int_equal(p.clock.realtime, LG_REALTIME_CLAMP);
	assert_int_equal(p.clock.ninject, 2);
	assert_int_equal(p.clock.inject[0].at_ms, 0);
	assert_int_equal(p.clock.inject[0].clock, LG_CLOCK_REALTIME);
	assert_int_equal(p.clock.inject[0].step_ms, -2000);
	assert_int_equal(p.clock.inject[1].at_ms, 5000);
	assert_int_equal(p.clock.inject[1].clock, LG_CLOCK_REALTIME);
	assert_int_equal(p.clock.inject[1].step_ms, 7);
	assert_false(p.locks.enabled);
	assert_int_equal(p.locks.sample, 16);
	assert_false(p.threads.enabled);
	assert_int_equal(p.threads.max, 64);
}

/* ---- numbers ---- */

static void test_policy_exact_integers_in_any_notation_are_accepted(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"heap\": {\"sample_bytes\": 1e3, \"max_bytes\": 2.5E2}, \"fd\": {\"max\": 10.0},"
		 " \"threads\": {\"max\": 0.5e1}, \"net\": {\"max_connections\": -0}}", &p);
	assert_int_equal(p.heap.sample_bytes, 1000);
	assert_int_equal(p.heap.max_bytes, 250);
	assert_int_equal(p.fd.max, 10);
	assert_int_equal(p.threads.max, 5);
	assert_int_equal(p.net.max_connections, 0);
}

/* ---- limits ---- */

static void test_policy_limit_addresses_parse_to_prefixes(void **state)
{
	static const uint8_t v4[4] = { 10, 1, 0, 0 }, host[4] = { 127, 0, 0, 1 };
	static const uint8_t v6[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	static const uint8_t zero[16] = { 0 };
	struct lg_policy p;
	(void)state;

	parse_ok(RULE(", \"addr\": \"10.1.0.0/16\""), &p);
	assert_int_equal(p.limits[0].addr.family, AF_INET);
	assert_int_equal(p.limits[0].addr.prefix, 16);
	assert_memory_equal(p.limits[0].addr.addr, v4, 4);
	parse_ok(RULE(", \"addr\": \"127.0.0.1\""), &p);
	assert_int_equal(p.limits[0].addr.prefix, 32);
	assert_memory_equal(p.limits[0].addr.addr, host, 4);
	parse_ok(RULE(", \"addr\": \"::1\""), &p);
	assert_int_equal(p.limits[0].addr.family, AF_INET6);
	assert_int_equal(p.limits[0].addr.prefix, 128);
	assert_memory_equal(p.limits[0].addr.addr, v6, 16);
	parse_ok(RULE(", \"addr\": \"0.0.0.0/0\""), &p);
	assert_int_equal(p.limits[0].addr.family, AF_INET);
	assert_int_equal(p.limits[0].addr.prefix, 0);
	parse_ok(RULE(", \"addr\": \"::/0\""), &p);
	assert_int_equal(p.limits[0].addr.family, AF_INET6);
	assert_memory_equal(p.limits[0].addr.addr, zero, 16);
	parse_ok(RULE(""), &p);
	assert_int_equal(p.limits[0].addr.family, 0);
}

static void test_policy_limit_on_limit_defaults_follow_the_call(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"limits\": [{\"name\": \"a\", \"call\": \"accept\", \"rate\": 1},"
		 " {\"name\": \"c\", \"call\": \"connect\", \"rate\": 1},"
		 " {\"on_limit\": \"wait\", \"name\": \"w\", \"call\": \"accept\", \"rate\": 1},"
		 " {\"name\": \"x\", \"on_limit\": \"wait\", \"call\": \"connect\", \"rate\": 1},"
		 " {\"name\": \"s\", \"call\": \"accept\", \"rate\": 1, \"on_limit\": \"shed\"}]}", &p);
	assert_int_equal(p.nlimits, 5);
	assert_int_equal(p.limits[0].on_limit, LG_ON_LIMIT_SHED);
	assert_int_equal(p.limits[1].on_limit, LG_ON_LIMIT_FAIL);
	assert_int_equal(p.limits[2].on_limit, LG_ON_LIMIT_WAIT);
	assert_int_equal(p.limits[3].on_limit, LG_ON_LIMIT_WAIT);
	assert_int_equal(p.limits[4].on_limit, LG_ON_LIMIT_SHED);
}

/* The first matching rule applies, so rules must keep the order they were written in. */
static void test_policy_limits_keep_their_written_order(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"limits\": [{\"name\": \"specific\", \"call\": \"connect\", \"rate\": 1,"
		 " \"addr\": \"10.0.0.5\", \"port\": 5432},"
		 " {\"name\": \"broad\", \"call\": \"connect\", \"rate\": 100, \"addr\": \"10.0.0.0/8\"},"
		 " {\"name\": \"any\", \"call\": \"connect\", \"rate\": 1000}]}", &p);
	assert_int_equal(p.nlimits, 3);
	assert_string_equal(p.limits[0].name, "specific");
	assert_string_equal(p.limits[1].name, "broad");
	assert_string_equal(p.limits[2].name, "any");
	assert_int_equal(p.limits[0].addr.prefix, 32);
	assert_int_equal(p.limits[1].addr.prefix, 8);
}

/* ---- report ---- */

static void test_policy_report_signal_names_and_null(void **state)
{
	static const struct { const char *text; int signo; } ok[] = {
		{ "\"SIGUSR1\"", SIGUSR1 }, { "\"USR2\"", SIGUSR2 }, { "\"SIGHUP\"", SIGHUP },
		{ "\"sigterm\"", SIGTERM }, { "\"winch\"", SIGWINCH }, { "null", 0 },
	};
	char json[128];
	struct lg_policy p;
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(json, sizeof(json), "{\"report\": {\"signal\": %s}}", ok[i].text);
		parse_ok(json, &p);
		assert_int_equal(p.report.signal, ok[i].signo);
	}
	expect_error("{\"report\": {\"signal\": \"SIGFOO\"}}",
		     SRC ":1:23: \"report.signal\" names no signal: \"SIGFOO\"; use a name like "
		     "\"SIGUSR2\", or null");
	expect_error_at("{\"report\": {\"signal\": \"SIG\"}}", "1:23", "names no signal");
	expect_error_at("{\"report\": {\"signal\": \"\"}}", "1:23", "names no signal");
	expect_error_at("{\"report\": {\"signal\": 12}}", "1:23",
			"\"report.signal\" must be a signal name like \"SIGUSR2\", or null for none");
}

/* ---- files ---- */

static char *temp_file(const void *data, size_t len)
{
	const char *dir = getenv("TMPDIR");
	char *path = malloc(4096);
	int fd;

	assert_non_null(path);
	snprintf(path, 4096, "%s/test_policy.XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_policy_load_file_names_the_path_in_errors(void **state)
{
	static const char good[] = "{\"mode\": \"enforce\", \"fd\": {\"max\": 77}}";
	static const char bad[] = "{\n  \"fd\": {\"max\": -3}\n}";
	char *path, err[512], expected[4200];
	struct lg_policy p;
	(void)state;

	path = temp_file(good, sizeof(good) - 1);
	assert_int_equal(lg_policy_load_file(path, &p, err, sizeof(err)), 0);
	assert_int_equal(p.mode, LG_MODE_ENFORCE);
	assert_int_equal(p.fd.max, 77);
	unlink(path);
	free(path);

	path = temp_file(bad, sizeof(bad) - 1);
	assert_int_equal(lg_policy_load_file(path, &p, err, sizeof(err)), -EINVAL);
	snprintf(expected, sizeof(expected), "%s:2:17: \"fd.max\" must be a non-negative integer", path);
	assert_string_equal(err, expected);
	unlink(path);
	free(path);
}

static void test_policy_load_file_missing_returns_errno(void **state)
{
	struct lg_policy p;
	char err[512];
	(void)state;

	assert_int_equal(lg_policy_load_file("/nonexistent/policy.json", &p, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/policy.json: No such file or directory");
	assert_int_equal(lg_policy_load_file("/", &p, err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "/: Is a directory");
}

static void test_policy_load_file_rejects_2_mib(void **state)
{
	size_t len = 2u << 20;
	char *json = malloc(len), *path, err[512], expected[4200];
	struct lg_policy p;
	(void)state;

	assert_non_null(json);
	memset(json, ' ', len);
	json[0] = '{';
	json[len - 1] = '}';
	path = temp_file(json, len);
	assert_int_equal(lg_policy_load_file(path, &p, err, sizeof(err)), -EFBIG);
	snprintf(expected, sizeof(expected), "%s: policy file is larger than 1 MiB", path);
	assert_string_equal(err, expected);
	unlink(path);
	free(path);
	free(json);
}

/* A pipe has no size up front (guardrun --policy <(...)): it is read to the end. */
static void test_policy_load_file_reads_a_pipe(void **state)
{
	static const char text[] = "{\"threads\": {\"max\": 9}}";
	struct lg_policy p;
	char path[64], err[512];
	int fds[2];
	(void)state;

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fds[1]);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[0]);
	assert_int_equal(lg_policy_load_file(path, &p, err, sizeof(err)), 0);
	assert_int_equal(p.threads.max, 9);
	close(fds[0]);
}

/* The repository root: from this file's path as the compiler saw it (relative to the directory
 * make runs in), else two levels above the binary (build/tests/test_policy). */
static void find_root(char *root, size_t len)
{
	static const char suffix[] = "tests/unit/test_policy.c";
	char probe[4300], exe[4096];
	size_t n = strlen(__FILE__) - (sizeof(suffix) - 1);
	ssize_t got;

	snprintf(root, len, "%.*s", (int)n, __FILE__);
	snprintf(probe, sizeof(probe), "%spolicy/examples", root);
	if (access(probe, R_OK) == 0)
		return;
	got = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(got > 0);
	exe[got] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(root, len, "%s/../../", exe);
}

/* The examples in policy/examples are documentation: they must stay valid. */
static void test_policy_examples_parse(void **state)
{
	char root[4200], path[4400], err[4600];
	struct lg_policy p;
	(void)state;

	find_root(root, sizeof(root));
#define LOAD(name) do { \
		snprintf(path, sizeof(path), "%spolicy/examples/" name, root); \
		if (lg_policy_load_file(path, &p, err, sizeof(err)) != 0) \
			fail_msg("%s", err); \
	} while (0)
	LOAD("strict-test.json");
	assert_int_equal(p.mode, LG_MODE_ENFORCE);
	assert_int_equal(p.report.violation_exit_code, 3);
	assert_true(p.fd.max > 0);
	assert_true(p.threads.max > 0);
	LOAD("canary.json");
	assert_true(p.nlimits > 0);
	assert_true(p.net.connect_timeout_ms > 0);
	LOAD("clock-test.json");
	assert_true(p.clock.ninject > 0);
	assert_int_equal(p.clock.inject[0].clock, LG_CLOCK_REALTIME);
	LOAD("every-alloc.json");
	assert_int_equal(p.heap.sample_bytes, 1);
#undef LOAD
}

/* ---- names ---- */

static void test_policy_names_print_modes_and_signals(void **state)
{
	(void)state;
	assert_string_equal(lg_policy_mode_name(LG_MODE_OBSERVE), "observe");
	assert_string_equal(lg_policy_mode_name(LG_MODE_ENFORCE), "enforce");
	assert_string_equal(lg_policy_mode_name((enum lg_mode)7), "unknown");
	assert_string_equal(lg_policy_signal_name(SIGUSR2), "SIGUSR2");
	assert_string_equal(lg_policy_signal_name(SIGHUP), "SIGHUP");
	assert_string_equal(lg_policy_signal_name(SIGTERM), "SIGTERM");
	assert_null(lg_policy_signal_name(0));
	assert_null(lg_policy_signal_name(-1));
	assert_null(lg_policy_signal_name(1000));
}

/* ---- threads ---- */

static void *parse_many(void *arg)
{
	intptr_t id = (intptr_t)arg;

	for (int i = 0; i < 200; i++) {
		struct lg_policy p;
		char json[128], err[512];
		int bad = (i + (int)id) % 2;

		snprintf(json, sizeof(json), bad ? "{\n\"fd\": {\"max\": -%d}}" : "{\"fd\": {\"max\": %d}}",
			 (int)id * 1000 + i);
		int rc = lg_policy_parse(json, strlen(json), SRC, &p, err, sizeof(err));
		if (bad ? rc != -EINVAL || strncmp(err, SRC ":2:15: ", strlen(SRC ":2:15: ")) != 0
			: rc != 0 || p.fd.max != (uint64_t)(id * 1000 + i))
			return (void *)1;
	}
	return NULL;
}

static void test_policy_parse_is_thread_safe(void **state)
{
	pthread_t threads[8];
	(void)state;

	for (intptr_t i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, parse_many, (void *)i), 0);
	for (int i = 0; i < 8; i++) {
		void *result = (void *)1;
		assert_int_equal(pthread_join(threads[i], &result), 0);
		assert_null(result);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_embedded_default_matches_defaults),
		cmocka_unit_test(test_policy_defaults_hold_the_documented_values),
		cmocka_unit_test(test_policy_empty_object_is_the_defaults),
		cmocka_unit_test(test_policy_full_policy_sets_every_key),
		cmocka_unit_test(test_policy_exact_integers_in_any_notation_are_accepted),
		cmocka_unit_test(test_policy_limit_addresses_parse_to_prefixes),
		cmocka_unit_test(test_policy_limit_on_limit_defaults_follow_the_call),
		cmocka_unit_test(test_policy_limits_keep_their_written_order),
		cmocka_unit_test(test_policy_report_signal_names_and_null),
		cmocka_unit_test(test_policy_load_file_names_the_path_in_errors),
		cmocka_unit_test(test_policy_load_file_missing_returns_errno),
		cmocka_unit_test(test_policy_load_file_rejects_2_mib),
		cmocka_unit_test(test_policy_load_file_reads_a_pipe),
		cmocka_unit_test(test_policy_examples_parse),
		cmocka_unit_test(test_policy_names_print_modes_and_signals),
		cmocka_unit_test(test_policy_parse_is_thread_safe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
