/* Policy text -> struct lg_policy (schema version 1), with every error at its line and column.
 *
 * cJSON builds the tree, but it keeps no positions and it is lax where a policy must be strict,
 * so the scanner in scan.c runs first: it rejects what cJSON would wrongly accept and records
 * where every value and its member key start, in document pre-order. cJSON keeps members in
 * document order, so its tree walked in the same pre-order lines up with those records (see
 * lg_first_child() and lg_next_sibling()). This file walks the schema over that tree, section by
 * section, with the typed readers in values.c.
 *
 * Nothing here touches global mutable state: every call owns its scanner records and cJSON tree
 * and frees both before it returns. cJSON_GetErrorPtr() reads a global, so it is not used; the
 * scanner has already rejected anything cJSON would, which also keeps cJSON from writing that
 * global, except when it runs out of memory.
 */
#include "policy/parse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLICY_MAX_BYTES (1u << 20)

/* ---- the schema ---- */

static const char *const mode_names[] = { "observe", "enforce" };
static const char *const on_max_names[] = { "report", "fail", "abort" };
static const char *const call_names[] = { "accept", "connect" };   /* enum lg_limit_call */
static const char *const on_limit_names[][2] = { { "shed", "wait" }, { "fail", "wait" } };
static const enum lg_on_limit on_limit_values[][2] = {
	{ LG_ON_LIMIT_SHED, LG_ON_LIMIT_WAIT },
	{ LG_ON_LIMIT_FAIL, LG_ON_LIMIT_WAIT },
};
static const char *const realtime_names[] = { "pass", "clamp" };
static const char *const format_names[] = { "json", "folded", "pprof", "prom" };   /* bit i */

static int parse_formats(const struct ctx *c, struct node n, unsigned *out)
{
	char path[128];
	unsigned bits = 0, i = 0;

	if (!n.json)
		return 0;
	lg_path_of(n, path, sizeof(path));
	if (!cJSON_IsArray(n.json) || !n.json->child)
		return lg_fail_path(c, n, "must be a non-empty array of \"json\", \"folded\", \"pprof\", "
				    "\"prom\"");
	for (struct node e = lg_first_child(n); e.json; e = lg_next_sibling(c, e), i++) {
		int k = lg_match_name(e.json, format_names, ARRAY_SIZE(format_names));

		if (k < 0)
			return lg_fail_at(c, lg_value_off(c, e), "\"%s[%u]\" must be one of \"json\", "
					  "\"folded\", \"pprof\", \"prom\"", path, i);
		if (bits & 1u << k)
			return lg_fail_at(c, lg_value_off(c, e), "\"%s[%u]\" repeats \"%s\"; list each "
					  "format once", path, i, format_names[k]);
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
		return lg_fail_path(c, n, "must not be empty");
	if (strchr(name, '/'))
		return lg_fail_path(c, n, "must not contain '/'; put directories in \"report.dir\"");
	for (const char *p = name; *p; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == 'e' || *p == 'p' || *p == 't' || *p == '%')
			continue;
		if (*p > 0x20 && *p < 0x7f)
			return lg_fail_path(c, n, "has \"%%%c\"; only %%e, %%p, %%t and %%%% are expanded",
					    *p);
		return lg_fail_path(c, n, "has a '%%' that is not %%e, %%p, %%t or %%%%");
	}
	return 0;
}

static int parse_report(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { DIR_KEY, NAME, FORMATS, AT_EXIT, INTERVAL, SIGNAL, EXIT_CODE, NKEYS };
	static const char *const keys[NKEYS] = { "dir", "name", "formats", "at_exit", "interval_s",
						 "signal", "violation_exit_code" };
	struct node f[NKEYS];
	int64_t code = p->report.violation_exit_code;

	if (lg_members(c, obj, "report", keys, NKEYS, f) ||
	    lg_get_string(c, f[DIR_KEY], p->report.dir, sizeof(p->report.dir)))
		return -EINVAL;
	if (f[DIR_KEY].json && !p->report.dir[0])
		return lg_fail_path(c, f[DIR_KEY], "must not be empty; leave it out for the default");
	if (lg_get_string(c, f[NAME], p->report.name, sizeof(p->report.name)) ||
	    (f[NAME].json && check_report_name(c, f[NAME], p->report.name)) ||
	    parse_formats(c, f[FORMATS], &p->report.formats) ||
	    lg_get_bool(c, f[AT_EXIT], &p->report.at_exit) ||
	    lg_get_u32(c, f[INTERVAL], 0, UINT32_MAX, &p->report.interval_s) ||
	    lg_get_signal(c, f[SIGNAL], &p->report.signal) ||
	    lg_get_int(c, f[EXIT_CODE], 0, 255, &code))
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

	if (lg_members(c, obj, "heap", keys, NKEYS, f) ||
	    lg_get_bool(c, f[ENABLED], &p->heap.enabled) ||
	    lg_get_u64(c, f[SAMPLE], 1, &p->heap.sample_bytes) ||
	    lg_get_u64(c, f[MAX], 0, &p->heap.max_bytes) ||
	    lg_get_enum(c, f[ON_MAX], on_max_names, ARRAY_SIZE(on_max_names), &on_max) ||
	    lg_get_u32(c, f[WINDOWS], 1, UINT32_MAX, &p->heap.growth_windows))
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

	if (lg_members(c, obj, "fd", keys, NKEYS, f) ||
	    lg_get_bool(c, f[ENABLED], &p->fd.enabled) ||
	    lg_get_u64(c, f[MAX], 0, &p->fd.max))
		return -EINVAL;
	if (f[WARN].json) {
		if (lg_get_number(c, f[WARN], ratio, &p->fd.warn_ratio))
			return -EINVAL;
		if (!(p->fd.warn_ratio > 0 && p->fd.warn_ratio <= 1))
			return lg_fail_path(c, f[WARN], "must be %s", ratio);
	}
	if (lg_get_enum(c, f[ON_MAX], on_max_names, ARRAY_SIZE(on_max_names), &on_max) ||
	    lg_get_bool(c, f[STACKS], &p->fd.stacks))
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

	if (lg_members(c, obj, "net", keys, NKEYS, f) ||
	    lg_get_u32(c, f[CONNECT], 0, UINT32_MAX, &p->net.connect_timeout_ms) ||
	    lg_get_u32(c, f[READ], 0, UINT32_MAX, &p->net.read_timeout_ms) ||
	    lg_get_u32(c, f[WRITE], 0, UINT32_MAX, &p->net.write_timeout_ms) ||
	    lg_get_u32(c, f[IDLE], 0, UINT32_MAX, &p->net.idle_timeout_ms) ||
	    lg_get_u32(c, f[MAXCONN], 0, UINT32_MAX, &p->net.max_connections))
		return -EINVAL;
	return 0;
}

static int parse_limit(const struct ctx *c, struct node obj, const char *path,
		       struct lg_limit_rule *r, struct node *name_node)
{
	enum { NAME, CALL, RATE, BURST, PORT, ADDR, ON_LIMIT, NKEYS };
	static const char *const keys[NKEYS] = { "name", "call", "rate", "burst", "port", "addr",
						 "on_limit" };
	struct node f[NKEYS];
	size_t at = lg_value_off(c, obj);
	int call = 0, action;
	int64_t port = 0;

	memset(r, 0, sizeof(*r));
	r->burst = 1;
	if (lg_members(c, obj, path, keys, NKEYS, f))
		return -EINVAL;
	if (!f[NAME].json)
		return lg_fail_required(c, at, f[NAME], "a unique name for reports");
	if (lg_get_string(c, f[NAME], r->name, sizeof(r->name)))
		return -EINVAL;
	if (!r->name[0])
		return lg_fail_path(c, f[NAME], "must not be empty");
	for (const unsigned char *p = (const unsigned char *)r->name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return lg_fail_path(c, f[NAME], "must not contain control characters");
	}
	*name_node = f[NAME];
	if (!f[CALL].json)
		return lg_fail_required(c, at, f[CALL], "\"accept\" or \"connect\"");
	if (lg_get_enum(c, f[CALL], call_names, ARRAY_SIZE(call_names), &call))
		return -EINVAL;
	r->call = (enum lg_limit_call)call;
	if (!f[RATE].json)
		return lg_fail_required(c, at, f[RATE], "tokens per second, greater than 0");
	if (lg_get_number(c, f[RATE], "a number greater than 0 (tokens per second)", &r->rate))
		return -EINVAL;
	if (!(r->rate > 0))
		return lg_fail_path(c, f[RATE], "must be a number greater than 0 (tokens per second)");
	if (f[BURST].json) {
		if (lg_get_number(c, f[BURST], "a number of at least 1", &r->burst))
			return -EINVAL;
		if (!(r->burst >= 1))
			return lg_fail_path(c, f[BURST], "must be a number of at least 1");
	}
	if (lg_get_int(c, f[PORT], 0, 65535, &port) || lg_get_cidr(c, f[ADDR], &r->addr))
		return -EINVAL;
	r->port = (int)port;
	/* The two calls fail in different ways: a shed connection was accepted and reset, a refused
	 * connect returns ECONNREFUSED; each call takes its own two actions, the first the default. */
	action = f[ON_LIMIT].json ? lg_match_name(f[ON_LIMIT].json, on_limit_names[call], 2) : 0;
	if (action < 0)
		return lg_fail_path(c, f[ON_LIMIT], "must be \"%s\" or \"%s\" for call \"%s\"",
				    on_limit_names[call][0], on_limit_names[call][1], call_names[call]);
	r->on_limit = on_limit_values[call][action];
	return 0;
}

static int parse_limits(const struct ctx *c, struct node arr, struct lg_policy *p)
{
	struct node names[LG_POLICY_MAX_LIMITS];
	uint32_t i = 0;

	if (!arr.json)
		return 0;
	if (!cJSON_IsArray(arr.json))
		return lg_fail_path(c, arr, "must be an array of rules like {\"name\": \"in\", \"call\": "
				    "\"accept\", \"rate\": 100}");
	for (struct node e = lg_first_child(arr); e.json; e = lg_next_sibling(c, e), i++) {
		char path[32];

		if (i == LG_POLICY_MAX_LIMITS)
			return lg_fail_at(c, lg_value_off(c, e), "\"limits\" holds more than %d rules",
					  LG_POLICY_MAX_LIMITS);
		snprintf(path, sizeof(path), "limits[%u]", i);
		e.prefix = path;
		if (parse_limit(c, e, path, &p->limits[i], &names[i]))
			return -EINVAL;
		for (uint32_t j = 0; j < i; j++) {
			char shown[72];
			if (strcmp(p->limits[j].name, p->limits[i].name) != 0)
				continue;
			return lg_fail_path(c, names[i], "repeats \"%s\" from \"limits[%u]\"; names must be "
					    "unique", lg_quote_text(shown, sizeof(shown), p->limits[i].name), j);
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
	size_t at = lg_value_off(c, obj);

	memset(in, 0, sizeof(*in));
	in->clock = LG_CLOCK_REALTIME;
	if (lg_members(c, obj, path, keys, NKEYS, f))
		return -EINVAL;
	if (!f[AT].json)
		return lg_fail_required(c, at, f[AT], "milliseconds after start");
	if (lg_get_int(c, f[AT], 0, MAX_EXACT, &in->at_ms))
		return -EINVAL;
	if (f[CLOCK].json) {
		const char *name = cJSON_IsString(f[CLOCK].json) ? f[CLOCK].json->valuestring : "";
		/* Stepping monotonic would break the one promise that clock makes; the guard
		 * exists to find code that trusts realtime where it should not. */
		if (strcmp(name, "monotonic") == 0)
			return lg_fail_path(c, f[CLOCK], "must be \"realtime\": only realtime can be stepped");
		if (strcmp(name, "realtime") != 0)
			return lg_fail_path(c, f[CLOCK], "must be \"realtime\"");
	}
	if (!f[STEP].json)
		return lg_fail_required(c, at, f[STEP], "a non-zero step in milliseconds");
	if (lg_get_int(c, f[STEP], -MAX_EXACT, MAX_EXACT, &in->step_ms))
		return -EINVAL;
	if (in->step_ms == 0)
		return lg_fail_path(c, f[STEP], "must be a non-zero integer");
	return 0;
}

static int parse_clock(const struct ctx *c, struct node obj, struct lg_policy *p)
{
	enum { ENABLED, JUMP, REALTIME, INJECT, NKEYS };
	static const char *const keys[NKEYS] = { "enabled", "jump_ms", "realtime", "inject" };
	struct node f[NKEYS];
	int realtime = (int)p->clock.realtime;
	uint32_t i = 0;

	if (lg_members(c, obj, "clock", keys, NKEYS, f) ||
	    lg_get_bool(c, f[ENABLED], &p->clock.enabled) ||
	    lg_get_u32(c, f[JUMP], 1, UINT32_MAX, &p->clock.jump_ms) ||
	    lg_get_enum(c, f[REALTIME], realtime_names, ARRAY_SIZE(realtime_names), &realtime))
		return -EINVAL;
	p->clock.realtime = (enum lg_clock_realtime)realtime;
	if (!f[INJECT].json)
		return 0;
	if (!cJSON_IsArray(f[INJECT].json))
		return lg_fail_path(c, f[INJECT], "must be an array of steps like {\"at_ms\": 1000, "
				    "\"clock\": \"realtime\", \"step_ms\": -2000}");
	for (struct node e = lg_first_child(f[INJECT]); e.json; e = lg_next_sibling(c, e), i++) {
		char path[32];

		if (i == LG_POLICY_MAX_INJECT)
			return lg_fail_at(c, lg_value_off(c, e), "\"clock.inject\" holds more than %d steps",
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

	if (lg_members(c, root, "", keys, NKEYS, f))
		return -EINVAL;
	if (f[VERSION].json &&
	    !(lg_exact_integer(f[VERSION].json) && f[VERSION].json->valuedouble == 1))
		return lg_fail_path(c, f[VERSION], "must be %d, the schema version this libguard reads",
				    LG_POLICY_VERSION);
	if (lg_get_enum(c, f[MODE], mode_names, ARRAY_SIZE(mode_names), &mode))
		return -EINVAL;
	p->mode = (enum lg_mode)mode;
	if (f[REPORT].json && parse_report(c, f[REPORT], p))
		return -EINVAL;
	if (f[STACKS].json && (lg_members(c, f[STACKS], "stacks", depth_keys, 1, sub) ||
			       lg_get_u32(c, sub[0], 1, 128, &p->stacks.max_depth)))
		return -EINVAL;
	if ((f[HEAP].json && parse_heap(c, f[HEAP], p)) || (f[FD].json && parse_fd(c, f[FD], p)) ||
	    (f[NET].json && parse_net(c, f[NET], p)) || parse_limits(c, f[LIMITS], p) ||
	    (f[CLOCK].json && parse_clock(c, f[CLOCK], p)))
		return -EINVAL;
	if (f[LOCKS].json && (lg_members(c, f[LOCKS], "locks", lock_keys, 2, sub) ||
			      lg_get_bool(c, sub[0], &p->locks.enabled) ||
			      lg_get_u32(c, sub[1], 1, UINT32_MAX, &p->locks.sample)))
		return -EINVAL;
	if (f[THREADS].json && (lg_members(c, f[THREADS], "threads", thread_keys, 2, sub) ||
				lg_get_bool(c, sub[0], &p->threads.enabled) ||
				lg_get_u32(c, sub[1], 0, UINT32_MAX, &p->threads.max)))
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
		return lg_fail_at(&c, 0, "no policy text");
	}
	if (len > POLICY_MAX_BYTES)
		return lg_fail_at(&c, 0, "the policy is larger than 1 MiB");
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		c.bom = sc.pos = 3;
	if (lg_scan_text(&sc)) {
		if (sc.nomem) {
			if (c.errlen)
				snprintf(err, errlen, "%s: out of memory", c.source);
			rc = -ENOMEM;
		} else {
			rc = lg_fail_at(&c, sc.err_off, "%s", sc.msg);
		}
		free(sc.spans);
		return rc;
	}
	c.spans = sc.spans;
	/* The scanner has accepted the text, so cJSON fails only when malloc does. */
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root) {
		rc = lg_fail_at(&c, end ? (size_t)(end - text) : 0, "the JSON parser failed here "
				"(out of memory?)");
	} else if (count_nodes(root) != sc.nspans) {
		rc = lg_fail_at(&c, 0, "internal error: cJSON and the position scanner disagree");
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
