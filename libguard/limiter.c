/* The rate limiter (issue 6): GCRA token buckets from the policy's "limits", asked by the accept and
 * connect hooks, and the public guard_limiter_* API.
 *
 * Matching: a call is limited by the FIRST rule, in policy order, whose call, port and addr match
 * it; later rules that would also match are not consulted and take no token. So a narrow rule
 * written before a broad one carves an exception out of it ("db" for 127.0.0.1:5432 at 50/s, then
 * "egress" for every other connect at 500/s), and one call never spends tokens of two buckets.
 *   - call "accept": port and addr are the listening socket's local ones (before accept(2) there
 *     is no peer yet). The hooks pass the port; the address costs a getsockname(2), made only
 *     when a rule that could match has an "addr". A listener bound to the wildcard address has
 *     local address 0.0.0.0 or ::, which only a rule covering it matches.
 *   - call "connect": port and addr are the destination's; only AF_INET and AF_INET6 destinations
 *     match (a Unix-socket connect has neither). Addresses are compared in IPv6 form, an IPv4
 *     address being ::ffff:a.b.c.d (RFC 4291 2.5.5.2), so a v4-mapped destination matches an IPv4
 *     rule, an IPv4 destination matches an IPv6 rule that covers ::ffff:0:0/96, and "::/0" matches
 *     every address.
 *
 * Decisions are one CAS on the rule's TAT (gcra.h) plus relaxed counter increments on the same
 * cache line; the time comes from lg_now_ns(), the real monotonic clock, so an injected or clamped
 * clock never changes a rate. Observe mode makes every decision and counts what would have been
 * limited, but always answers LG_PASS; a refused decision takes no token, so the bucket evolves as
 * it would in enforce mode with "shed" or "fail".
 */
#include "libguard/gcra.h"
#include "libguard/guard.h"
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define CACHE_LINE 64

/* One rule: its bucket and counters share a line (the CAS has just made it exclusive, so the
 * counter increments cost little); distinct rules never share one. */
struct rule {
	struct lg_gcra bucket;
	_Atomic uint64_t allowed;
	_Atomic uint64_t limited;
	_Atomic uint64_t waited_ns;
	enum lg_limit_call call;
	enum lg_on_limit on_limit;
	int port;                 /* 0 = any */
	bool any_addr;
	uint8_t prefix;           /* 0..128, over net in IPv6 form */
	uint8_t net[16];
} __attribute__((aligned(CACHE_LINE)));

static struct rule *rules;
static uint32_t nrules;
static void *rules_mem;

/* The rule a thread is sleeping on (index + 1), so that a blocking call that waits and asks again
 * is counted as limited once, not once per wake-up. */
static LG_TLS int waiting_on;

static void *alloc_aligned(size_t size, void **raw)
{
	*raw = lg_mem_calloc(1, size + CACHE_LINE - 1);
	if (!*raw)
		return NULL;
	return (void *)(((uintptr_t)*raw + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
}

/* ---- addresses ---- */

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void to_v6(const uint8_t v4[4], uint8_t out[16])
{
	memcpy(out, v4_mapped_prefix, 12);
	memcpy(out + 12, v4, 4);
}

static bool prefix_match(const uint8_t a[16], const uint8_t net[16], unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (a[whole] & mask) == (net[whole] & mask);
}

/* An inet address in IPv6 form, and its port; false for other families or a short sockaddr (for a
 * connect, the real call then fails with EINVAL or EAFNOSUPPORT by itself). */
static bool sockaddr_v6(const struct sockaddr *sa, uint32_t len, uint8_t a[16], int *port)
{
	if (!sa || len < sizeof(sa_family_t))
		return false;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof(sin));
		to_v6((const uint8_t *)&sin.sin_addr, a);
		*port = ntohs(sin.sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof(sin6));
		memcpy(a, &sin6.sin6_addr, 16);
		*port = ntohs(sin6.sin6_port);
		return true;
	}
	return false;
}

/* ---- matching and deciding ---- */

/* The listener's local address in IPv6 form; false if it has none we can match. */
static bool listener_addr(int lfd, uint8_t a[16])
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int port, saved = errno;
	bool ok = getsockname(lfd, (struct sockaddr *)&ss, &len) == 0 &&
		  sockaddr_v6((struct sockaddr *)&ss, len, a, &port);

	errno = saved;
	return ok;
}

static int match_accept(int lfd, int port)
{
	uint8_t a[16];
	int have_addr = -1;   /* -1: not asked yet */

	for (uint32_t i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];
		if (r->call != LG_LIMIT_ACCEPT || (r->port != 0 && r->port != port))
			continue;
		if (r->any_addr)
			return (int)i;
		if (have_addr < 0)
			have_addr = listener_addr(lfd, a);
		if (have_addr && prefix_match(a, r->net, r->prefix))
			return (int)i;
	}
	return -1;
}

static int match_connect(const uint8_t a[16], int port)
{
	for (uint32_t i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];
		if (r->call != LG_LIMIT_CONNECT || (r->port != 0 && r->port != port))
			continue;
		if (r->any_addr || prefix_match(a, r->net, r->prefix))
			return (int)i;
	}
	return -1;
}

/* One token from rule i. LG_PASS when taken (or in observe mode), else `refused` with *wait_ns. */
static enum lg_verdict decide(int i, enum lg_verdict refused, uint64_t *wait_ns)
{
	struct rule *r = &rules[i];
	uint64_t wait = lg_gcra_take(&r->bucket, 1, lg_now_ns());

	if (wait == 0) {
		atomic_fetch_add_explicit(&r->allowed, 1, memory_order_relaxed);
		if (waiting_on == i + 1)
			waiting_on = 0;
		return LG_PASS;
	}
	if (waiting_on != i + 1)
		atomic_fetch_add_explicit(&r->limited, 1, memory_order_relaxed);
	if (!lg_enforcing()) {
		waiting_on = 0;
		return LG_PASS;
	}
	if (refused == LG_WAIT)
		waiting_on = i + 1;
	if (wait_ns)
		*wait_ns = wait;
	return refused;
}

enum lg_verdict lg_limit_before_accept(int lfd, int port, uint64_t *wait_ns, int *rule)
{
	int i = match_accept(lfd, port);

	if (wait_ns)
		*wait_ns = 0;
	/* Only a "wait" rule is decided before accept(2); a "shed" one after it, about a real
	 * connection. Either way the first matching rule is the only one asked. */
	if (i < 0 || rules[i].on_limit != LG_ON_LIMIT_WAIT) {
		if (rule)
			*rule = -1;
		return LG_PASS;
	}
	if (rule)
		*rule = i;
	return decide(i, LG_WAIT, wait_ns);
}

enum lg_verdict lg_limit_after_accept(int lfd, int port, int *rule)
{
	int i = match_accept(lfd, port);

	if (i < 0 || rules[i].on_limit != LG_ON_LIMIT_SHED) {
		if (rule)
			*rule = -1;
		return LG_PASS;
	}
	if (rule)
		*rule = i;
	return decide(i, LG_SHED, NULL);
}

enum lg_verdict lg_limit_before_connect(const struct sockaddr *addr, uint32_t addrlen,
					uint64_t *wait_ns, int *rule)
{
	uint8_t a[16];
	int port, i = -1;

	if (wait_ns)
		*wait_ns = 0;
	if (nrules && sockaddr_v6(addr, addrlen, a, &port))
		i = match_connect(a, port);
	if (rule)
		*rule = i;
	if (i < 0)
		return LG_PASS;
	return decide(i, rules[i].on_limit == LG_ON_LIMIT_WAIT ? LG_WAIT : LG_FAIL, wait_ns);
}

void lg_limit_waited(int rule, uint64_t waited_ns)
{
	if (rule < 0 || (uint32_t)rule >= nrules)
		return;
	atomic_fetch_add_explicit(&rules[rule].waited_ns, waited_ns, memory_order_relaxed);
}

/* ---- the guard ---- */

static void limiter_init(void)
{
	uint32_t n = lg_policy.nlimits;
	struct rule *table;

	if (n == 0)
		return;
	table = alloc_aligned(sizeof(*table) * n, &rules_mem);
	if (!table) {
		lg_error("cannot allocate the limiter's %u rules; \"limits\" are not applied", n);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct lg_limit_rule *p = &lg_policy.limits[i];
		struct rule *r = &table[i];

		/* The parser checked rate > 0 and burst >= 1; a non-finite value can still come from
		 * JSON like 1e999. */
		if (lg_gcra_init(&r->bucket, p->rate, p->burst) != 0) {
			lg_error("limits[%u] (\"%s\"): rate and burst must be finite; the rule takes no "
				 "token and never limits", i, p->name);
			lg_gcra_init(&r->bucket, 1e9, 1e9);
		}
		r->call = p->call;
		r->on_limit = p->on_limit;
		r->port = p->port;
		r->any_addr = p->addr.family == 0;
		if (p->addr.family == AF_INET) {
			to_v6(p->addr.addr, r->net);
			r->prefix = (uint8_t)(96 + p->addr.prefix);
		} else if (p->addr.family == AF_INET6) {
			memcpy(r->net, p->addr.addr, 16);
			r->prefix = p->addr.prefix;
		}
	}
	rules = table;
	nrules = n;
}

/* A forked child counts its own calls; it keeps the buckets as they were (a bucket is per
 * process, so each child of a prefork server gets the whole rate). */
static void limiter_atfork_child(void)
{
	waiting_on = 0;
	for (uint32_t i = 0; i < nrules; i++) {
		atomic_store_explicit(&rules[i].allowed, 0, memory_order_relaxed);
		atomic_store_explicit(&rules[i].limited, 0, memory_order_relaxed);
		atomic_store_explicit(&rules[i].waited_ns, 0, memory_order_relaxed);
	}
}

static int limiter_snapshot(struct lg_snapshot *s)
{
	struct lg_snap_limit *items;

	if (nrules == 0)
		return 0;
	items = lg_snapshot_alloc(s, sizeof(*items) * nrules);
	if (!items)
		return -ENOMEM;
	for (uint32_t i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];
		size_t len = strlen(lg_policy.limits[i].name) + 1;
		char *name = lg_snapshot_alloc(s, len);

		if (name)
			memcpy(name, lg_policy.limits[i].name, len);
		items[i].name = name;
		items[i].call = r->call == LG_LIMIT_ACCEPT ? "accept" : "connect";
		items[i].allowed = atomic_load_explicit(&r->allowed, memory_order_relaxed);
		items[i].limited = atomic_load_explicit(&r->limited, memory_order_relaxed);
		items[i].waited_ms = atomic_load_explicit(&r->waited_ns, memory_order_relaxed) / 1000000;
	}
	s->limits.items = items;
	s->limits.n = nrules;
	s->limits.present = true;
	return 0;
}

LG_GUARD(limiter, .order = 50, .init = limiter_init, .atfork_child = limiter_atfork_child,
	 .snapshot = limiter_snapshot);

/* ---- the public API: a plain object, usable whether or not the runtime is started ---- */

struct guard_limiter {
	struct lg_gcra bucket;
	void *raw;
} __attribute__((aligned(CACHE_LINE)));

LG_EXPORT guard_limiter *guard_limiter_new(double rate_per_s, double burst)
{
	struct lg_gcra bucket;
	void *raw;

	if (lg_gcra_init(&bucket, rate_per_s, burst) != 0) {
		errno = EINVAL;
		return NULL;
	}
	guard_limiter *l = alloc_aligned(sizeof(*l), &raw);
	if (!l) {
		errno = ENOMEM;
		return NULL;
	}
	lg_gcra_init(&l->bucket, rate_per_s, burst);
	l->raw = raw;
	return l;
}

LG_EXPORT int64_t guard_limiter_take(guard_limiter *l, uint32_t n)
{
	if (LG_UNLIKELY(!l))
		return INT64_MAX;
	uint64_t wait = lg_gcra_take(&l->bucket, n, lg_now_ns());
	/* A real wait is at most limit + n*T <= 2^63: it fits; NEVER becomes INT64_MAX. */
	return wait > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)wait;
}

LG_EXPORT void guard_limiter_free(guard_limiter *l)
{
	if (l)
		lg_mem_free(l->raw);
}
