/* The strict JSON scanner that runs before cJSON: bytes, grammar (RFC 8259), positions.
 *
 * cJSON keeps no positions and it is lax where a policy must be strict: it skips every byte
 * <= 0x20 as whitespace, takes raw control bytes inside strings, passes invalid UTF-8 through,
 * truncates strings at \u0000, and (1.7.15) copies a number into a 64-byte buffer, so a longer
 * one is cut. So this scanner checks the bytes (no NUL, valid UTF-8) and the grammar, stops at
 * the first syntax error with its offset, and records where every value and its member key
 * start, in document pre-order, for parse.c to line up with the cJSON tree.
 */
#include "policy/parse_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64                   /* a valid policy nests 4 deep */
#define MAX_NUMBER_CHARS 63            /* cJSON 1.7.15 parses numbers in a 64-byte buffer */

__attribute__((format(printf, 3, 4)))
static int scan_fail(struct scan *sc, size_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sc->msg, sizeof(sc->msg), fmt, ap);
	va_end(ap);
	sc->err_off = off;
	return -1;
}

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 if it is not valid UTF-8: no
 * overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
size_t lg_utf8_sequence(const unsigned char *s, size_t n)
{
	size_t need;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		need = 1, cp = s[0] & 0x1f, min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 2, cp = s[0] & 0x0f, min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 3, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n <= need)
		return 0;
	for (size_t k = 1; k <= need; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need + 1;
}

static int check_bytes(struct scan *sc)
{
	for (size_t i = 0; i < sc->len;) {
		size_t n;

		if (sc->s[i] == 0)
			return scan_fail(sc, i, "the policy holds a NUL byte; a policy is UTF-8 JSON text, "
				"not binary data");
		n = lg_utf8_sequence(sc->s + i, sc->len - i);
		if (n == 0)
			return scan_fail(sc, i, "invalid UTF-8 (byte 0x%02x); a policy is UTF-8 JSON text",
					 sc->s[i]);
		i += n;
	}
	return 0;
}

/* "'x'" for a printable byte, "byte 0xNN" for anything else. */
static const char *describe_byte(char *buf, size_t n, unsigned char b)
{
	if (b > 0x20 && b < 0x7f)
		snprintf(buf, n, "'%c'", b);
	else
		snprintf(buf, n, "byte 0x%02x", b);
	return buf;
}

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		unsigned char b = sc->s[sc->pos];
		if (b != ' ' && b != '\t' && b != '\n' && b != '\r')
			break;
		sc->pos++;
	}
}

static int push_span(struct scan *sc, uint32_t key, uint32_t *idx)
{
	if (sc->nspans == sc->cap) {
		uint32_t cap = sc->cap ? sc->cap * 2 : 64;
		struct span *grown = realloc(sc->spans, cap * sizeof(*grown));
		if (!grown) {
			sc->nomem = true;
			return scan_fail(sc, sc->pos, "out of memory");
		}
		sc->spans = grown;
		sc->cap = cap;
	}
	*idx = sc->nspans++;
	sc->spans[*idx] = (struct span){ .key = key, .value = (uint32_t)sc->pos, .size = 1 };
	return 0;
}

static int hex4(const struct scan *sc, size_t at, uint32_t *out)
{
	uint32_t v = 0;

	if (at + 4 > sc->len)
		return -1;
	for (size_t i = at; i < at + 4; i++) {
		unsigned char b = sc->s[i];
		if (b >= '0' && b <= '9')
			v = v << 4 | (uint32_t)(b - '0');
		else if ((b | 0x20) >= 'a' && (b | 0x20) <= 'f')
			v = v << 4 | (uint32_t)((b | 0x20) - 'a' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int scan_string(struct scan *sc)
{
	size_t start = sc->pos++;
	char what[16];

	for (;;) {
		size_t esc = sc->pos;
		uint32_t u, low;
		unsigned char b;

		if (sc->pos >= sc->len)
			return scan_fail(sc, start, "unterminated string; close it with '\"'");
		b = sc->s[sc->pos];
		if (b == '"') {
			sc->pos++;
			return 0;
		}
		if (b < 0x20)
			return scan_fail(sc, sc->pos, "raw control character (byte 0x%02x) in a string; "
					 "write it as an escape such as \\n", b);
		if (b != '\\') {
			sc->pos++;
			continue;
		}
		if (sc->pos + 1 >= sc->len)
			return scan_fail(sc, start, "unterminated string; close it with '\"'");
		b = sc->s[sc->pos + 1];
		if (b != 'u') {
			if (!strchr("\"\\/bfnrt", b))
				return scan_fail(sc, esc, "invalid escape '\\' then %s in a string; "
						 "write \\\\ for a backslash",
						 describe_byte(what, sizeof(what), b));
			sc->pos += 2;
			continue;
		}
		if (hex4(sc, sc->pos + 2, &u) != 0)
			return scan_fail(sc, esc, "\\u must be followed by 4 hex digits");
		sc->pos += 6;
		if (u == 0)
			return scan_fail(sc, esc, "\\u0000 is not allowed in a policy string");
		if (u >= 0xdc00 && u <= 0xdfff)
			return scan_fail(sc, esc, "\\u%04x is a lone low surrogate", u);
		if (u >= 0xd800 && u <= 0xdbff) {
			/* A high surrogate must be followed by its low half, or the text names no
			 * character (and cJSON would reject it). */
			if (sc->pos + 1 >= sc->len || sc->s[sc->pos] != '\\' ||
			    sc->s[sc->pos + 1] != 'u' || hex4(sc, sc->pos + 2, &low) != 0 ||
			    low < 0xdc00 || low > 0xdfff)
				return scan_fail(sc, esc, "\\u%04x is a high surrogate without its low half",
						 u);
			sc->pos += 6;
		}
	}
}

static bool is_digit_at(const struct scan *sc, size_t at)
{
	return at < sc->len && sc->s[at] >= '0' && sc->s[at] <= '9';
}

static int scan_number(struct scan *sc)
{
	size_t start = sc->pos;

	if (sc->s[sc->pos] == '-')
		sc->pos++;
	if (!is_digit_at(sc, sc->pos))
		return scan_fail(sc, start, "invalid number; a digit must follow '-'");
	if (sc->s[sc->pos] == '0') {
		sc->pos++;
		if (is_digit_at(sc, sc->pos))
			return scan_fail(sc, start, "invalid number; JSON numbers have no leading zeros");
	} else {
		while (is_digit_at(sc, sc->pos))
			sc->pos++;
	}
	if (sc->pos < sc->len && sc->s[sc->pos] == '.') {
		sc->pos++;
		if (!is_digit_at(sc, sc->pos))
			return scan_fail(sc, start, "invalid number; a digit must follow '.'");
		while (is_digit_at(sc, sc->pos))
			sc->pos++;
	}
	if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E')) {
		sc->pos++;
		if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
			sc->pos++;
		if (!is_digit_at(sc, sc->pos))
			return scan_fail(sc, start, "invalid number; the exponent has no digits");
		while (is_digit_at(sc, sc->pos))
			sc->pos++;
	}
	if (sc->pos - start > MAX_NUMBER_CHARS)
		return scan_fail(sc, start, "number longer than %d characters", MAX_NUMBER_CHARS);
	return 0;
}

static int scan_literal(struct scan *sc, const char *word)
{
	size_t n = strlen(word);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
		return -1;
	sc->pos += n;
	return 0;
}

/* The error for byte b where `expected` was due; two mistakes get their own words, since
 * policies are often written from the annotated JSONC schema in DESIGN.md or from Python. */
static int scan_unexpected(struct scan *sc, const char *expected)
{
	char what[16];
	unsigned char b = sc->s[sc->pos];

	if (b == '/')
		return scan_fail(sc, sc->pos, "comments are not allowed in JSON; remove them");
	if (b == '\'')
		return scan_fail(sc, sc->pos, "strings take double quotes, not single quotes");
	return scan_fail(sc, sc->pos, "%s, found %s", expected, describe_byte(what, sizeof(what), b));
}

static int scan_value(struct scan *sc, uint32_t key, int depth);

/* Past '{' or '[': true if the container is empty, with its closing byte consumed. */
static bool scan_open(struct scan *sc, unsigned char close)
{
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == close) {
		sc->pos++;
		return true;
	}
	return false;
}

/* After a member or an element: 1 past the closing byte, 0 past a comma with another item due,
 * or -1. A trailing comma is reported at the comma, where the fix is. */
static int scan_separator(struct scan *sc, unsigned char close, const char *container,
			  const char *item)
{
	char expected[48];
	size_t comma;

	skip_ws(sc);
	if (sc->pos >= sc->len)
		return scan_fail(sc, sc->pos, "unexpected end of the policy; %s is not closed",
				 container);
	if (sc->s[sc->pos] == close) {
		sc->pos++;
		return 1;
	}
	if (sc->s[sc->pos] != ',') {
		snprintf(expected, sizeof(expected), "expected ',' or '%c' after %s", close, item);
		return scan_unexpected(sc, expected);
	}
	comma = sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == close)
		return scan_fail(sc, comma, "trailing comma before '%c'; remove it", close);
	return 0;
}

static int scan_object(struct scan *sc, int depth)
{
	int rc = 0;

	if (scan_open(sc, '}'))
		return 0;
	while (rc == 0) {
		size_t key = sc->pos;

		if (sc->pos >= sc->len)
			return scan_fail(sc, sc->pos, "unexpected end of the policy; an object is not closed");
		if (sc->s[sc->pos] != '"')
			return scan_unexpected(sc, "expected a key in double quotes");
		if (scan_string(sc))
			return -1;
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return scan_fail(sc, sc->pos, "unexpected end of the policy; an object is not closed");
		if (sc->s[sc->pos] != ':')
			return scan_unexpected(sc, "expected ':' after the key");
		sc->pos++;
		skip_ws(sc);
		if (scan_value(sc, (uint32_t)key, depth))
			return -1;
		rc = scan_separator(sc, '}', "an object", "a member");
	}
	return rc < 0 ? -1 : 0;
}

static int scan_array(struct scan *sc, int depth)
{
	int rc = 0;

	if (scan_open(sc, ']'))
		return 0;
	while (rc == 0) {
		if (scan_value(sc, NO_KEY, depth))
			return -1;
		rc = scan_separator(sc, ']', "an array", "an element");
	}
	return rc < 0 ? -1 : 0;
}

static int scan_value(struct scan *sc, uint32_t key, int depth)
{
	uint32_t idx = 0;
	int rc;
	unsigned char b;

	if (sc->pos >= sc->len)
		return scan_fail(sc, sc->pos, "unexpected end of the policy; expected a value");
	if (push_span(sc, key, &idx))
		return -1;
	b = sc->s[sc->pos];
	if (b == '{' || b == '[') {
		if (depth >= MAX_DEPTH)
			return scan_fail(sc, sc->pos, "nesting deeper than %d levels", MAX_DEPTH);
		rc = b == '{' ? scan_object(sc, depth + 1) : scan_array(sc, depth + 1);
	} else if (b == '"') {
		rc = scan_string(sc);
	} else if (b == '-' || (b >= '0' && b <= '9')) {
		rc = scan_number(sc);
	} else if (scan_literal(sc, "true") == 0 || scan_literal(sc, "false") == 0 ||
		   scan_literal(sc, "null") == 0) {
		rc = 0;
	} else {
		return scan_unexpected(sc, "expected a value");
	}
	if (rc)
		return -1;
	sc->spans[idx].size = sc->nspans - idx;
	return 0;
}

int lg_scan_text(struct scan *sc)
{
	if (check_bytes(sc))
		return -1;
	skip_ws(sc);
	if (sc->pos >= sc->len)
		return scan_fail(sc, sc->pos, "the policy is empty; write {} for the defaults");
	if (scan_value(sc, NO_KEY, 0))
		return -1;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == '/')
		return scan_unexpected(sc, "");
	if (sc->pos < sc->len)
		return scan_fail(sc, sc->pos, "unexpected text after the end of the policy; a policy is "
				 "one JSON object");
	return 0;
}
