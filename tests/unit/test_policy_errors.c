/* Policy parsing errors: every class of error, with its exact position and message. Valid
 * policies and the defaults are in test_policy.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_helpers.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_wrong_type_reports_line_and_column),
		cmocka_unit_test(test_policy_unknown_key_suggests_the_closest),
		cmocka_unit_test(test_policy_unknown_key_lists_the_known_keys),
		cmocka_unit_test(test_policy_unknown_key_inside_limits_and_injects),
		cmocka_unit_test(test_policy_duplicate_key_is_an_error),
		cmocka_unit_test(test_policy_bad_enum_names_the_choices),
		cmocka_unit_test(test_policy_negative_and_fractional_integers_are_rejected),
		cmocka_unit_test(test_policy_numbers_beyond_2_pow_53_are_rejected),
		cmocka_unit_test(test_policy_integers_too_large_for_their_field),
		cmocka_unit_test(test_policy_version_must_be_one_when_present),
		cmocka_unit_test(test_policy_bad_addresses_are_rejected),
		cmocka_unit_test(test_policy_limit_port_must_fit_16_bits),
		cmocka_unit_test(test_policy_limit_rate_and_burst_bounds),
		cmocka_unit_test(test_policy_limit_on_limit_must_fit_the_call),
		cmocka_unit_test(test_policy_limit_names_are_required_and_unique),
		cmocka_unit_test(test_policy_too_many_limits_and_injects),
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
