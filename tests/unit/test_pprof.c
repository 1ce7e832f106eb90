/* The pprof writer (libguard/report/pprof.c): synthetic snapshots in, gunzip with zlib, then a
 * small profile.proto decoder checks what pprof would read. */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "report_helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- a synthetic snapshot ---- */

#define EXE "/opt/app/bin/app"
#define LIB "/usr/lib/x86_64-linux-gnu/libfoo.so.1"
#define EXE_BASE 0x555555400000u
#define LIB_BASE 0x7f0000000000u

static void snapshot_build(struct lg_snapshot *s)
{
	/* The leaf is in a library, so the exe's mapping is not the first one met. */
	static const struct frame_spec other[] = {
		{ NULL, LIB, LIB_BASE + 0x3456, 0x3456 },
		{ "serve", EXE, EXE_BASE + 0x1500, 0x1500 },
		{ "main", EXE, EXE_BASE + 0x1600, 0x1600 },
	};
	static const struct frame_spec leak[] = {
		{ "leak_here", EXE, EXE_BASE + 0x1234, 0x1234 },
		{ "serve", EXE, EXE_BASE + 0x1500, 0x1500 },
		{ "main", EXE, EXE_BASE + 0x1600, 0x1600 },
	};

	memset(s, 0, sizeof(*s));
	s->guard.exe = EXE;
	s->guard.pid = 42;
	s->guard.version = "0.1.0";
	s->guard.reason = "exit";
	s->guard.started_unix_ms = 1700000000000ull;
	s->guard.written_unix_ms = 1700000002500ull;
	add_stack(s, 3, other, 3);
	add_stack(s, 7, leak, 3);

	s->heap.present = true;
	s->heap.sample_bytes = 524288;
	s->heap.nlive = 2;
	s->heap.live = lg_snapshot_alloc(s, 2 * sizeof(*s->heap.live));
	s->heap.live[0] = (struct lg_snap_heap_site){ .stack = 7, .bytes = 1048576, .objects = 16 };
	s->heap.live[1] = (struct lg_snap_heap_site){ .stack = 3, .bytes = 4096, .objects = 1 };

	s->locks.present = true;
	s->locks.n = 1;
	s->locks.contended = lg_snapshot_alloc(s, sizeof(*s->locks.contended));
	s->locks.contended[0] = (struct lg_snap_lock_site){ .stack = 7, .count = 5, .wait_ns = 123456 };

	s->fd.present = true;   /* present without sites: a valid empty profile */
}

/* ---- gunzip ---- */

struct bytes { uint8_t *p; size_t n; };

static struct bytes write_and_gunzip(const struct lg_snapshot *s, enum lg_profile p)
{
	static struct lg_out out;
	int fd = report_memfd(&out, "pprof");
	size_t zlen;

	assert_int_equal(lg_write_pprof_profile(s, p, &out), 0);
	uint8_t *z = (uint8_t *)report_read_back(&out, fd, &zlen);
	assert_true(zlen > 18);
	assert_int_equal(z[0], 0x1f);   /* gzip magic, not a bare zlib stream */
	assert_int_equal(z[1], 0x8b);

	struct bytes raw = { malloc(1 << 20), 0 };
	z_stream zs = { 0 };
	assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_in = z;
	zs.avail_in = (uInt)zlen;
	zs.next_out = raw.p;
	zs.avail_out = 1 << 20;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	raw.n = zs.total_out;
	inflateEnd(&zs);
	free(z);
	return raw;
}

/* ---- a tiny profile.proto decoder ---- */

struct rd { const uint8_t *p, *end; };

static uint64_t rd_varint(struct rd *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		assert_true(r->p < r->end);
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	fail_msg("varint too long");
	return 0;
}

/* Next field: returns false at the end; a length-delimited field's bytes go to *sub. */
static bool rd_field(struct rd *r, unsigned *field, uint64_t *v, struct rd *sub)
{
	if (r->p >= r->end)
		return false;
	uint64_t key = rd_varint(r);
	*field = (unsigned)(key >> 3);
	switch (key & 7) {
	case 0:
		*v = rd_varint(r);
		break;
	case 2:
		*v = rd_varint(r);
		assert_true(*v <= (uint64_t)(r->end - r->p));
		sub->p = r->p;
		sub->end = r->p + *v;
		r->p += *v;
		break;
	default:
		fail_msg("unexpected wire type %u", (unsigned)(key & 7));
	}
	return true;
}

#define MAXN 64

struct profile {
	char *strings[MAXN];
	int nstrings;
	int64_t sample_type[4][2];
	int ntypes;
	struct { uint64_t loc[16]; int nloc; int64_t value[4]; int nvalue; } samples[MAXN];
	int nsamples;
	struct { uint64_t id, start, limit, offset; int64_t file; bool has_functions; } maps[MAXN];
	int nmaps;
	struct { uint64_t id, mapping, address, function; } locs[MAXN];
	int nlocs;
	struct { uint64_t id; int64_t name; } fns[MAXN];
	int nfns;
	int64_t default_type, period;
	int64_t period_type[2];
	uint64_t time_nanos, duration_nanos;
};

static void decode(struct bytes raw, struct profile *pr)
{
	struct rd r = { raw.p, raw.p + raw.n }, sub, sub2, sub3;
	unsigned f, g, h;
	uint64_t v, w, x;

	memset(pr, 0, sizeof(*pr));
	while (rd_field(&r, &f, &v, &sub)) {
		switch (f) {
		case 1:   /* sample_type */
			while (rd_field(&sub, &g, &w, &sub2))
				pr->sample_type[pr->ntypes][g - 1] = (int64_t)w;
			pr->ntypes++;
			break;
		case 2: { /* sample */
			assert_true(pr->nsamples < MAXN);
			typeof(pr->samples[0]) *smp = &pr->samples[pr->nsamples++];
			while (rd_field(&sub, &g, &w, &sub2)) {
				while (sub2.p < sub2.end) {   /* packed */
					if (g == 1)
						smp->loc[smp->nloc++] = rd_varint(&sub2);
					else if (g == 2)
						smp->value[smp->nvalue++] = (int64_t)rd_varint(&sub2);
				}
			}
			break;
		}
		case 3: {
			typeof(pr->maps[0]) *m = &pr->maps[pr->nmaps++];
			while (rd_field(&sub, &g, &w, &sub2)) {
				if (g == 1) m->id = w;
				if (g == 2) m->start = w;
				if (g == 3) m->limit = w;
				if (g == 4) m->offset = w;
				if (g == 5) m->file = (int64_t)w;
				if (g == 7) m->has_functions = w != 0;
			}
			break;
		}
		case 4: {
			typeof(pr->locs[0]) *l = &pr->locs[pr->nlocs++];
			while (rd_field(&sub, &g, &w, &sub2)) {
				if (g == 1) l->id = w;
				if (g == 2) l->mapping = w;
				if (g == 3) l->address = w;
				if (g == 4)
					while (rd_field(&sub2, &h, &x, &sub3))
						if (h == 1)
							l->function = x;
			}
			break;
		}
		case 5: {
			typeof(pr->fns[0]) *fn = &pr->fns[pr->nfns++];
			while (rd_field(&sub, &g, &w, &sub2)) {
				if (g == 1) fn->id = w;
				if (g == 2) fn->name = (int64_t)w;
			}
			break;
		}
		case 6:
			assert_true(pr->nstrings < MAXN);
			pr->strings[pr->nstrings] = strndup((const char *)sub.p, (size_t)v);
			pr->nstrings++;
			break;
		case 9: pr->time_nanos = v; break;
		case 10: pr->duration_nanos = v; break;
		case 11:
			while (rd_field(&sub, &g, &w, &sub2))
				pr->period_type[g - 1] = (int64_t)w;
			break;
		case 12: pr->period = (int64_t)v; break;
		case 14: pr->default_type = (int64_t)v; break;
		default: break;
		}
	}
}

static const char *str(const struct profile *pr, int64_t i)
{
	assert_true(i >= 0 && i < pr->nstrings);
	return pr->strings[i];
}

/* The function name of location id (NULL when it has no line). */
static const char *loc_fn(const struct profile *pr, uint64_t id)
{
	for (int i = 0; i < pr->nlocs; i++) {
		if (pr->locs[i].id != id)
			continue;
		if (!pr->locs[i].function)
			return NULL;
		for (int k = 0; k < pr->nfns; k++)
			if (pr->fns[k].id == pr->locs[i].function)
				return str(pr, pr->fns[k].name);
		fail_msg("location %llu names function %llu, which is missing", (unsigned long long)id,
			 (unsigned long long)pr->locs[i].function);
	}
	fail_msg("location %llu is missing", (unsigned long long)id);
	return NULL;
}

static const typeof(((struct profile *)0)->locs[0]) *loc(const struct profile *pr, uint64_t id)
{
	for (int i = 0; i < pr->nlocs; i++)
		if (pr->locs[i].id == id)
			return &pr->locs[i];
	fail_msg("location %llu is missing", (unsigned long long)id);
	return NULL;
}

static void profile_free(struct profile *pr)
{
	for (int i = 0; i < pr->nstrings; i++)
		free(pr->strings[i]);
}

/* ---- tests ---- */

static void test_pprof_heap_sample_types_and_values(void **state)
{
	struct lg_snapshot s;
	struct profile pr;

	(void)state;
	snapshot_build(&s);
	struct bytes raw = write_and_gunzip(&s, LG_PROFILE_HEAP);
	decode(raw, &pr);
	assert_true(pr.nstrings > 0);
	assert_string_equal(pr.strings[0], "");
	assert_int_equal(pr.ntypes, 2);
	assert_string_equal(str(&pr, pr.sample_type[0][0]), "inuse_objects");
	assert_string_equal(str(&pr, pr.sample_type[0][1]), "count");
	assert_string_equal(str(&pr, pr.sample_type[1][0]), "inuse_space");
	assert_string_equal(str(&pr, pr.sample_type[1][1]), "bytes");
	assert_string_equal(str(&pr, pr.default_type), "inuse_space");
	assert_string_equal(str(&pr, pr.period_type[0]), "space");
	assert_int_equal(pr.period, 524288);
	assert_int_equal(pr.time_nanos, 1700000002500ull * 1000000);
	assert_int_equal(pr.duration_nanos, 2500ull * 1000000);

	assert_int_equal(pr.nsamples, 2);
	assert_int_equal(pr.samples[0].nvalue, 2);
	assert_int_equal(pr.samples[0].value[0], 16);
	assert_int_equal(pr.samples[0].value[1], 1048576);
	assert_int_equal(pr.samples[1].value[0], 1);
	assert_int_equal(pr.samples[1].value[1], 4096);
	profile_free(&pr);
	free(raw.p);
}

static void test_pprof_locations_resolve_to_function_names(void **state)
{
	struct lg_snapshot s;
	struct profile pr;

	(void)state;
	snapshot_build(&s);
	struct bytes raw = write_and_gunzip(&s, LG_PROFILE_HEAP);
	decode(raw, &pr);
	/* Leaf first. */
	assert_int_equal(pr.samples[0].nloc, 3);
	assert_string_equal(loc_fn(&pr, pr.samples[0].loc[0]), "leak_here");
	assert_string_equal(loc_fn(&pr, pr.samples[0].loc[1]), "serve");
	assert_string_equal(loc_fn(&pr, pr.samples[0].loc[2]), "main");
	assert_int_equal(loc(&pr, pr.samples[0].loc[0])->address, EXE_BASE + 0x1234);
	/* The same address is one location, shared by both stacks. */
	assert_int_equal(pr.samples[0].loc[1], pr.samples[1].loc[1]);
	/* An unnamed frame has no line: pprof symbolizes it itself. */
	assert_null(loc_fn(&pr, pr.samples[1].loc[0]));
	assert_int_equal(pr.nlocs, 4);
	assert_int_equal(pr.nfns, 3);
	profile_free(&pr);
	free(raw.p);
}

static void test_pprof_mappings_from_modules(void **state)
{
	struct lg_snapshot s;
	struct profile pr;

	(void)state;
	snapshot_build(&s);
	struct bytes raw = write_and_gunzip(&s, LG_PROFILE_HEAP);
	decode(raw, &pr);
	assert_int_equal(pr.nmaps, 2);
	/* The executable is mapping 1 although a library frame came first. */
	assert_int_equal(pr.maps[0].id, 1);
	assert_string_equal(str(&pr, pr.maps[0].file), EXE);
	assert_int_equal(pr.maps[0].start, EXE_BASE);
	assert_true(pr.maps[0].limit > EXE_BASE + 0x1600);
	assert_int_equal(pr.maps[0].offset, 0);
	assert_true(pr.maps[0].has_functions);
	assert_string_equal(str(&pr, pr.maps[1].file), LIB);
	assert_int_equal(pr.maps[1].start, LIB_BASE);
	assert_false(pr.maps[1].has_functions);   /* its frame is unnamed */
	for (int i = 0; i < pr.nlocs; i++) {
		const typeof(pr.maps[0]) *m = &pr.maps[pr.locs[i].mapping - 1];
		assert_true(pr.locs[i].address >= m->start && pr.locs[i].address < m->limit);
	}
	profile_free(&pr);
	free(raw.p);
}

static void test_pprof_locks_are_contentions_and_delay(void **state)
{
	struct lg_snapshot s;
	struct profile pr;

	(void)state;
	snapshot_build(&s);
	struct bytes raw = write_and_gunzip(&s, LG_PROFILE_LOCKS);
	decode(raw, &pr);
	assert_int_equal(pr.ntypes, 2);
	assert_string_equal(str(&pr, pr.sample_type[0][0]), "contentions");
	assert_string_equal(str(&pr, pr.sample_type[0][1]), "count");
	assert_string_equal(str(&pr, pr.sample_type[1][0]), "delay");
	assert_string_equal(str(&pr, pr.sample_type[1][1]), "nanoseconds");
	assert_int_equal(pr.nsamples, 1);
	assert_int_equal(pr.samples[0].value[0], 5);
	assert_int_equal(pr.samples[0].value[1], 123456);
	assert_string_equal(loc_fn(&pr, pr.samples[0].loc[0]), "leak_here");
	profile_free(&pr);
	free(raw.p);
}

static void test_pprof_empty_profile_is_valid(void **state)
{
	struct lg_snapshot s;
	struct profile pr;

	(void)state;
	snapshot_build(&s);
	struct bytes raw = write_and_gunzip(&s, LG_PROFILE_FDS);
	decode(raw, &pr);
	assert_int_equal(pr.ntypes, 1);
	assert_string_equal(str(&pr, pr.sample_type[0][0]), "fds");
	assert_string_equal(str(&pr, pr.sample_type[0][1]), "count");
	assert_int_equal(pr.nsamples, 0);
	assert_int_equal(pr.nlocs, 0);
	assert_string_equal(pr.strings[0], "");
	profile_free(&pr);
	free(raw.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pprof_heap_sample_types_and_values),
		cmocka_unit_test(test_pprof_locations_resolve_to_function_names),
		cmocka_unit_test(test_pprof_mappings_from_modules),
		cmocka_unit_test(test_pprof_locks_are_contentions_and_delay),
		cmocka_unit_test(test_pprof_empty_profile_is_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
