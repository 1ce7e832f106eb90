/* Helpers shared by the policy parser tests (test_policy.c, test_policy_errors.c): parse from an
 * exact-length copy, and expect an error at a position. Static inline, so that a file which does
 * not use one of them builds without an unused-function warning.
 */
#ifndef LG_TESTS_POLICY_HELPERS_H
#define LG_TESTS_POLICY_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

#define SRC "policy.json"

/* One connect rule with extra members appended. */
#define RULE(extra) "{\"limits\": [{\"name\": \"r\", \"call\": \"connect\", \"rate\": 10" extra "}]}"

/* Parse from a heap copy of exactly len bytes with no NUL after it, so that AddressSanitizer
 * catches any read past the end (the API takes a length, not a C string). */
static inline int parse_len(const char *json, size_t len, struct lg_policy *p, char *err,
			    size_t errlen)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, json, len);
	rc = lg_policy_parse(copy, len, SRC, p, err, errlen);
	free(copy);
	return rc;
}

static inline void parse_ok(const char *json, struct lg_policy *p)
{
	char err[512] = "";
	int rc = parse_len(json, strlen(json), p, err, sizeof(err));

	if (rc != 0)
		fail_msg("parse failed (%d): %s", rc, err);
}

/* The whole message must be exactly this. */
static inline void expect_error(const char *json, const char *message)
{
	struct lg_policy p;
	char err[512] = "";

	assert_int_equal(parse_len(json, strlen(json), &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, message);
}

/* The message must be at LINE:COL and hold fragment. */
static inline void expect_error_len(const char *json, size_t len, const char *at,
				    const char *fragment)
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

static inline void expect_error_at(const char *json, const char *at, const char *fragment)
{
	expect_error_len(json, strlen(json), at, fragment);
}

/* "1:COL" of needle's first occurrence in one-line json, for long generated inputs. */
static inline const char *col_of(const char *json, const char *needle, char *buf, size_t len)
{
	const char *hit = strstr(json, needle);

	assert_non_null(hit);
	snprintf(buf, len, "1:%zu", (size_t)(hit - json) + 1);
	return buf;
}

#endif
