/* Policy text -> struct lg_policy (schema version 1), with every error at its line and column.
 *
 * cJSON builds the tree, but it keeps no positions and it is lax where a policy must be strict: it
 * skips every byte <= 0x20 as whitespace, takes raw control bytes inside strings, passes invalid
 * UTF-8 through, truncates strings at \u0000, and (1.7.15) copies a number into a 64-byte buffer,
 * so a longer one is cut. So a strict scanner runs first. It checks the bytes (no NUL, valid
 * UTF-8) and the JSON grammar (RFC 8259), stops at the first syntax error with its offset, and
 * records where every value and its member key start, in document pre-order. cJSON keeps members
 * in document order, so its tree walked in the same pre-order lines up with those records: a
 * node's first child is the record after its own, and its next sibling is its own record plus
 * the size of its subtree.
 *
 * Nothing here touches global mutable state: every call owns its scanner records and cJSON tree
 * and frees both before it returns. cJSON_GetErrorPtr() reads a global, so it is not used; the
 * scanner has already rejected anything cJSON would, which also keeps cJSON from writing that
 * global, except when it runs out of memory.
 */
#include "policy/policy.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLICY_MAX_BYTES (1u << 20)
#define MAX_DEPTH 64                   /* a valid policy nests 4 deep */
#define MAX_NUMBER_CHARS 63            /* cJSON 1.7.15 parses numbers in a 64-byte buffer */
/* 2^53 - 1: a double holds every integer up to here, and 2^53 + 1 reads as 2^53, so anything
 * from 2^53 on may not be the number the text wrote. */
#define MAX_EXACT 9007199254740991LL
#define NO_KEY UINT32_MAX

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the scanner: bytes, grammar, positions ---- */

struct span {
	uint32_t key;     /* offset of the member's key, or NO_KEY */
	uint32_t value;   /* offset of the value's first byte */
	uint32_t size;    /* values in this subtree, itself included */
};

struct scan {
	const unsigned char *s;
	size_t len;
	size_t pos;
	struct span *spans;
	uint32_t nspans;
	uint32_t cap;
	bool nomem;
	size_t err_off;
	char msg[160];
};

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
static size_t utf8_sequence(const unsigned char *s, size_t n)
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
		n = utf8_sequence(sc->s + i, sc->len - i);
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

static int scan_object(struct scan *sc, int depth)
{
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
		sc->pos++;
		return 0;
	}
	for (;;) {
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
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return scan_fail(sc, sc->pos, "unexpected end of the policy; an object is not closed");
		if (sc->s[sc->pos] == '}') {
			sc->pos++;
			return 0;
		}
		if (sc->s[sc->pos] != ',')
			return scan_unexpected(sc, "expected ',' or '}' after a member");
		size_t comma = sc->pos++;
		skip_ws(sc);
		if (sc->pos < sc->len && sc->s[sc->pos] == '}')
			return scan_fail(sc, comma, "trailing comma before '}'; remove it");
	}
}

static int scan_array(struct scan *sc, int depth)
{
	sc->pos++;
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
		sc->pos++;
		return 0;
	}
	for (;;) {
		if (scan_value(sc, NO_KEY, depth))
			return -1;
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return scan_fail(sc, sc->pos, "unexpected end of the policy; an array is not closed");
		if (sc->s[sc->pos] == ']') {
			sc->pos++;
			return 0;
		}
		if (sc->s[sc->pos] != ',')
			return scan_unexpected(sc, "expected ',' or ']' after an element");
		size_t comma = sc->pos++;
		skip_ws(sc);
		if (sc->pos < sc->len && sc->s[sc->pos] == ']')
			return scan_fail(sc, comma, "trailing comma before ']'; remove it");
	}
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

static int scan_text(struct scan *sc)
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

/* ---- validation over the cJSON tree ---- */

struct ctx {
	const char *text;
	size_t len;
	size_t bom;
	const char *source;
	const struct span *spans;
	char *err;
	size_t errlen;
};

/* A cJSON node, its scanner record, and how to name it: "prefix.key", "prefix" or "key". */
struct node {
	const cJSON *json;
	uint32_t idx;
	const char *prefix;
	const char *key;
};

static struct node first_child(struct node n)
{
	return (struct node){ .json = n.json->child, .idx = n.idx + 1 };
}

static struct node next_sibling(const struct ctx *c, struct node n)
{
	return (struct node){ .json = n.json->next, .idx = n.idx + c->spans[n.idx].size };
}

static const char *path_of(struct node n, char *buf, size_t len)
{
	const char *prefix = n.prefix ? n.prefix : "";

	if (!n.key)
		snprintf(buf, len, "%s", prefix);
	else if (!*prefix)
		snprintf(buf, len, "%s", n.key);
	else
		snprintf(buf, len, "%s.%s", prefix, n.key);
	return buf;
}

/* Lines and columns count from 1. A column counts bytes (a tab is one, "é" is two), so it points
 * at the same byte for every editor and tab width; a leading byte order mark does not count. */
static void line_col(const struct ctx *c, size_t off, unsigned *line, unsigned *col)
{
	size_t line_start = c->bom;

	*line = 1;
	for (size_t i = c->bom; i < off && i < c->len; i++) {
		if (c->text[i] == '\n') {
			(*line)++;
			line_start = i + 1;
		}
	}
	*col = (unsigned)(off >= line_start ? off - line_start + 1 : 1);
}

__attribute__((format(printf, 3, 4)))
static int fail_at(const struct ctx *c, size_t off, const char *fmt, ...)
{
	char msg[400];
	unsigned line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line_col(c, off, &line, &col);
	if (c->errlen)
		snprintf(c->err, c->errlen, "%s:%u:%u: %s", c->source, line, col, msg);
	return -EINVAL;
}

static size_t value_off(const struct ctx *c, struct node n)
{
	return c->spans[n.idx].value;
}

/* `"path" <message>`, at the node's value. */
__attribute__((format(printf, 3, 4)))
static int fail_path(const struct ctx *c, struct node n, const char *fmt, ...)
{
	char path[128], msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail_at(c, value_off(c, n), "\"%s\" %s", path_of(n, path, sizeof(path)), msg);
}

/* Copy text from the policy into a message: printable text and UTF-8 kept, quotes, backslashes
 * and control bytes escaped, long text cut, so that an error stays one readable line. */
static const char *quote_text(char *dst, size_t cap, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t out = 0, limit = cap - 4;   /* room for "..." and the NUL */

	while (*s) {
		char piece[8];
		size_t n, consumed = 1;

		if (*s == '"' || *s == '\\') {
			piece[0] = '\\';
			piece[1] = (char)*s;
			n = 2;
		} else if (*s < 0x20 || *s == 0x7f) {
			n = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", *s);
		} else {
			/* cJSON decodes only validated text and paired surrogates, so this is
			 * valid UTF-8; stop rather than copy a broken sequence if it is not. */
			n = consumed = utf8_sequence(s, strnlen((const char *)s, 4));
			if (n == 0)
				break;
			memcpy(piece, s, n);
		}
		if (out + n > limit) {
			memcpy(dst + out, "...", 3);
			out += 3;
			break;
		}
		memcpy(dst + out, piece, n);
		out += n;
		s += consumed;
	}
	dst[out] = '\0';
	return dst;
}

/* Edit distance of two short keys, for "did you mean": insertions, deletions, substitutions and
 * swaps of neighbours ("prot" for "port") cost 1 each, and case does not count. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[33][33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + ((a[i - 1] | 0x20) != (b[j - 1] | 0x20));
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

static int unknown_key(const struct ctx *c, struct node m, const char *objpath,
		       const char *const *keys, size_t nkeys)
{
	const char *dot = *objpath ? "." : "";
	size_t off = c->spans[m.idx].key, best = nkeys, best_distance = SIZE_MAX;
	char shown[72], list[256];

	quote_text(shown, sizeof(shown), m.json->string);
	for (size_t i = 0; i < nkeys; i++) {
		size_t d = edit_distance(m.json->string, keys[i]);
		if (d < best_distance) {
			best_distance = d;
			best = i;
		}
	}
	if (best < nkeys && best_distance <= (strlen(keys[best]) <= 4 ? 1u : 2u))
		return fail_at(c, off, "unknown key \"%s%s%s\"; did you mean \"%s%s%s\"?", objpath, dot,
			       shown, objpath, dot, keys[best]);
	list[0] = '\0';
	for (size_t i = 0, used = 0; i < nkeys && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? ", " : "",
					 keys[i]);
	if (*objpath)
		return fail_at(c, off, "unknown key \"%s.%s\"; \"%s\" takes %s", objpath, shown, objpath,
			       list);
	return fail_at(c, off, "unknown key \"%s\"; a policy takes %s", shown, list);
}

/* Check that obj is an object whose keys are all in keys[], each at most once; found[i] is
 * the member named keys[i], or has json NULL when it is absent. */
static int members(const struct ctx *c, struct node obj, const char *objpath,
		   const char *const *keys, size_t nkeys, struct node *found)
{
	if (!cJSON_IsObject(obj.json)) {
		if (!*objpath)
			return fail_at(c, value_off(c, obj), "the policy must be a JSON object, like "
				       "{\"mode\": \"observe\"}");
		return fail_at(c, value_off(c, obj), "\"%s\" must be an object", objpath);
	}
	for (size_t i = 0; i < nkeys; i++)
		found[i] = (struct node){ .json = NULL, .prefix = objpath, .key = keys[i] };
	for (struct node m = first_child(obj); m.json; m = next_sibling(c, m)) {
		size_t i;

		for (i = 0; i < nkeys && strcmp(m.json->string, keys[i]) != 0; i++)
			;
		if (i == nkeys)
			return unknown_key(c, m, objpath, keys, nkeys);
		if (found[i].json) {
			unsigned line, col;
			char path[128];
			line_col(c, c->spans[found[i].idx].key, &line, &col);
			return fail_at(c, c->spans[m.idx].key, "duplicate key \"%s\" (first at %u:%u); "
				       "keep one", path_of(found[i], path, sizeof(path)), line, col);
		}
		found[i].json = m.json;
		found[i].idx = m.idx;
	}
	return 0;
}

static int get_bool(const struct ctx *c, struct node n, bool *out)
{
	if (!n.json)
		return 0;
	if (!cJSON_IsBool(n.json))
		return fail_path(c, n, "must be true or false");
	*out = cJSON_IsTrue(n.json);
	return 0;
}

static bool exact_integer(const cJSON *j)
{
	double v = j->valuedouble;
	return cJSON_IsNumber(j) && v >= -(double)MAX_EXACT && v <= (double)MAX_EXACT &&
	       v == (double)(int64_t)v;
}

/* An integer in [min, max]; max is at most 2^53 - 1. JSON has one number type, so 1e3 is the
 * integer 1000 and 1.5 is no integer at all. */
static int get_int(const struct ctx *c, struct node n, int64_t min, int64_t max, int64_t *out)
{
	double v;

	if (!n.json)
		return 0;
	v = n.json->valuedouble;
	if (exact_integer(n.json) && v >= (double)min && v <= (double)max) {
		*out = (int64_t)v;
		return 0;
	}
	if (max <= 65535)
		return fail_path(c, n, "must be an integer from %lld to %lld", (long long)min,
				 (long long)max);
	if (cJSON_IsNumber(n.json) && v > (double)max)
		return fail_path(c, n, "must be at most %lld", (long long)max);
	if (cJSON_IsNumber(n.json) && v < (double)min && min < 0)
		return fail_path(c, n, "must be at least %lld", (long long)min);
	if (min == 0)
		return fail_path(c, n, "must be a non-negative integer");
	if (min == 1)
		return fail_path(c, n, "must be a positive integer");
	return fail_path(c, n, "must be an integer");
}

static int get_u32(const struct ctx *c, struct node n, uint32_t min, uint32_t max, uint32_t *out)
{
	int64_t v = 0;

	if (!n.json)
		return 0;
	if (get_int(c, n, min, max, &v))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int get_u64(const struct ctx *c, struct node n, int64_t min, uint64_t *out)
{
	int64_t v = 0;

	if (!n.json)
		return 0;
	if (get_int(c, n, min, MAX_EXACT, &v))
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

/* Any number up to 2^53; callers check their own range. */
static int get_number(const struct ctx *c, struct node n, const char *expect, double *out)
{
	if (!cJSON_IsNumber(n.json))
		return fail_path(c, n, "must be %s", expect);
	if (n.json->valuedouble > (double)MAX_EXACT)
		return fail_path(c, n, "must be at most %lld", MAX_EXACT);
	*out = n.json->valuedouble;
	return 0;
}

static int enum_error(const struct ctx *c, struct node n, const char *const *names, size_t count)
{
	char list[160];
	size_t used = 0;

	for (size_t i = 0; i < count && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"",
					 i == 0 ? "" : count == 2 ? " or " : ", ", names[i]);
	return fail_path(c, n, "must be %s%s", count > 2 ? "one of " : "", list);
}

/* The index of j's string in names[], or -1. */
static int match_name(const cJSON *j, const char *const *names, size_t count)
{
	for (size_t i = 0; cJSON_IsString(j) && i < count; i++) {
		if (strcmp(j->valuestring, names[i]) == 0)
			return (int)i;
	}
	return -1;
}

/* A string among names[], stored as its index (the enum value). */
static int get_enum(const struct ctx *c, struct node n, const char *const *names, size_t count,
		    int *out)
{
	int i;

	if (!n.json)
		return 0;
	i = match_name(n.json, names, count);
	if (i < 0)
		return enum_error(c, n, names, count);
	*out = i;
	return 0;
}

/* A string that fits out[cap] with its NUL. */
static int get_string(const struct ctx *c, struct node n, char *out, size_t cap)
{
	size_t len;

	if (!n.json)
		return 0;
	if (!cJSON_IsString(n.json))
		return fail_path(c, n, "must be a string");
	len = strlen(n.json->valuestring);
	if (len >= cap)
		return fail_path(c, n, "is longer than %zu bytes", cap - 1);
	memcpy(out, n.json->valuestring, len + 1);
	return 0;
}

/* ---- the schema ---- */

static const char *const mode_names[] = { "observe", "enforce" };
static const char *const on_max_names[] = { "report", "fail", "abort" };
static const char *const call_names[] = { "accept", "connect" };
static const char *const realtime_names[] = { "pass", "clamp" };
static const char *const format_names[] = { "json", "folded", "pprof", "prom" };   /* bit i */

static int parse_formats(const struct ctx *c, struct node n, unsigned *out)
{
	char path[128];
	unsigned bits = 0, i = 0;

	if (!n.json)
		return 0;
	path_of(n, path, sizeof(path));
	if (!cJSON_IsArray(n.json) || !n.json->child)
		return fail_path(c, n, "must be a non-empty array of \"json\", \"folded\", \"pprof\", "
				 "\"prom\"");
	for (struct node e = first_child(n); e.json; e = next_sibling(c, e), i++) {
		size_t k;

		for (k = 0; cJSON_IsString(e.json) && k < ARRAY_SIZE(format_names); k++) {
			if (strcmp(e.json->valuestring, format_names[k]) == 0)
				break;
		}
		if (!cJSON_IsString(e.json) || k == ARRAY_SIZE(format_names))
			return fail_at(c, value_off(c, e), "\"%s[%u]\" must be one of \"json\", \"folded\", "
				       "\"pprof\", \"prom\"", path, i);
		if (bits & 1u << k)
			return fail_at(c, value_off(c, e), "\"%s[%u]\" repeats \"%s\"; list each format "
				       "once", path, i, format_names[k]);
		bits |= 1u << k;
	}
	*out = bits;
	return 0;
}

/* The report file name template: the runtime expands only these escapes, and the name is a
 * file in report.dir, never a path. */
static int check_report_name(const struct ctx *c, struct node n, const char *name)
{
	if (!*name)
		return fail_path(c, n, "must not be empty");
	if (strchr(name, '/'))
		return fail_path(c, n, "must not contain '/'; put directories in \"report.dir\"");
	for (const char *p = name; *p; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == 'e' || *p == 'p' || *p == 't' || *p == '%')
			continue;
		if (*p > 0x20 && *p < 0x7f)
			return fail_path(c, n, "has \"%%%c\"; only %%e, %%p, %%t and %%%% are expanded",
					 *p);
		return fail_path(c, n, "has a '%%' that is not %%e, %%p, %%t or %%%%");
	}
	return 0;
}

/* Why a signal cannot carry reports, or NULL if it can. */
static const char *signal_refusal(int signo)
{
	switch (signo) {
	case SIGKILL:
	case SIGSTOP:
		return "it cannot be caught";
	case SIGSEGV:
	case SIGBUS:
	case SIGFPE:
	case SIGILL:
	case SIGTRAP:
	case SIGSYS:
		/* A handler that returns from a synchronous fault re-runs the faulting
		 * instruction (or hides a seccomp kill): it must stay the program's. */
		return "it reports a fault in the program itself";
	case SIGABRT:
		return "abort() raises it and the process ends before a report is written";
	}
	return NULL;
}

static int parse_signal(const struct ctx *c, struct node n, int *out)
{
	const char *name, *refusal;
	char shown[48];
	int signo;

	if (!n.json)
		return 0;
	if (cJSON_IsNull(n.json)) {
		*out = 0;
		return 0;
	}
	if (!cJSON_IsString(n.json))
		return fail_path(c, n, "must be a signal name like \"SIGUSR2\", or null for none");
	name = n.json->valuestring;
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	/* The names come from lg_policy_signal_name(), so what is accepted can be printed. */
	for (signo = 1; signo < 65; signo++) {
		const char *known = lg_policy_signal_name(signo);
		if (known && *name && strcasecmp(known + 3, name) == 0)
			break;
	}
	if (signo == 65)
		return fail_path(c, n, "names no signal: \"%s\"; use a name like \"SIGUSR2\", or null",
				 quote_text(shown, sizeof(shown), n.json->valuestring));
	refusal = signal_refusal(signo);
	if (refusal)
		return fail_path(c, n, "cannot be %s: %s; use a signal like \"SIGUSR2\"",
				 lg_policy_signal_name(signo), refusal);
	*out = signo;
	return 0;
}

static int parse_report(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { DIR_KEY, NAME, FORMATS, AT_EXIT, INTERVAL, SIGNAL, EXIT_CODE, NKEYS };
	static const char *const keys[NKEYS] = { "dir", "name", "formats", "at_exit", "interval_s",
						 "signal", "violation_exit_code" };
	struct node f[NKEYS];
	int64_t code = p->report.violation_exit_code;

	if (members(c, obj, "report", keys, NKEYS, f) ||
	    get_string(c, f[DIR_KEY], p->report.dir, sizeof(p->report.dir)))
		return -EINVAL;
	if (f[DIR_KEY].json && !p->report.dir[0])
		return fail_path(c, f[DIR_KEY], "must not be empty; leave it out for the default");
	if (get_string(c, f[NAME], p->report.name, sizeof(p->report.name)) ||
	    (f[NAME].json && check_report_name(c, f[NAME], p->report.name)) ||
	    parse_formats(c, f[FORMATS], &p->report.formats) ||
	    get_bool(c, f[AT_EXIT], &p->report.at_exit) ||
	    get_u32(c, f[INTERVAL], 0, UINT32_MAX, &p->report.interval_s) ||
	    parse_signal(c, f[SIGNAL], &p->report.signal) ||
	    get_int(c, f[EXIT_CODE], 0, 255, &code))
		return -EINVAL;
	p->report.violation_exit_code = (int)code;
	return 0;
}

static int parse_heap(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { ENABLED, SAMPLE, MAX, ON_MAX, WINDOWS, NKEYS };
	static const char *const keys[NKEYS] = { "enabled", "sample_bytes", "max_bytes", "on_max",
						 "growth_windows" };
	struct node f[NKEYS];
	int on_max = (int)p->heap.on_max;

	if (members(c, obj, "heap", keys, NKEYS, f) ||
	    get_bool(c, f[ENABLED], &p->heap.enabled) ||
	    get_u64(c, f[SAMPLE], 1, &p->heap.sample_bytes) ||
	    get_u64(c, f[MAX], 0, &p->heap.max_bytes) ||
	    get_enum(c, f[ON_MAX], on_max_names, ARRAY_SIZE(on_max_names), &on_max) ||
	    get_u32(c, f[WINDOWS], 1, UINT32_MAX, &p->heap.growth_windows))
		return -EINVAL;
	p->heap.on_max = (enum lg_on_max)on_max;
	return 0;
}

static int parse_fd(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { ENABLED, MAX, WARN, ON_MAX, STACKS, NKEYS };
	static const char *const keys[NKEYS] = { "enabled", "max", "warn_ratio", "on_max", "stacks" };
	static const char ratio[] = "a number greater than 0 and at most 1";
	struct node f[NKEYS];
	int on_max = (int)p->fd.on_max;

	if (members(c, obj, "fd", keys, NKEYS, f) ||
	    get_bool(c, f[ENABLED], &p->fd.enabled) ||
	    get_u64(c, f[MAX], 0, &p->fd.max))
		return -EINVAL;
	if (f[WARN].json) {
		if (get_number(c, f[WARN], ratio, &p->fd.warn_ratio))
			return -EINVAL;
		if (!(p->fd.warn_ratio > 0 && p->fd.warn_ratio <= 1))
			return fail_path(c, f[WARN], "must be %s", ratio);
	}
	if (get_enum(c, f[ON_MAX], on_max_names, ARRAY_SIZE(on_max_names), &on_max) ||
	    get_bool(c, f[STACKS], &p->fd.stacks))
		return -EINVAL;
	p->fd.on_max = (enum lg_on_max)on_max;
	return 0;
}

static int parse_net(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { CONNECT, READ, WRITE, IDLE, MAXCONN, NKEYS };
	static const char *const keys[NKEYS] = { "connect_timeout_ms", "read_timeout_ms",
						 "write_timeout_ms", "idle_timeout_ms",
						 "max_connections" };
	struct node f[NKEYS];

	if (members(c, obj, "net", keys, NKEYS, f) ||
	    get_u32(c, f[CONNECT], 0, UINT32_MAX, &p->net.connect_timeout_ms) ||
	    get_u32(c, f[READ], 0, UINT32_MAX, &p->net.read_timeout_ms) ||
	    get_u32(c, f[WRITE], 0, UINT32_MAX, &p->net.write_timeout_ms) ||
	    get_u32(c, f[IDLE], 0, UINT32_MAX, &p->net.idle_timeout_ms) ||
	    get_u32(c, f[MAXCONN], 0, UINT32_MAX, &p->net.max_connections))
		return -EINVAL;
	return 0;
}

/* "addr": an IPv4 or IPv6 address with an optional /prefix; without one it names one host. */
static int parse_cidr(const struct ctx *c, struct node n, struct lg_cidr *out)
{
	static const char usage[] = "must be an IPv4 or IPv6 address with an optional /prefix, "
				    "like \"10.0.0.0/8\" or \"fd00::/8\"";
	struct lg_cidr r = { 0 };
	char host[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN + 1];
	const char *s, *slash, *digits;
	unsigned prefix, bits;
	size_t host_len, ndigits;

	if (!n.json)
		return 0;
	if (!cJSON_IsString(n.json))
		return fail_path(c, n, "%s", usage);
	s = n.json->valuestring;
	slash = strchr(s, '/');
	host_len = slash ? (size_t)(slash - s) : strlen(s);
	if (host_len == 0 || host_len >= sizeof(host))
		return fail_path(c, n, "%s", usage);
	memcpy(host, s, host_len);
	host[host_len] = '\0';
	if (strchr(host, ':')) {
		r.family = AF_INET6;
		bits = 128;
	} else {
		r.family = AF_INET;
		bits = 32;
	}
	if (inet_pton(r.family, host, r.addr) != 1)
		return fail_path(c, n, "%s", usage);
	prefix = bits;
	if (slash) {
		digits = slash + 1;
		ndigits = strspn(digits, "0123456789");
		if (ndigits == 0 || digits[ndigits] || (digits[0] == '0' && ndigits > 1))
			return fail_path(c, n, "%s", usage);
		if (ndigits > 3)
			prefix = 1000;
		else
			prefix = (unsigned)strtoul(digits, NULL, 10);
		if (prefix > bits)
			return fail_path(c, n, "has prefix /%.8s; an %s prefix is from 0 to %u", digits,
					 bits == 32 ? "IPv4" : "IPv6", bits);
	}
	/* Bits past the prefix are almost always a typo ("10.0.0.1/8"); say what was meant. */
	for (unsigned b = prefix; b < bits; b++) {
		if (r.addr[b / 8] & (0x80u >> (b % 8))) {
			for (unsigned z = prefix; z < bits; z++)
				r.addr[z / 8] &= (uint8_t)~(0x80u >> (z % 8));
			inet_ntop(r.family, r.addr, shown, sizeof(shown));
			return fail_path(c, n, "has bits set past its /%u prefix; write \"%s/%u\"", prefix,
					 shown, prefix);
		}
	}
	r.prefix = (uint8_t)prefix;
	*out = r;
	return 0;
}

static int parse_limit(const struct ctx *c, struct node obj, const char *path,
		       struct lg_limit_rule *r, struct node *name_node)
{
	enum { NAME, CALL, RATE, BURST, PORT, ADDR, ON_LIMIT, NKEYS };
	static const char *const keys[NKEYS] = { "name", "call", "rate", "burst", "port", "addr",
						 "on_limit" };
	struct node f[NKEYS];
	size_t at = value_off(c, obj);
	int call = 0;
	int64_t port = 0;

	memset(r, 0, sizeof(*r));
	r->burst = 1;
	if (members(c, obj, path, keys, NKEYS, f))
		return -EINVAL;
	if (!f[NAME].json)
		return fail_at(c, at, "\"%s.name\" is required: a unique name for reports", path);
	if (get_string(c, f[NAME], r->name, sizeof(r->name)))
		return -EINVAL;
	if (!r->name[0])
		return fail_path(c, f[NAME], "must not be empty");
	for (const unsigned char *p = (const unsigned char *)r->name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return fail_path(c, f[NAME], "must not contain control characters");
	}
	*name_node = f[NAME];
	if (!f[CALL].json)
		return fail_at(c, at, "\"%s.call\" is required: \"accept\" or \"connect\"", path);
	if (get_enum(c, f[CALL], call_names, ARRAY_SIZE(call_names), &call))
		return -EINVAL;
	r->call = (enum lg_limit_call)call;
	if (!f[RATE].json)
		return fail_at(c, at, "\"%s.rate\" is required: tokens per second, greater than 0", path);
	if (get_number(c, f[RATE], "a number greater than 0 (tokens per second)", &r->rate))
		return -EINVAL;
	if (!(r->rate > 0))
		return fail_path(c, f[RATE], "must be a number greater than 0 (tokens per second)");
	if (f[BURST].json) {
		if (get_number(c, f[BURST], "a number of at least 1", &r->burst))
			return -EINVAL;
		if (!(r->burst >= 1))
			return fail_path(c, f[BURST], "must be a number of at least 1");
	}
	if (get_int(c, f[PORT], 0, 65535, &port) || parse_cidr(c, f[ADDR], &r->addr))
		return -EINVAL;
	r->port = (int)port;
	/* The two calls fail in different ways: a shed connection was accepted and reset, a refused
	 * connect returns ECONNREFUSED; each call takes its own two actions. */
	if (r->call == LG_LIMIT_ACCEPT) {
		static const char *const accept_actions[] = { "shed", "wait" };
		int action = f[ON_LIMIT].json ? match_name(f[ON_LIMIT].json, accept_actions, 2) : 0;
		if (action < 0)
			return fail_path(c, f[ON_LIMIT], "must be \"shed\" or \"wait\" for call \"accept\"");
		r->on_limit = action ? LG_ON_LIMIT_WAIT : LG_ON_LIMIT_SHED;
	} else {
		static const char *const connect_actions[] = { "fail", "wait" };
		int action = f[ON_LIMIT].json ? match_name(f[ON_LIMIT].json, connect_actions, 2) : 0;
		if (action < 0)
			return fail_path(c, f[ON_LIMIT], "must be \"fail\" or \"wait\" for call \"connect\"");
		r->on_limit = action ? LG_ON_LIMIT_WAIT : LG_ON_LIMIT_FAIL;
	}
	return 0;
}

static int parse_limits(const struct ctx *c, struct node arr, struct lg_policy *p)
{
	struct node names[LG_POLICY_MAX_LIMITS];
	uint32_t i = 0;

	if (!arr.json)
		return 0;
	if (!cJSON_IsArray(arr.json))
		return fail_path(c, arr, "must be an array of rules like {\"name\": \"in\", \"call\": "
				 "\"accept\", \"rate\": 100}");
	for (struct node e = first_child(arr); e.json; e = next_sibling(c, e), i++) {
		char path[32];

		if (i == LG_POLICY_MAX_LIMITS)
			return fail_at(c, value_off(c, e), "\"limits\" holds more than %d rules",
				       LG_POLICY_MAX_LIMITS);
		snprintf(path, sizeof(path), "limits[%u]", i);
		e.prefix = path;
		if (parse_limit(c, e, path, &p->limits[i], &names[i]))
			return -EINVAL;
		for (uint32_t j = 0; j < i; j++) {
			char shown[72];
			if (strcmp(p->limits[j].name, p->limits[i].name) != 0)
				continue;
			return fail_path(c, names[i], "repeats \"%s\" from \"limits[%u]\"; names must be "
					 "unique", quote_text(shown, sizeof(shown), p->limits[i].name), j);
		}
	}
	/* The first matching rule applies, so their order is kept as written. */
	p->nlimits = i;
	return 0;
}

static int parse_inject(const struct ctx *c, struct node obj, const char *path,
			struct lg_clock_inject *in)
{
	enum { AT, CLOCK, STEP, NKEYS };
	static const char *const keys[NKEYS] = { "at_ms", "clock", "step_ms" };
	struct node f[NKEYS];
	size_t at = value_off(c, obj);

	memset(in, 0, sizeof(*in));
	in->clock = LG_CLOCK_REALTIME;
	if (members(c, obj, path, keys, NKEYS, f))
		return -EINVAL;
	if (!f[AT].json)
		return fail_at(c, at, "\"%s.at_ms\" is required: milliseconds after start", path);
	if (get_int(c, f[AT], 0, MAX_EXACT, &in->at_ms))
		return -EINVAL;
	if (f[CLOCK].json) {
		const char *name = cJSON_IsString(f[CLOCK].json) ? f[CLOCK].json->valuestring : "";
		/* Stepping monotonic would break the one promise that clock makes; the guard
		 * exists to find code that trusts realtime where it should not. */
		if (strcmp(name, "monotonic") == 0)
			return fail_path(c, f[CLOCK], "must be \"realtime\": only realtime can be stepped");
		if (strcmp(name, "realtime") != 0)
			return fail_path(c, f[CLOCK], "must be \"realtime\"");
	}
	if (!f[STEP].json)
		return fail_at(c, at, "\"%s.step_ms\" is required: a non-zero step in milliseconds",
			       path);
	if (get_int(c, f[STEP], -MAX_EXACT, MAX_EXACT, &in->step_ms))
		return -EINVAL;
	if (in->step_ms == 0)
		return fail_path(c, f[STEP], "must be a non-zero integer");
	return 0;
}

static int parse_clock(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { ENABLED, JUMP, REALTIME, INJECT, NKEYS };
	static const char *const keys[NKEYS] = { "enabled", "jump_ms", "realtime", "inject" };
	struct node f[NKEYS];
	int realtime = (int)p->clock.realtime;
	uint32_t i = 0;

	if (members(c, obj, "clock", keys, NKEYS, f) ||
	    get_bool(c, f[ENABLED], &p->clock.enabled) ||
	    get_u32(c, f[JUMP], 1, UINT32_MAX, &p->clock.jump_ms) ||
	    get_enum(c, f[REALTIME], realtime_names, ARRAY_SIZE(realtime_names), &realtime))
		return -EINVAL;
	p->clock.realtime = (enum lg_clock_realtime)realtime;
	if (!f[INJECT].json)
		return 0;
	if (!cJSON_IsArray(f[INJECT].json))
		return fail_path(c, f[INJECT], "must be an array of steps like {\"at_ms\": 1000, "
				 "\"clock\": \"realtime\", \"step_ms\": -2000}");
	for (struct node e = first_child(f[INJECT]); e.json; e = next_sibling(c, e), i++) {
		char path[32];

		if (i == LG_POLICY_MAX_INJECT)
			return fail_at(c, value_off(c, e), "\"clock.inject\" holds more than %d steps",
				       LG_POLICY_MAX_INJECT);
		snprintf(path, sizeof(path), "clock.inject[%u]", i);
		if (parse_inject(c, e, path, &p->clock.inject[i]))
			return -EINVAL;
	}
	p->clock.ninject = i;
	return 0;
}

static int parse_root(const struct ctx *c, struct node root, struct lg_policy *p)
{
	enum { VERSION, MODE, REPORT, STACKS, HEAP, FD, NET, LIMITS, CLOCK, LOCKS, THREADS, NKEYS };
	static const char *const keys[NKEYS] = { "version", "mode", "report", "stacks", "heap", "fd",
						 "net", "limits", "clock", "locks", "threads" };
	static const char *const depth_keys[] = { "max_depth" };
	static const char *const lock_keys[] = { "enabled", "sample" };
	static const char *const thread_keys[] = { "enabled", "max" };
	struct node f[NKEYS], sub[2];
	int mode = (int)p->mode;

	if (members(c, root, "", keys, NKEYS, f))
		return -EINVAL;
	if (f[VERSION].json && !(exact_integer(f[VERSION].json) && f[VERSION].json->valuedouble == 1))
		return fail_path(c, f[VERSION], "must be %d, the schema version this libguard reads",
				 LG_POLICY_VERSION);
	if (get_enum(c, f[MODE], mode_names, ARRAY_SIZE(mode_names), &mode))
		return -EINVAL;
	p->mode = (enum lg_mode)mode;
	if (f[REPORT].json && parse_report(c, f[REPORT], p))
		return -EINVAL;
	if (f[STACKS].json && (members(c, f[STACKS], "stacks", depth_keys, 1, sub) ||
			       get_u32(c, sub[0], 1, 128, &p->stacks.max_depth)))
		return -EINVAL;
	if ((f[HEAP].json && parse_heap(c, f[HEAP], p)) || (f[FD].json && parse_fd(c, f[FD], p)) ||
	    (f[NET].json && parse_net(c, f[NET], p)) || parse_limits(c, f[LIMITS], p) ||
	    (f[CLOCK].json && parse_clock(c, f[CLOCK], p)))
		return -EINVAL;
	if (f[LOCKS].json && (members(c, f[LOCKS], "locks", lock_keys, 2, sub) ||
			      get_bool(c, sub[0], &p->locks.enabled) ||
			      get_u32(c, sub[1], 1, UINT32_MAX, &p->locks.sample)))
		return -EINVAL;
	if (f[THREADS].json && (members(c, f[THREADS], "threads", thread_keys, 2, sub) ||
				get_bool(c, sub[0], &p->threads.enabled) ||
				get_u32(c, sub[1], 0, UINT32_MAX, &p->threads.max)))
		return -EINVAL;
	return 0;
}

static uint32_t count_nodes(const cJSON *j)
{
	uint32_t n = 1;

	for (const cJSON *child = j->child; child; child = child->next)
		n += count_nodes(child);
	return n;
}

/* ---- the API ---- */

void lg_policy_defaults(struct lg_policy *p)
{
	/* Zeroed first so that two policies with the same values compare equal with memcmp. */
	memset(p, 0, sizeof(*p));
	p->version = LG_POLICY_VERSION;
	p->mode = LG_MODE_OBSERVE;
	snprintf(p->report.name, sizeof(p->report.name), "guard-%%e-%%p");
	p->report.formats = LG_FORMAT_JSON;
	p->report.at_exit = true;
	p->report.interval_s = 0;
	p->report.signal = SIGUSR2;
	p->report.violation_exit_code = 0;
	p->stacks.max_depth = 32;
	p->heap.enabled = true;
	p->heap.sample_bytes = 524288;
	p->heap.max_bytes = 0;
	p->heap.on_max = LG_ON_MAX_REPORT;
	p->heap.growth_windows = 3;
	p->fd.enabled = true;
	p->fd.max = 0;
	p->fd.warn_ratio = 0.8;
	p->fd.on_max = LG_ON_MAX_FAIL;
	p->fd.stacks = true;
	p->nlimits = 0;
	p->clock.enabled = true;
	p->clock.jump_ms = 1000;
	p->clock.realtime = LG_REALTIME_PASS;
	p->clock.ninject = 0;
	p->locks.enabled = true;
	p->locks.sample = 1;
	p->threads.enabled = true;
	p->threads.max = 0;
}

int lg_policy_parse(const char *text, size_t len, const char *source, struct lg_policy *out,
		    char *err, size_t errlen)
{
	struct scan sc = { .s = (const unsigned char *)text, .len = len };
	struct ctx c = { .text = text, .len = len, .source = source ? source : "policy",
			 .err = err, .errlen = err ? errlen : 0 };
	const char *end = NULL;
	cJSON *root;
	int rc;

	if (c.errlen)
		err[0] = '\0';
	if (!out || (!text && len)) {
		c.len = 0;
		return fail_at(&c, 0, "no policy text");
	}
	if (len > POLICY_MAX_BYTES)
		return fail_at(&c, 0, "the policy is larger than 1 MiB");
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		c.bom = sc.pos = 3;
	if (scan_text(&sc)) {
		if (sc.nomem) {
			if (c.errlen)
				snprintf(err, errlen, "%s: out of memory", c.source);
			rc = -ENOMEM;
		} else {
			rc = fail_at(&c, sc.err_off, "%s", sc.msg);
		}
		free(sc.spans);
		return rc;
	}
	c.spans = sc.spans;
	/* The scanner has accepted the text, so cJSON fails only when malloc does. */
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root) {
		rc = fail_at(&c, end ? (size_t)(end - text) : 0, "the JSON parser failed here "
			     "(out of memory?)");
	} else if (count_nodes(root) != sc.nspans) {
		rc = fail_at(&c, 0, "internal error: cJSON and the position scanner disagree");
	} else {
		lg_policy_defaults(out);
		rc = parse_root(&c, (struct node){ .json = root, .idx = 0, .prefix = "" }, out);
	}
	cJSON_Delete(root);
	free(sc.spans);
	return rc;
}

static int read_error(const char *path, int error, char *err, size_t errlen)
{
	if (err && errlen) {
		errno = error;
		snprintf(err, errlen, "%s: %m", path);
	}
	return -error;
}

int lg_policy_load_file(const char *path, struct lg_policy *out, char *err, size_t errlen)
{
	struct stat st;
	size_t have = 0, cap = 64 * 1024;
	char *buf = NULL;
	int fd, rc;

	if (!path)
		return read_error("(null)", EINVAL, err, errlen);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return read_error(path, errno, err, errlen);
	/* A regular file says its size up front: refuse a big one without reading it. Pipes and
	 * process substitutions (guardrun --policy <(...)) are read up to the cap. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if ((uint64_t)st.st_size > POLICY_MAX_BYTES)
			goto too_large;
		cap = (size_t)st.st_size + 1;
	}
	for (;;) {
		ssize_t n;

		if (have == cap || !buf) {
			size_t grown = buf ? cap * 2 : cap;
			char *bigger;
			if (grown > POLICY_MAX_BYTES + 1)
				grown = POLICY_MAX_BYTES + 1;
			bigger = realloc(buf, grown);
			if (!bigger) {
				rc = read_error(path, ENOMEM, err, errlen);
				goto out;
			}
			buf = bigger;
			cap = grown;
		}
		n = read(fd, buf + have, cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = read_error(path, errno, err, errlen);
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have > POLICY_MAX_BYTES)
			goto too_large;
	}
	rc = lg_policy_parse(buf, have, path, out, err, errlen);
	goto out;
too_large:
	if (err && errlen)
		snprintf(err, errlen, "%s: policy file is larger than 1 MiB", path);
	rc = -EFBIG;
out:
	free(buf);
	close(fd);
	return rc;
}
