/* guard-report --diff OLD NEW: what grew between two reports, per site.
 *
 * Stack ids are per process, so a site is matched across reports by its frames' names, root
 * first (the folded-stack line): a function name, or module+offset, both stable across runs of
 * the same binaries (offsets do not move with ASLR). Sites are printed by growth, largest first;
 * a site only in NEW grew from 0, one only in OLD shrank to 0.
 */
#include "tools/report_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP 10

struct site {
	char *key;                     /* folded stack */
	double old, new;
	const struct rp_report *from;  /* the report the description comes from (NEW if present) */
	const cJSON *stack;
};

struct sites {
	struct site *v;
	size_t n, cap;
};

static char *stack_key(const struct rp_report *r, const cJSON *stack_id)
{
	const cJSON *frames = rp_frames(r, stack_id);
	size_t cap = 256, len = 0;
	char *key = malloc(cap), name[1024];

	if (!key)
		return NULL;
	key[0] = '\0';
	for (int k = cJSON_GetArraySize(frames) - 1; k >= 0; k--) {
		rp_frame_name(cJSON_GetArrayItem(frames, k), name, sizeof(name));
		size_t n = strlen(name);
		if (len + n + 2 > cap) {
			while (len + n + 2 > cap)
				cap *= 2;
			char *grown = realloc(key, cap);
			if (!grown) {
				free(key);
				return NULL;
			}
			key = grown;
		}
		if (len)
			key[len++] = ';';
		memcpy(key + len, name, n + 1);
		len += n;
	}
	if (!frames)
		snprintf(key, cap, "[unknown]");
	return key;
}

static int add(struct sites *s, const struct rp_report *r, const cJSON *site, const char *value,
	       bool is_new)
{
	const cJSON *stack = cJSON_GetObjectItemCaseSensitive(site, "stack");
	char *key = stack_key(r, stack);

	if (!key)
		return -1;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i].key, key) != 0)
			continue;
		free(key);
		*(is_new ? &s->v[i].new : &s->v[i].old) += rp_num(site, value);
		if (is_new) {
			s->v[i].from = r;
			s->v[i].stack = stack;
		}
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct site *grown = realloc(s->v, cap * sizeof(*grown));
		if (!grown) {
			free(key);
			return -1;
		}
		s->v = grown;
		s->cap = cap;
	}
	s->v[s->n++] = (struct site){ .key = key, .from = r, .stack = stack };
	*(is_new ? &s->v[s->n - 1].new : &s->v[s->n - 1].old) = rp_num(site, value);
	return 0;
}

static int by_growth(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	double dx = x->new - x->old, dy = y->new - y->old;
	return dx < dy ? 1 : dx > dy ? -1 : strcmp(x->key, y->key);
}

static void diff_profile(const struct rp_report *old, const struct rp_report *new,
			 const struct rp_profile *p)
{
	const cJSON *olds = rp_profile_sites(old, p), *news = rp_profile_sites(new, p), *it;
	struct sites s = { 0 };
	double to = 0, tn = 0;
	char a[64], b[64], d[64], where[1024];

	if (!olds && !news)
		return;
	cJSON_ArrayForEach(it, olds) add(&s, old, it, p->value, false);
	cJSON_ArrayForEach(it, news) add(&s, new, it, p->value, true);
	for (size_t i = 0; i < s.n; i++) {
		to += s.v[i].old;
		tn += s.v[i].new;
	}
	qsort(s.v, s.n, sizeof(*s.v), by_growth);
	rp_human(to, p->unit, a, sizeof(a));
	rp_human(tn, p->unit, b, sizeof(b));
	rp_human(tn - to, p->unit, d, sizeof(d));
	printf("%s (%s): %s -> %s (%s%s)\n", p->name, p->value, a, b, tn >= to ? "+" : "", d);
	size_t grew = 0, shrank = 0;
	for (size_t i = 0; i < s.n; i++) {
		double delta = s.v[i].new - s.v[i].old;
		if (delta > 0 && grew++ < TOP) {
			rp_human(delta, p->unit, d, sizeof(d));
			rp_human(s.v[i].old, p->unit, a, sizeof(a));
			rp_human(s.v[i].new, p->unit, b, sizeof(b));
			rp_describe_stack(s.v[i].from, s.v[i].stack, where, sizeof(where));
			printf("  +%-12s %12s -> %-12s %s%s\n", d, a, b, where,
			       s.v[i].old == 0 ? "  [new site]" : "");
		} else if (delta < 0) {
			shrank++;
		}
	}
	if (grew > TOP)
		printf("  ... %zu more site%s grew\n", grew - TOP, grew - TOP == 1 ? "" : "s");
	if (grew == 0)
		printf("  no site grew\n");
	if (shrank)
		printf("  %zu site%s shrank\n", shrank, shrank == 1 ? "" : "s");
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i].key);
	free(s.v);
}

static double total_violations(const struct rp_report *r)
{
	const cJSON *v;
	double n = 0;

	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(r->root, "violations"))
		n += rp_num(v, "count");
	return n;
}

static void scalar(const char *what, const cJSON *o, const cJSON *n, const char *key,
		   const char *unit)
{
	char a[64], b[64], d[64];

	if (!o && !n)
		return;
	double x = rp_num(o, key), y = rp_num(n, key);
	rp_human(x, unit, a, sizeof(a));
	rp_human(y, unit, b, sizeof(b));
	rp_human(y - x, unit, d, sizeof(d));
	printf("  %-22s %14s -> %-14s %s%s\n", what, a, b, y >= x ? "+" : "", d);
}

int rp_diff(const struct rp_report *old, const struct rp_report *new, const char *profile)
{
	const cJSON *o = old->root, *n = new->root;
	const char *sec;

	printf("libguard report diff: %s -> %s\n", old->path, new->path);
#define SEC(obj, name) cJSON_GetObjectItemCaseSensitive(obj, name)
	sec = "heap";
	scalar("heap allocated", SEC(o, sec), SEC(n, sec), "allocated_bytes", "bytes");
	sec = "fd";
	scalar("fds open", SEC(o, sec), SEC(n, sec), "open", "fds");
	sec = "threads";
	scalar("threads live", SEC(o, sec), SEC(n, sec), "live", "threads");
#undef SEC
	printf("  %-22s %14.0f -> %-14.0f %s%.0f\n", "violations", total_violations(old),
	       total_violations(new), total_violations(new) >= total_violations(old) ? "+" : "",
	       total_violations(new) - total_violations(old));
	for (size_t i = 0; i < rp_nprofiles; i++) {
		if (profile && strcmp(profile, rp_profiles[i].name) != 0)
			continue;
		diff_profile(old, new, &rp_profiles[i]);
	}
	return 0;
}
