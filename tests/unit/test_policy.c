/* Policy parsing: defaults, every key, and every class of error with its exact position. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy/policy.h"

#define SRC "policy.json"

/* Parse from a heap copy of exactly len bytes with no NUL after it, so that AddressSanitizer
 * catches any read past the end (the API takes a length, not a C string). */
static int parse_len(const char *json, size_t len, struct lg_policy *p, char *err, size_t errlen)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, json, len);
	rc = lg_policy_parse(copy, len, SRC, p, err, errlen);
	free(copy);
	return rc;
}

static void parse_ok(const char *json, struct lg_policy *p)
{
	char err[512] = "";
	int rc = parse_len(json, strlen(json), p, err, sizeof(err));

	if (rc != 0)
		fail_msg("parse failed (%d): %s", rc, err);
}

/* The whole message must be exactly this. */
static void expect_error(const char *json, const char *message)
{
	struct lg_policy p;
	char err[512] = "";

	assert_int_equal(parse_len(json, strlen(json), &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, message);
}

/* The message must be at LINE:COL and hold fragment. */
static void expect_error_len(const char *json, size_t len, const char *at, const char *fragment)
{
	struct lg_policy p;
	char err[512] = "", prefix[64];

	assert_int_equal(parse_len(json, len, &p, err, sizeof(err)), -EINVAL);
	snprintf(prefix, sizeof(prefix), SRC ":%s: ", at);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected position %s, got: %s", at, err);
	if (!strstr(err, fragment))
		fail_msg("expected \"%s\" in: %s", fragment, err);
}

static void expect_error_at(const char *json, const char *at, const char *fragment)
{
	expect_error_len(json, strlen(json), at, fragment);
}

/* "1:COL" of needle's first occurrence in one-line json, for long generated inputs. */
static const char *col_of(const char *json, const char *needle, char *buf, size_t len)
{
	const char *hit = strstr(json, needle);

	assert_non_null(hit);
	snprintf(buf, len, "1:%zu", (size_t)(hit - json) + 1);
	return buf;
}

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

/* ---- positions and messages ---- */

static void test_policy_wrong_type_reports_line_and_column(void **state)
{
	(void)state;
	expect_error("{\n  \"fd\": {\n    \"max\": \"ten\"\n  }\n}",
		     SRC ":3:12: \"fd.max\" must be a non-negative integer");
	expect_error("{\n  \"heap\": {\n    \"enabled\": 1\n  }\n}",
		     SRC ":3:16: \"heap.enabled\" must be true or false");
	expect_error("{\"fd\": []}", SRC ":1:8: \"fd\" must be an object");
	expect_error("{\"report\": {\"formats\": \"json\"}}", SRC ":1:24: \"report.formats\" must be "
		     "a non-empty array of \"json\", \"folded\", \"pprof\", \"prom\"");
	expect_error("{\"limits\": {}}", SRC ":1:12: \"limits\" must be an array of rules like "
		     "{\"name\": \"in\", \"call\": \"accept\", \"rate\": 100}");
}

static void test_policy_unknown_key_suggests_the_closest(void **state)
{
	(void)state;
	expect_error("{\n  \"heap\": { \"sampel_bytes\": 1 }\n}",
		     SRC ":2:13: unknown key \"heap.sampel_bytes\"; did you mean \"heap.sample_bytes\"?");
	expect_error("{\"Mode\": \"observe\"}",
		     SRC ":1:2: unknown key \"Mode\"; did you mean \"mode\"?");
}

static void test_policy_unknown_key_lists_the_known_keys(void **state)
{
	(void)state;
	expect_error("{\"locks\": {\"enabled\": true, \"zzzzzzzz\": 1}}",
		     SRC ":1:29: unknown key \"locks.zzzzzzzz\"; \"locks\" takes \"enabled\", \"sample\"");
	expect_error_at("{\"zzzzzzzz\": 1}", "1:2", "unknown key \"zzzzzzzz\"; a policy takes "
			"\"version\", \"mode\", \"report\"");
	/* A key with a quote and a newline is shown escaped, on one line. */
	expect_error_at("{\"a\\\"b\\nc\": 1}", "1:2", "unknown key \"a\\\"b\\x0ac\"");
}

static void test_policy_unknown_key_inside_limits_and_injects(void **state)
{
	const char *limit = "{\"limits\": [{\"name\": \"a\", \"call\": \"accept\", \"rate\": 1},"
			    " {\"name\": \"b\", \"call\": \"accept\", \"rate\": 1, \"prot\": 80}]}";
	const char *inject = "{\"clock\": {\"inject\": [{\"at_ms\": 1, \"step_ms\": 1, "
			     "\"clok\": \"realtime\"}]}}";
	char at[16];
	(void)state;

	expect_error_at(limit, col_of(limit, "\"prot\"", at, sizeof(at)),
			"unknown key \"limits[1].prot\"; did you mean \"limits[1].port\"?");
	expect_error_at(inject, col_of(inject, "\"clok\"", at, sizeof(at)),
			"unknown key \"clock.inject[0].clok\"; did you mean \"clock.inject[0].clock\"?");
	expect_error_at("{\"stacks\": {\"depth\": 3}}", "1:13", "unknown key \"stacks.depth\"");
}

static void test_policy_duplicate_key_is_an_error(void **state)
{
	(void)state;
	expect_error("{\n \"mode\": \"observe\",\n \"mode\": \"enforce\"\n}",
		     SRC ":3:2: duplicate key \"mode\" (first at 2:2); keep one");
	expect_error_at("{\"fd\": {\"max\": 1, \"stacks\": true, \"max\": 2}}", "1:35",
			"duplicate key \"fd.max\" (first at 1:9)");
}

static void test_policy_bad_enum_names_the_choices(void **state)
{
	(void)state;
	expect_error("{\"heap\": {\"on_max\": \"explode\"}}",
		     SRC ":1:21: \"heap.on_max\" must be one of \"report\", \"fail\", \"abort\"");
	expect_error("{\"mode\": \"Enforce\"}", SRC ":1:10: \"mode\" must be \"observe\" or \"enforce\"");
	expect_error("{\"mode\": 1}", SRC ":1:10: \"mode\" must be \"observe\" or \"enforce\"");
	expect_error_at("{\"clock\": {\"realtime\": \"freeze\"}}", "1:24",
			"\"clock.realtime\" must be \"pass\" or \"clamp\"");
	expect_error_at("{\"fd\": {\"on_max\": null}}", "1:19",
			"\"fd.on_max\" must be one of \"report\", \"fail\", \"abort\"");
}

static void test_policy_negative_and_fractional_integers_are_rejected(void **state)
{
	(void)state;
	expect_error("{\"fd\": {\"max\": -1}}", SRC ":1:16: \"fd.max\" must be a non-negative integer");
	expect_error("{\"heap\": {\"sample_bytes\": 1.5}}",
		     SRC ":1:27: \"heap.sample_bytes\" must be a positive integer");
	expect_error("{\"heap\": {\"sample_bytes\": 0}}",
		     SRC ":1:27: \"heap.sample_bytes\" must be a positive integer");
	expect_error_at("{\"locks\": {\"sample\": 0}}", "1:22", "\"locks.sample\" must be a positive integer");
	expect_error_at("{\"clock\": {\"jump_ms\": 0}}", "1:23", "\"clock.jump_ms\" must be a positive "
			"integer");
	expect_error_at("{\"heap\": {\"growth_windows\": 0}}", "1:29",
			"\"heap.growth_windows\" must be a positive integer");
	expect_error_at("{\"net\": {\"read_timeout_ms\": 0.25}}", "1:29",
			"\"net.read_timeout_ms\" must be a non-negative integer");
	expect_error_at("{\"threads\": {\"max\": true}}", "1:21",
			"\"threads.max\" must be a non-negative integer");
}

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

static void test_policy_numbers_beyond_2_pow_53_are_rejected(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"heap\": {\"max_bytes\": 9007199254740991}}", &p);
	assert_int_equal(p.heap.max_bytes, 9007199254740991ull);
	/* 2^53 + 1 reads as 2^53: the text and the value would differ. */
	expect_error("{\"heap\": {\"max_bytes\": 9007199254740993}}",
		     SRC ":1:24: \"heap.max_bytes\" must be at most 9007199254740991");
	expect_error("{\"fd\": {\"max\": 1e400}}", SRC ":1:16: \"fd.max\" must be at most 9007199254740991");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 18446744073709551616, \"step_ms\": 1}]}}",
			"1:33", "\"clock.inject[0].at_ms\" must be at most 9007199254740991");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 1, \"step_ms\": -1e300}]}}", "1:47",
			"\"clock.inject[0].step_ms\" must be at least -9007199254740991");
	expect_error_at("{\"limits\": [{\"name\": \"a\", \"call\": \"accept\", \"rate\": 1e300}]}",
			"1:53", "\"limits[0].rate\" must be at most 9007199254740991");
	expect_error_at("{\"limits\": [{\"name\": \"a\", \"call\": \"accept\", \"rate\": 1, "
			"\"burst\": 1e16}]}", "1:65", "\"limits[0].burst\" must be at most");
}

static void test_policy_integers_too_large_for_their_field(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"report\": {\"interval_s\": 4294967295, \"violation_exit_code\": 255},"
		 " \"stacks\": {\"max_depth\": 1}}", &p);
	assert_int_equal(p.report.interval_s, 4294967295u);
	assert_int_equal(p.report.violation_exit_code, 255);
	assert_int_equal(p.stacks.max_depth, 1);
	expect_error("{\"report\": {\"interval_s\": 4294967296}}",
		     SRC ":1:27: \"report.interval_s\" must be at most 4294967295");
	expect_error("{\"stacks\": {\"max_depth\": 129}}",
		     SRC ":1:26: \"stacks.max_depth\" must be an integer from 1 to 128");
	expect_error("{\"stacks\": {\"max_depth\": 0}}",
		     SRC ":1:26: \"stacks.max_depth\" must be an integer from 1 to 128");
	expect_error("{\"report\": {\"violation_exit_code\": 256}}",
		     SRC ":1:36: \"report.violation_exit_code\" must be an integer from 0 to 255");
	expect_error_at("{\"report\": {\"violation_exit_code\": -1}}", "1:36", "from 0 to 255");
}

static void test_policy_version_must_be_one_when_present(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"version\": 1}", &p);
	assert_int_equal(p.version, 1);
	parse_ok("{\"version\": 1.0}", &p);
	assert_int_equal(p.version, 1);
	expect_error("{\"version\": 2}", SRC ":1:13: \"version\" must be 1, the schema version this "
		     "libguard reads");
	expect_error_at("{\"version\": \"1\"}", "1:13", "\"version\" must be 1");
	expect_error_at("{\"version\": null}", "1:13", "\"version\" must be 1");
}

/* ---- limits ---- */

#define RULE(extra) "{\"limits\": [{\"name\": \"r\", \"call\": \"connect\", \"rate\": 10" extra "}]}"

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

static void test_policy_bad_addresses_are_rejected(void **state)
{
	static const char *const garbage[] = {
		"\"banana\"", "\"10.0.0/8\"", "\"10.0.0.0/\"", "\"/8\"", "\"10.0.0.0/08\"",
		"\"10.0.0.0/+8\"", "\"10.0.0.0/8/8\"", "\"fe80::1%eth0\"", "\"1.2.3.4.5\"", "\"\"",
		"\"010.0.0.1\"", "42", "null", "\"10.0.0.0 /8\"", "\":::\"",
	};
	char json[256], at[16];
	(void)state;

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		snprintf(json, sizeof(json), RULE(", \"addr\": %s"), garbage[i]);
		expect_error_at(json, col_of(json, garbage[i], at, sizeof(at)),
				"\"limits[0].addr\" must be an IPv4 or IPv6 address with an optional "
				"/prefix");
	}
	snprintf(json, sizeof(json), RULE(", \"addr\": \"10.0.0.0/33\""));
	expect_error_at(json, col_of(json, "\"10.", at, sizeof(at)),
			"\"limits[0].addr\" has prefix /33; an IPv4 prefix is from 0 to 32");
	snprintf(json, sizeof(json), RULE(", \"addr\": \"fd00::/129\""));
	expect_error_at(json, col_of(json, "\"fd00", at, sizeof(at)),
			"an IPv6 prefix is from 0 to 128");
	snprintf(json, sizeof(json), RULE(", \"addr\": \"10.0.0.0/99999\""));
	expect_error_at(json, col_of(json, "\"10.", at, sizeof(at)), "has prefix /99999");
	snprintf(json, sizeof(json), RULE(", \"addr\": \"10.0.0.1/8\""));
	expect_error_at(json, col_of(json, "\"10.", at, sizeof(at)),
			"\"limits[0].addr\" has bits set past its /8 prefix; write \"10.0.0.0/8\"");
	snprintf(json, sizeof(json), RULE(", \"addr\": \"fd00::1/64\""));
	expect_error_at(json, col_of(json, "\"fd00", at, sizeof(at)), "write \"fd00::/64\"");
}

static void test_policy_limit_port_must_fit_16_bits(void **state)
{
	struct lg_policy p;
	char at[16];
	(void)state;

	parse_ok(RULE(", \"port\": 65535"), &p);
	assert_int_equal(p.limits[0].port, 65535);
	parse_ok(RULE(", \"port\": 0"), &p);
	assert_int_equal(p.limits[0].port, 0);
	expect_error_at(RULE(", \"port\": 65536"), col_of(RULE(", \"port\": 65536"), "65536", at, sizeof(at)),
			"\"limits[0].port\" must be an integer from 0 to 65535");
	expect_error_at(RULE(", \"port\": -1"), col_of(RULE(", \"port\": -1"), "-1", at, sizeof(at)),
			"\"limits[0].port\" must be an integer from 0 to 65535");
	expect_error_at(RULE(", \"port\": \"80\""), col_of(RULE(", \"port\": \"80\""), "\"80\"", at,
							   sizeof(at)), "from 0 to 65535");
}

static void test_policy_limit_rate_and_burst_bounds(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok(RULE(", \"burst\": 1"), &p);
	assert_true(p.limits[0].rate == 10.0);
	assert_true(p.limits[0].burst == 1.0);
	parse_ok("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\", \"rate\": 0.25, \"burst\": 2.5}]}",
		 &p);
	assert_true(p.limits[0].rate == 0.25);
	assert_true(p.limits[0].burst == 2.5);
	expect_error_at("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\", \"rate\": 0}]}", "1:53",
			"\"limits[0].rate\" must be a number greater than 0 (tokens per second)");
	expect_error_at("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\", \"rate\": -5}]}", "1:53",
			"\"limits[0].rate\" must be a number greater than 0");
	expect_error_at("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\", \"rate\": \"5\"}]}",
			"1:53", "\"limits[0].rate\" must be a number greater than 0");
	expect_error_at("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\", \"rate\": 5, \"burst\": 0.5}]}",
			"1:65", "\"limits[0].burst\" must be a number of at least 1");
	expect_error_at("{\"limits\": [{\"name\": \"r\", \"call\": \"accept\"}]}", "1:13",
			"\"limits[0].rate\" is required");
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

static void test_policy_limit_on_limit_must_fit_the_call(void **state)
{
	(void)state;
	/* on_limit written before call: the check still knows the call. */
	expect_error("{\"limits\": [{\"on_limit\": \"fail\", \"name\": \"a\", \"call\": \"accept\", \"rate\": 1}]}",
		     SRC ":1:26: \"limits[0].on_limit\" must be \"shed\" or \"wait\" for call \"accept\"");
	expect_error_at("{\"limits\": [{\"name\": \"c\", \"call\": \"connect\", \"rate\": 1, \"on_limit\": \"shed\"}]}",
			"1:69", "\"limits[0].on_limit\" must be \"fail\" or \"wait\" for call \"connect\"");
	expect_error_at("{\"limits\": [{\"name\": \"c\", \"call\": \"connect\", \"rate\": 1, \"on_limit\": 1}]}",
			"1:69", "must be \"fail\" or \"wait\" for call \"connect\"");
	expect_error_at("{\"limits\": [{\"name\": \"c\", \"call\": \"bind\", \"rate\": 1}]}", "1:35",
			"\"limits[0].call\" must be \"accept\" or \"connect\"");
	expect_error_at("{\"limits\": [{\"name\": \"c\", \"rate\": 1}]}", "1:13",
			"\"limits[0].call\" is required: \"accept\" or \"connect\"");
}

static void test_policy_limit_names_are_required_and_unique(void **state)
{
	char json[256], name[80], at[16];
	struct lg_policy p;
	(void)state;

	expect_error("{\"limits\": [{\"call\": \"accept\", \"rate\": 1}]}",
		     SRC ":1:13: \"limits[0].name\" is required: a unique name for reports");
	expect_error_at("{\"limits\": [{\"name\": \"\", \"call\": \"accept\", \"rate\": 1}]}", "1:22",
			"\"limits[0].name\" must not be empty");
	expect_error_at("{\"limits\": [{\"name\": 7, \"call\": \"accept\", \"rate\": 1}]}", "1:22",
			"\"limits[0].name\" must be a string");
	expect_error_at("{\"limits\": [{\"name\": \"a\\tb\", \"call\": \"accept\", \"rate\": 1}]}", "1:22",
			"\"limits[0].name\" must not contain control characters");
	expect_error_at("{\"limits\": [{\"name\": \"db\", \"call\": \"accept\", \"rate\": 1},\n"
			"  {\"name\": \"x\", \"call\": \"accept\", \"rate\": 1},\n"
			"  {\"name\": \"db\", \"call\": \"connect\", \"rate\": 1}]}", "3:12",
			"\"limits[2].name\" repeats \"db\" from \"limits[0]\"; names must be unique");

	/* LG_POLICY_NAME_MAX - 1 bytes fit; one more does not. */
	memset(name, 'n', LG_POLICY_NAME_MAX - 1);
	name[LG_POLICY_NAME_MAX - 1] = '\0';
	snprintf(json, sizeof(json), "{\"limits\": [{\"name\": \"%s\", \"call\": \"accept\", \"rate\": 1}]}",
		 name);
	parse_ok(json, &p);
	assert_string_equal(p.limits[0].name, name);
	snprintf(json, sizeof(json), "{\"limits\": [{\"name\": \"%sn\", \"call\": \"accept\", \"rate\": 1}]}",
		 name);
	expect_error_at(json, col_of(json, "\"nnn", at, sizeof(at)),
			"\"limits[0].name\" is longer than 63 bytes");
	expect_error_at("{\"limits\": [7]}", "1:13", "\"limits[0]\" must be an object");
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

static void test_policy_too_many_limits_and_injects(void **state)
{
	size_t cap = 8192, used;
	char *json = malloc(cap), at[16], needle[32];
	struct lg_policy p;
	(void)state;

	assert_non_null(json);
	for (int n = LG_POLICY_MAX_LIMITS; n <= LG_POLICY_MAX_LIMITS + 1; n++) {
		used = (size_t)snprintf(json, cap, "{\"limits\": [");
		for (int i = 0; i < n; i++)
			used += (size_t)snprintf(json + used, cap - used,
						 "%s{\"name\": \"r%d\", \"call\": \"accept\", \"rate\": 1}",
						 i ? ", " : "", i);
		snprintf(json + used, cap - used, "]}");
		if (n == LG_POLICY_MAX_LIMITS) {
			parse_ok(json, &p);
			assert_int_equal(p.nlimits, LG_POLICY_MAX_LIMITS);
			assert_string_equal(p.limits[LG_POLICY_MAX_LIMITS - 1].name, "r31");
		} else {
			snprintf(needle, sizeof(needle), "{\"name\": \"r%d\"", LG_POLICY_MAX_LIMITS);
			expect_error_at(json, col_of(json, needle, at, sizeof(at)),
					"\"limits\" holds more than 32 rules");
		}
	}
	for (int n = LG_POLICY_MAX_INJECT; n <= LG_POLICY_MAX_INJECT + 1; n++) {
		used = (size_t)snprintf(json, cap, "{\"clock\": {\"inject\": [");
		for (int i = 0; i < n; i++)
			used += (size_t)snprintf(json + used, cap - used,
						 "%s{\"at_ms\": %d, \"step_ms\": 1}", i ? ", " : "", i);
		snprintf(json + used, cap - used, "]}}");
		if (n == LG_POLICY_MAX_INJECT) {
			parse_ok(json, &p);
			assert_int_equal(p.clock.ninject, LG_POLICY_MAX_INJECT);
			assert_int_equal(p.clock.inject[LG_POLICY_MAX_INJECT - 1].at_ms, 15);
		} else {
			snprintf(needle, sizeof(needle), "{\"at_ms\": %d,", LG_POLICY_MAX_INJECT);
			expect_error_at(json, col_of(json, needle, at, sizeof(at)),
					"\"clock.inject\" holds more than 16 steps");
		}
	}
	free(json);
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

static void test_policy_report_signal_refuses_fatal_signals(void **state)
{
	static const char *const refused[] = { "SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE",
					       "SIGILL", "SIGABRT", "kill", "segv" };
	char json[128];
	(void)state;

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(json, sizeof(json), "{\"report\": {\"signal\": \"%s\"}}", refused[i]);
		expect_error_at(json, "1:23", "\"report.signal\" cannot be SIG");
	}
	expect_error("{\"report\": {\"signal\": \"SIGKILL\"}}", SRC ":1:23: \"report.signal\" cannot "
		     "be SIGKILL: it cannot be caught; use a signal like \"SIGUSR2\"");
}

static void test_policy_report_formats_are_a_unique_set(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"report\": {\"formats\": [\"folded\", \"prom\"]}}", &p);
	assert_int_equal(p.report.formats, LG_FORMAT_FOLDED | LG_FORMAT_PROM);
	parse_ok("{\"report\": {\"formats\": [\"pprof\"]}}", &p);
	assert_int_equal(p.report.formats, LG_FORMAT_PPROF);
	expect_error_at("{\"report\": {\"formats\": []}}", "1:24", "must be a non-empty array");
	expect_error("{\"report\": {\"formats\": [\"json\", \"JSON\"]}}",
		     SRC ":1:33: \"report.formats[1]\" must be one of \"json\", \"folded\", \"pprof\", \"prom\"");
	expect_error("{\"report\": {\"formats\": [\"json\", \"prom\", \"json\"]}}",
		     SRC ":1:41: \"report.formats[2]\" repeats \"json\"; list each format once");
	expect_error_at("{\"report\": {\"formats\": [1]}}", "1:25", "\"report.formats[0]\" must be one of");
}

static void test_policy_report_name_allows_only_known_escapes(void **state)
{
	struct lg_policy p;
	char json[400], name[300];
	(void)state;

	parse_ok("{\"report\": {\"name\": \"%e.%p.%t.100%%\"}}", &p);
	assert_string_equal(p.report.name, "%e.%p.%t.100%%");
	expect_error("{\"report\": {\"name\": \"guard-%x\"}}",
		     SRC ":1:21: \"report.name\" has \"%x\"; only %e, %p, %t and %% are expanded");
	expect_error_at("{\"report\": {\"name\": \"guard-%\"}}", "1:21",
			"\"report.name\" has a '%' that is not %e, %p, %t or %%");
	expect_error_at("{\"report\": {\"name\": \"a/b\"}}", "1:21",
			"\"report.name\" must not contain '/'; put directories in \"report.dir\"");
	expect_error_at("{\"report\": {\"name\": \"\"}}", "1:21", "\"report.name\" must not be empty");
	expect_error_at("{\"report\": {\"name\": false}}", "1:21", "\"report.name\" must be a string");
	memset(name, 'a', 256);
	name[256] = '\0';
	snprintf(json, sizeof(json), "{\"report\": {\"name\": \"%s\"}}", name);
	expect_error_at(json, "1:21", "\"report.name\" is longer than 255 bytes");
	name[255] = '\0';
	snprintf(json, sizeof(json), "{\"report\": {\"name\": \"%s\"}}", name);
	parse_ok(json, &p);
	assert_int_equal(strlen(p.report.name), 255);
}

static void test_policy_report_dir_must_fit(void **state)
{
	struct lg_policy p;
	char *json = malloc(LG_POLICY_PATH_MAX + 64), *dir = malloc(LG_POLICY_PATH_MAX + 1);
	(void)state;

	assert_non_null(json);
	assert_non_null(dir);
	memset(dir, 'd', LG_POLICY_PATH_MAX);
	dir[0] = '/';
	dir[LG_POLICY_PATH_MAX] = '\0';
	sprintf(json, "{\"report\": {\"dir\": \"%s\"}}", dir);
	expect_error_at(json, "1:20", "\"report.dir\" is longer than 1023 bytes");
	dir[LG_POLICY_PATH_MAX - 1] = '\0';
	sprintf(json, "{\"report\": {\"dir\": \"%s\"}}", dir);
	parse_ok(json, &p);
	assert_int_equal(strlen(p.report.dir), LG_POLICY_PATH_MAX - 1);
	expect_error_at("{\"report\": {\"dir\": \"\"}}", "1:20",
			"\"report.dir\" must not be empty; leave it out for the default");
	expect_error_at("{\"report\": {\"dir\": [\"/tmp\"]}}", "1:20", "\"report.dir\" must be a string");
	free(json);
	free(dir);
}

static void test_policy_fd_warn_ratio_is_in_zero_one(void **state)
{
	struct lg_policy p;
	(void)state;

	parse_ok("{\"fd\": {\"warn_ratio\": 1}}", &p);
	assert_true(p.fd.warn_ratio == 1.0);
	parse_ok("{\"fd\": {\"warn_ratio\": 0.001}}", &p);
	assert_true(p.fd.warn_ratio == 0.001);
	expect_error("{\"fd\": {\"warn_ratio\": 0}}",
		     SRC ":1:23: \"fd.warn_ratio\" must be a number greater than 0 and at most 1");
	expect_error_at("{\"fd\": {\"warn_ratio\": 1.01}}", "1:23", "greater than 0 and at most 1");
	expect_error_at("{\"fd\": {\"warn_ratio\": -0.5}}", "1:23", "greater than 0 and at most 1");
	expect_error_at("{\"fd\": {\"warn_ratio\": \"80%\"}}", "1:23", "greater than 0 and at most 1");
}

/* ---- clock ---- */

static void test_policy_clock_inject_steps_only_realtime(void **state)
{
	(void)state;
	expect_error("{\"clock\": {\"inject\": [{\"at_ms\": 1, \"clock\": \"monotonic\", \"step_ms\": 5}]}}",
		     SRC ":1:45: \"clock.inject[0].clock\" must be \"realtime\": only realtime can be "
		     "stepped");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 1, \"clock\": \"boottime\", \"step_ms\": 5}]}}",
			"1:45", "\"clock.inject[0].clock\" must be \"realtime\"");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 1, \"step_ms\": 0}]}}", "1:47",
			"\"clock.inject[0].step_ms\" must be a non-zero integer");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 1, \"step_ms\": 1.5}]}}", "1:47",
			"\"clock.inject[0].step_ms\" must be an integer");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": -1, \"step_ms\": 5}]}}", "1:33",
			"\"clock.inject[0].at_ms\" must be a non-negative integer");
	expect_error_at("{\"clock\": {\"inject\": [{\"step_ms\": 5}]}}", "1:23",
			"\"clock.inject[0].at_ms\" is required");
	expect_error_at("{\"clock\": {\"inject\": [{\"at_ms\": 5}]}}", "1:23",
			"\"clock.inject[0].step_ms\" is required");
	expect_error_at("{\"clock\": {\"inject\": {}}}", "1:22", "\"clock.inject\" must be an array");
}

/* ---- text that is not a policy ---- */

static void test_policy_root_must_be_an_object(void **state)
{
	static const char *const roots[] = { "[]", "1", "\"x\"", "null", "true", "[{}]" };
	(void)state;

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		expect_error_at(roots[i], "1:1", "the policy must be a JSON object");
	expect_error_at("\n\n   [1]", "3:4", "the policy must be a JSON object");
}

static void test_policy_empty_input_is_an_error(void **state)
{
	(void)state;
	expect_error_len("", 0, "1:1", "the policy is empty; write {} for the defaults");
	expect_error_at(" \n\t\n  ", "3:3", "the policy is empty");
	expect_error_at("\xef\xbb\xbf", "1:1", "the policy is empty");
}

static void test_policy_binary_garbage_is_rejected_with_a_position(void **state)
{
	unsigned char garbage[4096];
	uint32_t x = 12345;
	struct lg_policy p;
	char err[512];
	(void)state;

	/* A NUL byte, even where JSON would otherwise be valid. */
	expect_error_len("{\"mode\": \"observe\"}\0", 20, "1:20", "the policy holds a NUL byte");
	expect_error_len("{\n  \"mo\0de\": 1}", 15, "2:6", "the policy holds a NUL byte");
	/* Invalid UTF-8 inside a string, an overlong form, an encoded surrogate, a stray
	 * continuation byte, a truncated sequence. */
	expect_error_at("{\n  \"report\": {\"name\": \"a\xff\"}}", "2:24", "invalid UTF-8 (byte 0xff)");
	expect_error_at("{\"x\": \"\xc0\xaf\"}", "1:8", "invalid UTF-8 (byte 0xc0)");
	expect_error_at("{\"x\": \"\xed\xa0\x80\"}", "1:8", "invalid UTF-8 (byte 0xed)");
	expect_error_at("{\"x\": \"\x80\"}", "1:8", "invalid UTF-8 (byte 0x80)");
	expect_error_at("{\"x\": \"\xe2\x82\"}", "1:8", "invalid UTF-8 (byte 0xe2)");
	/* Valid UTF-8 in a string is fine (it fails only as an unknown key). */
	expect_error_at("{\"caf\xc3\xa9\": 1}", "1:2", "unknown key \"caf\xc3\xa9\"");
	/* Pseudo-random bytes of every value: rejected, with a position, without a crash. */
	for (int round = 0; round < 64; round++) {
		for (size_t i = 0; i < sizeof(garbage); i++) {
			x = x * 1103515245u + 12345u;
			garbage[i] = (unsigned char)(x >> 16);
		}
		garbage[0] = '{';
		assert_int_equal(parse_len((const char *)garbage, sizeof(garbage), &p, err, sizeof(err)),
				 -EINVAL);
		assert_int_equal(strncmp(err, SRC ":", strlen(SRC ":")), 0);
		assert_null(strchr(err, '\n'));
	}
}

static void test_policy_trailing_garbage_is_rejected(void **state)
{
	(void)state;
	expect_error("{} x", SRC ":1:4: unexpected text after the end of the policy; a policy is one "
		     "JSON object");
	expect_error_at("{}{}", "1:3", "unexpected text after the end of the policy");
	expect_error_at("{\"mode\": \"observe\"}\n}\n", "2:1", "unexpected text after the end");
	expect_error_at("{}\n\n  ,", "3:3", "unexpected text after the end");
}

static void test_policy_syntax_errors_have_positions(void **state)
{
	(void)state;
	expect_error("{\n  \"mode\": \"enforce\"\n  \"fd\": {}\n}",
		     SRC ":3:3: expected ',' or '}' after a member, found '\"'");
	expect_error("{\n  \"fd\": {\"max\": 1,}\n}", SRC ":2:18: trailing comma before '}'; remove it");
	expect_error_at("{\"report\": {\"formats\": [\"json\",]}}", "1:31", "trailing comma before ']'");
	expect_error_at("{\"mode\": \"observe}", "1:10", "unterminated string");
	expect_error_at("{\n  // the mode\n  \"mode\": \"observe\"\n}", "2:3",
			"comments are not allowed in JSON");
	expect_error_at("{'mode': 1}", "1:2", "strings take double quotes, not single quotes");
	expect_error_at("{\"mode\": \"enforce\" /* why */}", "1:20", "comments are not allowed");
	expect_error_at("{\"mode\" \"enforce\"}", "1:9", "expected ':' after the key, found '\"'");
	expect_error_at("{\"fd\": {\"max\": 1 2}}", "1:18", "expected ',' or '}' after a member, found '2'");
	expect_error_at("[1 2]", "1:4", "expected ',' or ']' after an element, found '2'");
	expect_error_at("{\"x\": [1, -]}", "1:11", "invalid number; a digit must follow '-'");
	expect_error_at("{\"mode\": 'enforce'}", "1:10", "strings take double quotes");
	expect_error_at("{\"fd\": {\"max\": 007}}", "1:16", "no leading zeros");
	expect_error_at("{\"fd\": {\"max\": 1.}}", "1:16", "a digit must follow '.'");
	expect_error_at("{\"fd\": {\"max\": 1e}}", "1:16", "the exponent has no digits");
	expect_error_at("{\"fd\": {\"max\": +1}}", "1:16", "expected a value, found '+'");
	expect_error_at("{\"fd\": {\"enabled\": True}}", "1:20", "expected a value, found 'T'");
	expect_error_at("{\"fd\": {\"enabled\": tru}}", "1:20", "expected a value, found 't'");
	expect_error_at("{\"fd\": {\"max\": NaN}}", "1:16", "expected a value, found 'N'");
	expect_error_at("{\"fd\" 1}", "1:7", "expected ':' after the key, found '1'");
	expect_error_at("{\"fd\"", "1:6", "an object is not closed");
	expect_error_at("{\"fd\": {\"max\": 1}", "1:18", "an object is not closed");
	expect_error_at("{\"limits\": [", "1:13", "expected a value");
}

static void test_policy_strings_reject_raw_controls_and_nul_escapes(void **state)
{
	(void)state;
	expect_error_at("{\"report\": {\"name\": \"a\tb\"}}", "1:23",
			"raw control character (byte 0x09) in a string");
	expect_error_at("{\"report\": {\"name\": \"a\nb\"}}", "1:23", "raw control character");
	/* \u0000 would cut the key short inside cJSON: "heap\u0000x" would read as "heap". */
	expect_error_at("{\"heap\\u0000x\": {}}", "1:7", "\\u0000 is not allowed");
	expect_error_at("{\"x\": \"\\ud800\"}", "1:8", "\\ud800 is a high surrogate without its low half");
	expect_error_at("{\"x\": \"\\udc00\"}", "1:8", "\\udc00 is a lone low surrogate");
	expect_error_at("{\"x\": \"\\u12g4\"}", "1:8", "\\u must be followed by 4 hex digits");
	expect_error_at("{\"x\": \"\\q\"}", "1:8", "invalid escape '\\' then 'q'");
	/* Escapes that name real characters decode: \u0041\u006c\u006c is "All"... an unknown key. */
	expect_error_at("{\"m\\u006fde\": \"enforce\", \"\\u0041\\ud83d\\ude00\": 1}", "1:26",
			"unknown key \"A\xf0\x9f\x98\x80\"");
}

static void test_policy_deep_nesting_is_rejected(void **state)
{
	char json[256];
	(void)state;

	/* {"x": [[[[...: the object is level 1, so the 64th bracket opens level 65. */
	memset(json, '[', sizeof(json));
	memcpy(json, "{\"x\": ", 6);
	expect_error_len(json, sizeof(json), "1:70", "nesting deeper than 64 levels");
}

static void test_policy_long_numbers_are_rejected(void **state)
{
	char json[128];
	(void)state;

	snprintf(json, sizeof(json), "{\"fd\": {\"max\": 1%063d}}", 0);
	expect_error_at(json, "1:16", "number longer than 63 characters");
	snprintf(json, sizeof(json), "{\"fd\": {\"max\": 1%062d}}", 0);
	expect_error_at(json, "1:16", "\"fd.max\" must be at most 9007199254740991");
}

static void test_policy_text_over_1_mib_is_rejected(void **state)
{
	size_t len = (1u << 20) + 1;
	char *json = malloc(len);
	(void)state;

	assert_non_null(json);
	memset(json, ' ', len);
	json[0] = '{';
	json[len - 1] = '}';
	expect_error_len(json, len, "1:1", "the policy is larger than 1 MiB");
	/* Exactly 1 MiB is still read (and is the empty policy). */
	json[len - 2] = '}';
	{
		struct lg_policy p;
		char err[512] = "";
		assert_int_equal(parse_len(json, len - 1, &p, err, sizeof(err)), 0);
	}
	free(json);
}

/* A big but valid document scans in one pass; the first bad key stops it. */
static void test_policy_large_document_scans_quickly(void **state)
{
	size_t cap = 900 * 1024, used;
	char *json = malloc(cap);
	(void)state;

	assert_non_null(json);
	used = (size_t)snprintf(json, cap, "{\"mode\": \"observe\", \"bulk\": [");
	while (used < cap - 16)
		used += (size_t)snprintf(json + used, cap - used, "1,");
	snprintf(json + used - 1, cap - used + 1, "]}");
	expect_error_at(json, "1:21", "unknown key \"bulk\"");
	free(json);
}

static void test_policy_crlf_and_bom_positions(void **state)
{
	(void)state;
	expect_error("\xef\xbb\xbf{\r\n  \"fd\": 1\r\n}", SRC ":2:9: \"fd\" must be an object");
	expect_error("\xef\xbb\xbf\xef\xbb\xbf{}", SRC ":1:1: expected a value, found byte 0xef");
}

static void test_policy_error_buffer_is_bounded_and_terminated(void **state)
{
	struct lg_policy p;
	char err[16];
	(void)state;

	memset(err, 'x', sizeof(err));
	assert_int_equal(lg_policy_parse("{\"fd\": 1}", 9, SRC, &p, err, 10), -EINVAL);
	assert_string_equal(err, "policy.js");
	assert_int_equal(err[10], 'x');
	assert_int_equal(lg_policy_parse("{\"fd\": 1}", 9, SRC, &p, NULL, 0), -EINVAL);
	assert_int_equal(lg_policy_parse("{}", 2, NULL, &p, err, sizeof(err)), 0);
	assert_int_equal(lg_policy_parse("[]", 2, NULL, &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(strncmp(err, "policy:1:1: ", 12), 0);
	assert_int_equal(lg_policy_parse(NULL, 5, SRC, &p, err, sizeof(err)), -EINVAL);
	assert_int_equal(lg_policy_parse("{}", 2, SRC, NULL, err, sizeof(err)), -EINVAL);
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
		cmocka_unit_test(test_policy_wrong_type_reports_line_and_column),
		cmocka_unit_test(test_policy_unknown_key_suggests_the_closest),
		cmocka_unit_test(test_policy_unknown_key_lists_the_known_keys),
		cmocka_unit_test(test_policy_unknown_key_inside_limits_and_injects),
		cmocka_unit_test(test_policy_duplicate_key_is_an_error),
		cmocka_unit_test(test_policy_bad_enum_names_the_choices),
		cmocka_unit_test(test_policy_negative_and_fractional_integers_are_rejected),
		cmocka_unit_test(test_policy_exact_integers_in_any_notation_are_accepted),
		cmocka_unit_test(test_policy_numbers_beyond_2_pow_53_are_rejected),
		cmocka_unit_test(test_policy_integers_too_large_for_their_field),
		cmocka_unit_test(test_policy_version_must_be_one_when_present),
		cmocka_unit_test(test_policy_limit_addresses_parse_to_prefixes),
		cmocka_unit_test(test_policy_bad_addresses_are_rejected),
		cmocka_unit_test(test_policy_limit_port_must_fit_16_bits),
		cmocka_unit_test(test_policy_limit_rate_and_burst_bounds),
		cmocka_unit_test(test_policy_limit_on_limit_defaults_follow_the_call),
		cmocka_unit_test(test_policy_limit_on_limit_must_fit_the_call),
		cmocka_unit_test(test_policy_limit_names_are_required_and_unique),
		cmocka_unit_test(test_policy_limits_keep_their_written_order),
		cmocka_unit_test(test_policy_too_many_limits_and_injects),
		cmocka_unit_test(test_policy_report_signal_names_and_null),
		cmocka_unit_test(test_policy_report_signal_refuses_fatal_signals),
		cmocka_unit_test(test_policy_report_formats_are_a_unique_set),
		cmocka_unit_test(test_policy_report_name_allows_only_known_escapes),
		cmocka_unit_test(test_policy_report_dir_must_fit),
		cmocka_unit_test(test_policy_fd_warn_ratio_is_in_zero_one),
		cmocka_unit_test(test_policy_clock_inject_steps_only_realtime),
		cmocka_unit_test(test_policy_root_must_be_an_object),
		cmocka_unit_test(test_policy_empty_input_is_an_error),
		cmocka_unit_test(test_policy_binary_garbage_is_rejected_with_a_position),
		cmocka_unit_test(test_policy_trailing_garbage_is_rejected),
		cmocka_unit_test(test_policy_syntax_errors_have_positions),
		cmocka_unit_test(test_policy_strings_reject_raw_controls_and_nul_escapes),
		cmocka_unit_test(test_policy_deep_nesting_is_rejected),
		cmocka_unit_test(test_policy_long_numbers_are_rejected),
		cmocka_unit_test(test_policy_text_over_1_mib_is_rejected),
		cmocka_unit_test(test_policy_large_document_scans_quickly),
		cmocka_unit_test(test_policy_crlf_and_bom_positions),
		cmocka_unit_test(test_policy_error_buffer_is_bounded_and_terminated),
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
