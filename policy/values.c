/* Values in the cJSON tree: where they are, how to name them in a message, and how to read
 * them as the schema's types (booleans, integers, numbers, enums, strings, signals, CIDRs).
 *
 * Every error names the value by its path ("limits[0].rate") and places it at the line and
 * column the scanner recorded for it, as "source:line:col: message".
 */
#include "policy/parse_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- positions and messages ---- */

const char *lg_path_of(struct node n, char *buf, size_t len)
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

int lg_fail_at(const struct ctx *c, size_t off, const char *fmt, ...)
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

int lg_fail_path(const struct ctx *c, struct node n, const char *fmt, ...)
{
	char path[128], msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return lg_fail_at(c, lg_value_off(c, n), "\"%s\" %s", lg_path_of(n, path, sizeof(path)), msg);
}

int lg_fail_required(const struct ctx *c, size_t off, struct node n, const char *what)
{
	char path[128];

	return lg_fail_at(c, off, "\"%s\" is required: %s", lg_path_of(n, path, sizeof(path)), what);
}

/* names[] as "a", "b", "c" in list[cap], cut where it does not fit; two names are joined with
 * pair_sep instead (" or " reads better in "must be" messages). */
static void quoted_names(char *list, size_t cap, const char *const *names, size_t count,
			 const char *pair_sep)
{
	list[0] = '\0';
	for (size_t i = 0, used = 0; i < count && used < cap; i++)
		used += (size_t)snprintf(list + used, cap - used, "%s\"%s\"",
					 i == 0 ? "" : count == 2 ? pair_sep : ", ", names[i]);
}

/* Copy text from the policy into a message: printable text and UTF-8 kept, quotes, backslashes
 * and control bytes escaped, long text cut, so that an error stays one readable line. */
const char *lg_quote_text(char *dst, size_t cap, const char *src)
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
			n = consumed = lg_utf8_sequence(s, strnlen((const char *)s, 4));
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

/* ---- objects and their keys ---- */

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

	lg_quote_text(shown, sizeof(shown), m.json->string);
	for (size_t i = 0; i < nkeys; i++) {
		size_t d = edit_distance(m.json->string, keys[i]);
		if (d < best_distance) {
			best_distance = d;
			best = i;
		}
	}
	if (best < nkeys && best_distance <= (strlen(keys[best]) <= 4 ? 1u : 2u))
		return lg_fail_at(c, off, "unknown key \"%s%s%s\"; did you mean \"%s%s%s\"?", objpath, dot,
				  shown, objpath, dot, keys[best]);
	quoted_names(list, sizeof(list), keys, nkeys, ", ");
	if (*objpath)
		return lg_fail_at(c, off, "unknown key \"%s.%s\"; \"%s\" takes %s", objpath, shown, objpath,
				  list);
	return lg_fail_at(c, off, "unknown key \"%s\"; a policy takes %s", shown, list);
}

/* Check that obj is an object whose keys are all in keys[], each at most once; found[i] is
 * the member named keys[i], or has json NULL when it is absent. */
int lg_members(const struct ctx *c, struct node obj, const char *objpath,
		   const char *const *keys, size_t nkeys, struct node *found)
{
	if (!cJSON_IsObject(obj.json)) {
		if (!*objpath)
			return lg_fail_at(c, lg_value_off(c, obj), "the policy must be a JSON object, like "
					  "{\"mode\": \"observe\"}");
		return lg_fail_at(c, lg_value_off(c, obj), "\"%s\" must be an object", objpath);
	}
	for (size_t i = 0; i < nkeys; i++)
		found[i] = (struct node){ .json = NULL, .prefix = objpath, .key = keys[i] };
	for (struct node m = lg_first_child(obj); m.json; m = lg_next_sibling(c, m)) {
		size_t i;

		for (i = 0; i < nkeys && strcmp(m.json->string, keys[i]) != 0; i++)
			;
		if (i == nkeys)
			return unknown_key(c, m, objpath, keys, nkeys);
		if (found[i].json) {
			unsigned line, col;
			char path[128];
			line_col(c, c->spans[found[i].idx].key, &line, &col);
			return lg_fail_at(c, c->spans[m.idx].key, "duplicate key \"%s\" (first at %u:%u); "
					  "keep one", lg_path_of(found[i], path, sizeof(path)), line, col);
		}
		found[i].json = m.json;
		found[i].idx = m.idx;
	}
	return 0;
}

/* ---- typed values ---- */

int lg_get_bool(const struct ctx *c, struct node n, bool *out)
{
	if (!n.json)
		return 0;
	if (!cJSON_IsBool(n.json))
		return lg_fail_path(c, n, "must be true or false");
	*out = cJSON_IsTrue(n.json);
	return 0;
}

bool lg_exact_integer(const cJSON *j)
{
	double v = j->valuedouble;
	return cJSON_IsNumber(j) && v >= -(double)MAX_EXACT && v <= (double)MAX_EXACT &&
	       v == (double)(int64_t)v;
}

/* An integer in [min, max]; max is at most 2^53 - 1. JSON has one number type, so 1e3 is the
 * integer 1000 and 1.5 is no integer at all. */
int lg_get_int(const struct ctx *c, struct node n, int64_t min, int64_t max, int64_t *out)
{
	double v;

	if (!n.json)
		return 0;
	v = n.json->valuedouble;
	if (lg_exact_integer(n.json) && v >= (double)min && v <= (double)max) {
		*out = (int64_t)v;
		return 0;
	}
	if (max <= 65535)
		return lg_fail_path(c, n, "must be an integer from %lld to %lld", (long long)min,
				    (long long)max);
	if (cJSON_IsNumber(n.json) && v > (double)max)
		return lg_fail_path(c, n, "must be at most %lld", (long long)max);
	if (cJSON_IsNumber(n.json) && v < (double)min && min < 0)
		return lg_fail_path(c, n, "must be at least %lld", (long long)min);
	if (min == 0)
		return lg_fail_path(c, n, "must be a non-negative integer");
	if (min == 1)
		return lg_fail_path(c, n, "must be a positive integer");
	return lg_fail_path(c, n, "must be an integer");
}

int lg_get_u32(const struct ctx *c, struct node n, uint32_t min, uint32_t max, uint32_t *out)
{
	int64_t v = 0;

	if (!n.json)
		return 0;
	if (lg_get_int(c, n, min, max, &v))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

int lg_get_u64(const struct ctx *c, struct node n, int64_t min, uint64_t *out)
{
	int64_t v = 0;

	if (!n.json)
		return 0;
	if (lg_get_int(c, n, min, MAX_EXACT, &v))
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

/* Any number up to 2^53; callers check their own range. */
int lg_get_number(const struct ctx *c, struct node n, const char *expect, double *out)
{
	if (!cJSON_IsNumber(n.json))
		return lg_fail_path(c, n, "must be %s", expect);
	if (n.json->valuedouble > (double)MAX_EXACT)
		return lg_fail_path(c, n, "must be at most %lld", MAX_EXACT);
	*out = n.json->valuedouble;
	return 0;
}

static int enum_error(const struct ctx *c, struct node n, const char *const *names, size_t count)
{
	char list[160];

	quoted_names(list, sizeof(list), names, count, " or ");
	return lg_fail_path(c, n, "must be %s%s", count > 2 ? "one of " : "", list);
}

/* The index of j's string in names[], or -1. */
int lg_match_name(const cJSON *j, const char *const *names, size_t count)
{
	for (size_t i = 0; cJSON_IsString(j) && i < count; i++) {
		if (strcmp(j->valuestring, names[i]) == 0)
			return (int)i;
	}
	return -1;
}

/* A string among names[], stored as its index (the enum value). */
int lg_get_enum(const struct ctx *c, struct node n, const char *const *names, size_t count,
		    int *out)
{
	int i;

	if (!n.json)
		return 0;
	i = lg_match_name(n.json, names, count);
	if (i < 0)
		return enum_error(c, n, names, count);
	*out = i;
	return 0;
}

/* A string that fits out[cap] with its NUL. */
int lg_get_string(const struct ctx *c, struct node n, char *out, size_t cap)
{
	size_t len;

	if (!n.json)
		return 0;
	if (!cJSON_IsString(n.json))
		return lg_fail_path(c, n, "must be a string");
	len = strlen(n.json->valuestring);
	if (len >= cap)
		return lg_fail_path(c, n, "is longer than %zu bytes", cap - 1);
	memcpy(out, n.json->valuestring, len + 1);
	return 0;
}

/* ---- signals and addresses ---- */

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

int lg_get_signal(const struct ctx *c, struct node n, int *out)
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
		return lg_fail_path(c, n, "must be a signal name like \"SIGUSR2\", or null for none");
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
		return lg_fail_path(c, n, "names no signal: \"%s\"; use a name like \"SIGUSR2\", or null",
				    lg_quote_text(shown, sizeof(shown), n.json->valuestring));
	refusal = signal_refusal(signo);
	if (refusal)
		return lg_fail_path(c, n, "cannot be %s: %s; use a signal like \"SIGUSR2\"",
				    lg_policy_signal_name(signo), refusal);
	*out = signo;
	return 0;
}

/* "addr": an IPv4 or IPv6 address with an optional /prefix; without one it names one host. */
int lg_get_cidr(const struct ctx *c, struct node n, struct lg_cidr *out)
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
		return lg_fail_path(c, n, "%s", usage);
	s = n.json->valuestring;
	slash = strchr(s, '/');
	host_len = slash ? (size_t)(slash - s) : strlen(s);
	if (host_len == 0 || host_len >= sizeof(host))
		return lg_fail_path(c, n, "%s", usage);
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
		return lg_fail_path(c, n, "%s", usage);
	prefix = bits;
	if (slash) {
		digits = slash + 1;
		ndigits = strspn(digits, "0123456789");
		if (ndigits == 0 || digits[ndigits] || (digits[0] == '0' && ndigits > 1))
			return lg_fail_path(c, n, "%s", usage);
		if (ndigits > 3)
			prefix = 1000;
		else
			prefix = (unsigned)strtoul(digits, NULL, 10);
		if (prefix > bits)
			return lg_fail_path(c, n, "has prefix /%.8s; an %s prefix is from 0 to %u", digits,
					    bits == 32 ? "IPv4" : "IPv6", bits);
	}
	/* Bits past the prefix are almost always a typo ("10.0.0.1/8"); say what was meant. */
	for (unsigned b = prefix; b < bits; b++) {
		if (r.addr[b / 8] & (0x80u >> (b % 8))) {
			for (unsigned z = prefix; z < bits; z++)
				r.addr[z / 8] &= (uint8_t)~(0x80u >> (z % 8));
			inet_ntop(r.family, r.addr, shown, sizeof(shown));
			return lg_fail_path(c, n, "has bits set past its /%u prefix; write \"%s/%u\"", prefix,
					    shown, prefix);
		}
	}
	r.prefix = (uint8_t)prefix;
	*out = r;
	return 0;
}
