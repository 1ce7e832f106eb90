/* Private to the policy parser: what policy/scan.c, policy/values.c and policy/parse.c share.
 *
 * The scanner (scan.c) validates the text and records where every value and member key starts,
 * in document pre-order. values.c turns a cJSON node plus its record into a position for
 * messages and reads typed values out of it. parse.c walks the schema.
 */
#ifndef LG_POLICY_PARSE_INTERNAL_H
#define LG_POLICY_PARSE_INTERNAL_H

#include "policy/policy.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2^53 - 1: a double holds every integer up to here, and 2^53 + 1 reads as 2^53, so anything
 * from 2^53 on may not be the number the text wrote. */
#define MAX_EXACT 9007199254740991LL
#define NO_KEY UINT32_MAX

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- scan.c: bytes, grammar, positions ---- */

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

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 if it is not valid UTF-8. */
size_t lg_utf8_sequence(const unsigned char *s, size_t n);

/* Check sc->s[sc->pos..len) and record its spans. Returns 0, or -1 with sc->msg and sc->err_off
 * set (sc->nomem when the spans could not grow). The caller frees sc->spans either way. */
int lg_scan_text(struct scan *sc);

/* ---- values.c: positions, messages and typed values over the cJSON tree ---- */

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

/* cJSON keeps members in document order, so a node's first child is the record after its own,
 * and its next sibling is its own record plus the size of its subtree. */
static inline struct node lg_first_child(struct node n)
{
	return (struct node){ .json = n.json->child, .idx = n.idx + 1 };
}

static inline struct node lg_next_sibling(const struct ctx *c, struct node n)
{
	return (struct node){ .json = n.json->next, .idx = n.idx + c->spans[n.idx].size };
}

static inline size_t lg_value_off(const struct ctx *c, struct node n)
{
	return c->spans[n.idx].value;
}

const char *lg_path_of(struct node n, char *buf, size_t len);

/* Fill c->err with "source:line:col: message" for the byte at off; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
int lg_fail_at(const struct ctx *c, size_t off, const char *fmt, ...);

/* `"path" <message>`, at the node's value; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
int lg_fail_path(const struct ctx *c, struct node n, const char *fmt, ...);

/* `"path" is required: <what>`, at off (the enclosing object). */
int lg_fail_required(const struct ctx *c, size_t off, struct node n, const char *what);

const char *lg_quote_text(char *dst, size_t cap, const char *src);

/* Check that obj is an object whose keys are all in keys[], each at most once; found[i] is
 * the member named keys[i], or has json NULL when it is absent. */
int lg_members(const struct ctx *c, struct node obj, const char *objpath,
	       const char *const *keys, size_t nkeys, struct node *found);

/* Each lg_get_* but lg_get_number leaves *out alone when the node is absent (json NULL);
 * lg_get_number takes a present node and leaves the range check to its caller. */
bool lg_exact_integer(const cJSON *j);
int lg_get_bool(const struct ctx *c, struct node n, bool *out);
int lg_get_int(const struct ctx *c, struct node n, int64_t min, int64_t max, int64_t *out);
int lg_get_u32(const struct ctx *c, struct node n, uint32_t min, uint32_t max, uint32_t *out);
int lg_get_u64(const struct ctx *c, struct node n, int64_t min, uint64_t *out);
int lg_get_number(const struct ctx *c, struct node n, const char *expect, double *out);
int lg_match_name(const cJSON *j, const char *const *names, size_t count);
int lg_get_enum(const struct ctx *c, struct node n, const char *const *names, size_t count,
		int *out);
int lg_get_string(const struct ctx *c, struct node n, char *out, size_t cap);
int lg_get_signal(const struct ctx *c, struct node n, int *out);
int lg_get_cidr(const struct ctx *c, struct node n, struct lg_cidr *out);

#endif
