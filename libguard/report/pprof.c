/* pprof profiles: NAME.<profile>.pb.gz, a gzip-compressed perftools.profiles.Profile message
 * (github.com/google/pprof proto/profile.proto), the format `go tool pprof`, Pyroscope, Parca
 * and Grafana read.
 *
 *   heap     inuse_objects/count, inuse_space/bytes (default), period sample_bytes space/bytes
 *   locks    contentions/count, delay/nanoseconds (default)
 *   fds      fds/count; clock realtime_calls/count; threads unjoined_threads/count
 *
 * Mappings come from the modules in the stacks: memory_start is the load base (frame address
 * minus its module offset), memory_limit one past the highest address seen, file_offset 0 (the
 * base maps the start of the file, so pprof's GetBase gives the same base back), filename the
 * module path. A location is one frame address; it gets a line naming its function when the
 * symbolizer knew it. A mapping says has_functions only when every one of its locations is named:
 * otherwise `go tool pprof` symbolizes that mapping itself against the binary at the same path.
 *
 * The encoder is hand-written (varints and length-delimited submessages, about 150 lines) rather
 * than generated with protobuf-c, because this code runs inside the host: protobuf-c would add a
 * shared-library dependency to every guarded process (and a symbol clash risk with a host that
 * links its own copy), and would build the whole message tree out of pointers before packing it,
 * while this packs the message straight into one buffer from the guard's own memory. zlib does
 * the gzip framing (deflateInit2 with windowBits 15 + 16), allocating through lg_mem as well.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

/* ---- a growable byte buffer and protobuf primitives ---- */

struct pb {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

static void pb_reserve(struct pb *b, size_t more)
{
	if (b->err || b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *grown = lg_mem_realloc(b->buf, cap);
	if (!grown) {
		b->err = -ENOMEM;
		return;
	}
	b->buf = grown;
	b->cap = cap;
}

static void pb_raw(struct pb *b, const void *data, size_t n)
{
	pb_reserve(b, n);
	if (b->err)
		return;
	memcpy(b->buf + b->len, data, n);
	b->len += n;
}

static void pb_varint(struct pb *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;

	do {
		tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	pb_raw(b, tmp, n);
}

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

static void pb_tag(struct pb *b, unsigned field, unsigned wire)
{
	pb_varint(b, (uint64_t)field << 3 | wire);
}

/* proto3: a zero scalar is the default and is left out. */
static void pb_uint(struct pb *b, unsigned field, uint64_t v)
{
	if (v == 0)
		return;
	pb_tag(b, field, WIRE_VARINT);
	pb_varint(b, v);
}

static void pb_bytes(struct pb *b, unsigned field, const void *data, size_t n)
{
	pb_tag(b, field, WIRE_LEN);
	pb_varint(b, n);
	pb_raw(b, data, n);
}

/* A submessage built in `sub`, appended to `b`; sub is emptied for reuse. */
static void pb_message(struct pb *b, unsigned field, struct pb *sub)
{
	if (sub->err && !b->err)
		b->err = sub->err;
	pb_bytes(b, field, sub->buf, sub->len);
	sub->len = 0;
}

/* ---- interning: strings, mappings, functions, locations ---- */

struct mapping {
	int64_t path;          /* string index */
	uintptr_t base, hi;
	bool all_named;
};

struct location {
	uintptr_t addr;
	uint32_t mapping;      /* 1-based id, 0 = none */
	uint32_t function;     /* 1-based id, 0 = unnamed */
};

struct tables {
	struct pb chars;       /* string bytes, NUL-terminated, at offsets */
	uint32_t *str_off;
	size_t nstr;
	uint32_t *str_hash;    /* 1-based string index, 0 = empty slot */
	struct mapping *maps;
	size_t nmaps, mapcap;
	int64_t *fn_name;      /* function i+1's name string */
	size_t nfn;
	uint32_t *fn_hash;     /* 1-based function id by name */
	struct location *locs;
	size_t nloc;
	uint32_t *loc_hash;    /* 1-based location id by address */
	size_t mask;           /* hash tables have mask + 1 slots */
	size_t cap;            /* capacity of str_off / fn_name / locs */
	int err;
};

static uint64_t hash_bytes(const char *s)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static uint64_t hash_u64(uint64_t v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return v;
}

static const char *str_at(const struct tables *t, size_t i)
{
	return (const char *)t->chars.buf + t->str_off[i];
}

static int64_t intern_str(struct tables *t, const char *s)
{
	size_t slot = hash_bytes(s) & t->mask;

	if (t->err)
		return 0;
	for (; t->str_hash[slot]; slot = (slot + 1) & t->mask) {
		if (strcmp(str_at(t, t->str_hash[slot] - 1), s) == 0)
			return t->str_hash[slot] - 1;
	}
	if (t->nstr == t->cap) {
		t->err = -ENOSPC;   /* cannot happen: cap counts every string a profile can need */
		return 0;
	}
	t->str_off[t->nstr] = (uint32_t)t->chars.len;
	pb_raw(&t->chars, s, strlen(s) + 1);
	if (t->chars.err) {
		t->err = t->chars.err;
		return 0;
	}
	t->str_hash[slot] = (uint32_t)++t->nstr;
	return (int64_t)t->nstr - 1;
}

static uint32_t intern_function(struct tables *t, const char *name)
{
	int64_t si = intern_str(t, name);
	size_t slot = hash_u64((uint64_t)si) & t->mask;

	if (t->err)
		return 0;
	for (; t->fn_hash[slot]; slot = (slot + 1) & t->mask) {
		if (t->fn_name[t->fn_hash[slot] - 1] == si)
			return t->fn_hash[slot];
	}
	t->fn_name[t->nfn] = si;
	t->fn_hash[slot] = (uint32_t)++t->nfn;
	return (uint32_t)t->nfn;
}

static uint32_t intern_mapping(struct tables *t, const struct lg_snap_frame *fr, bool named)
{
	if (!fr->module || !fr->module[0] || fr->addr < fr->offset)
		return 0;
	uintptr_t base = fr->addr - fr->offset;
	int64_t path = intern_str(t, fr->module);
	size_t i;

	for (i = 0; i < t->nmaps; i++) {
		if (t->maps[i].base == base && t->maps[i].path == path)
			break;
	}
	if (i == t->nmaps) {
		if (t->nmaps == t->mapcap) {
			size_t cap = t->mapcap ? t->mapcap * 2 : 8;
			struct mapping *grown = lg_mem_realloc(t->maps, cap * sizeof(*grown));
			if (!grown) {
				t->err = -ENOMEM;
				return 0;
			}
			t->maps = grown;
			t->mapcap = cap;
		}
		t->maps[t->nmaps++] = (struct mapping){ .path = path, .base = base, .hi = fr->addr,
							.all_named = true };
	}
	if (fr->addr > t->maps[i].hi)
		t->maps[i].hi = fr->addr;
	if (!named)
		t->maps[i].all_named = false;
	return (uint32_t)i + 1;
}

static uint32_t intern_location(struct tables *t, const struct lg_snap_frame *fr)
{
	size_t slot = hash_u64(fr->addr) & t->mask;

	for (; t->loc_hash[slot]; slot = (slot + 1) & t->mask) {
		if (t->locs[t->loc_hash[slot] - 1].addr == fr->addr)
			return t->loc_hash[slot];
	}
	bool named = fr->fn && fr->fn[0];
	struct location *l = &t->locs[t->nloc];
	l->addr = fr->addr;
	l->function = named ? intern_function(t, fr->fn) : 0;
	l->mapping = intern_mapping(t, fr, named);
	if (t->err)
		return 0;
	t->loc_hash[slot] = (uint32_t)++t->nloc;
	return (uint32_t)t->nloc;
}

static void tables_free(struct tables *t)
{
	lg_mem_free(t->chars.buf);
	lg_mem_free(t->str_off);
	lg_mem_free(t->str_hash);
	lg_mem_free(t->maps);
	lg_mem_free(t->fn_name);
	lg_mem_free(t->fn_hash);
	lg_mem_free(t->locs);
	lg_mem_free(t->loc_hash);
}

/* Every string, function and location the profile can need is bounded by its frame count. */
static int tables_init(struct tables *t, const struct lg_snapshot *s, enum lg_profile p)
{
	size_t frames = 0, n = lg_profile_nsamples(s, p);

	for (size_t i = 0; i < n; i++) {
		uint32_t id;
		uint64_t v[2];
		lg_profile_sample(s, p, i, &id, v);
		const struct lg_snap_stack *st = id ? lg_snapshot_stack(s, id) : NULL;
		frames += st ? st->nframes : 0;
	}
	memset(t, 0, sizeof(*t));
	t->cap = 2 * frames + 16;   /* a frame: at most a function name and a module path */
	size_t slots = 16;
	while (slots < 2 * t->cap)
		slots *= 2;
	t->mask = slots - 1;
	t->str_off = lg_mem_alloc(t->cap * sizeof(*t->str_off));
	t->fn_name = lg_mem_alloc(t->cap * sizeof(*t->fn_name));
	t->locs = lg_mem_alloc(t->cap * sizeof(*t->locs));
	t->str_hash = lg_mem_calloc(slots, sizeof(*t->str_hash));
	t->fn_hash = lg_mem_calloc(slots, sizeof(*t->fn_hash));
	t->loc_hash = lg_mem_calloc(slots, sizeof(*t->loc_hash));
	if (!t->str_off || !t->fn_name || !t->locs || !t->str_hash || !t->fn_hash || !t->loc_hash)
		return -ENOMEM;
	intern_str(t, "");   /* string_table[0] must be "" */
	return t->err;
}

/* ---- the Profile message ---- */

/* Profile field numbers (profile.proto). */
enum {
	PROFILE_SAMPLE_TYPE = 1, PROFILE_SAMPLE = 2, PROFILE_MAPPING = 3, PROFILE_LOCATION = 4,
	PROFILE_FUNCTION = 5, PROFILE_STRING_TABLE = 6, PROFILE_TIME_NANOS = 9,
	PROFILE_DURATION_NANOS = 10, PROFILE_PERIOD_TYPE = 11, PROFILE_PERIOD = 12,
	PROFILE_COMMENT = 13, PROFILE_DEFAULT_SAMPLE_TYPE = 14,
};

static void value_type(struct pb *b, struct pb *sub, unsigned field, int64_t type, int64_t unit)
{
	pb_uint(sub, 1, (uint64_t)type);
	pb_uint(sub, 2, (uint64_t)unit);
	pb_message(b, field, sub);
}

/* pprof order of values: the count first, the main value last (as Go's own heap and mutex
 * profiles), so the main one is also what pprof shows by default. */
static unsigned pprof_index(const struct lg_profile_info *info, unsigned k)
{
	return info->nvalues == 2 ? 1 - k : k;
}

static int encode_profile(const struct lg_snapshot *s, enum lg_profile p, struct tables *t,
			  struct pb *b)
{
	const struct lg_profile_info *info = &lg_profiles[p];
	size_t n = lg_profile_nsamples(s, p);
	struct pb sub = { 0 }, packed = { 0 };
	int64_t type[2], unit[2];
	char comment[600];

	for (unsigned k = 0; k < info->nvalues; k++) {
		type[k] = intern_str(t, info->type[k]);
		unit[k] = intern_str(t, info->unit[k]);
	}
	for (unsigned k = 0; k < info->nvalues; k++) {
		unsigned j = pprof_index(info, k);
		value_type(b, &sub, PROFILE_SAMPLE_TYPE, type[j], unit[j]);
	}

	/* pprof takes mapping 1 as the main binary: intern the executable's mapping first. */
	for (size_t i = 0; i < n && s->guard.exe && !t->nmaps; i++) {
		uint32_t id;
		uint64_t v[2];
		lg_profile_sample(s, p, i, &id, v);
		const struct lg_snap_stack *st = id ? lg_snapshot_stack(s, id) : NULL;
		for (uint32_t k = 0; st && k < st->nframes; k++) {
			if (st->frames[k].module && strcmp(st->frames[k].module, s->guard.exe) == 0) {
				intern_mapping(t, &st->frames[k], true);
				break;
			}
		}
	}

	/* Samples: location ids leaf first, which is the snapshot's order. */
	for (size_t i = 0; i < n && !t->err; i++) {
		uint32_t id;
		uint64_t v[2];
		lg_profile_sample(s, p, i, &id, v);
		const struct lg_snap_stack *st = id ? lg_snapshot_stack(s, id) : NULL;
		for (uint32_t k = 0; st && k < st->nframes; k++)
			pb_varint(&packed, intern_location(t, &st->frames[k]));
		if (packed.len)
			pb_bytes(&sub, 1, packed.buf, packed.len);
		packed.len = 0;
		for (unsigned k = 0; k < info->nvalues; k++)
			pb_varint(&packed, v[pprof_index(info, k)]);   /* int64, never negative */
		pb_bytes(&sub, 2, packed.buf, packed.len);
		packed.len = 0;
		pb_message(b, PROFILE_SAMPLE, &sub);
	}

	for (size_t i = 0; i < t->nmaps; i++) {
		const struct mapping *m = &t->maps[i];
		pb_uint(&sub, 1, i + 1);
		pb_uint(&sub, 2, m->base);
		pb_uint(&sub, 3, m->hi + 1);
		/* file_offset 0: base is where the start of the file is mapped. */
		pb_uint(&sub, 5, (uint64_t)m->path);
		pb_uint(&sub, 7, m->all_named);
		pb_message(b, PROFILE_MAPPING, &sub);
	}
	for (size_t i = 0; i < t->nloc; i++) {
		const struct location *l = &t->locs[i];
		pb_uint(&sub, 1, i + 1);
		pb_uint(&sub, 2, l->mapping);
		pb_uint(&sub, 3, l->addr);
		if (l->function) {
			pb_uint(&packed, 1, l->function);   /* Line.function_id; line unknown */
			pb_message(&sub, 4, &packed);
		}
		pb_message(b, PROFILE_LOCATION, &sub);
	}
	for (size_t i = 0; i < t->nfn; i++) {
		pb_uint(&sub, 1, i + 1);
		pb_uint(&sub, 2, (uint64_t)t->fn_name[i]);
		pb_uint(&sub, 3, (uint64_t)t->fn_name[i]);   /* system_name: the symbol as found */
		pb_message(b, PROFILE_FUNCTION, &sub);
	}

	snprintf(comment, sizeof(comment), "libguard %s pid %d %s reason %s",
		 s->guard.version ? s->guard.version : "?", (int)s->guard.pid,
		 s->guard.exe ? s->guard.exe : "?", s->guard.reason ? s->guard.reason : "?");
	int64_t comment_idx = intern_str(t, comment);
	int64_t space = intern_str(t, "space");
	/* The string table is complete only now: every string is interned above this line. */
	for (size_t i = 0; i < t->nstr; i++)
		pb_bytes(b, PROFILE_STRING_TABLE, str_at(t, i), strlen(str_at(t, i)));

	pb_uint(b, PROFILE_TIME_NANOS, s->guard.written_unix_ms * 1000000ull);
	if (s->guard.written_unix_ms > s->guard.started_unix_ms)
		pb_uint(b, PROFILE_DURATION_NANOS,
			(s->guard.written_unix_ms - s->guard.started_unix_ms) * 1000000ull);
	if (p == LG_PROFILE_HEAP) {
		/* Go's heap profiles say the same: one sample per sample_bytes of allocation. */
		value_type(b, &sub, PROFILE_PERIOD_TYPE, space, unit[0]);
		pb_uint(b, PROFILE_PERIOD, s->heap.sample_bytes);
	} else {
		value_type(b, &sub, PROFILE_PERIOD_TYPE, type[0], unit[0]);
		pb_uint(b, PROFILE_PERIOD, 1);
	}
	pb_tag(b, PROFILE_COMMENT, WIRE_VARINT);
	pb_varint(b, (uint64_t)comment_idx);
	pb_uint(b, PROFILE_DEFAULT_SAMPLE_TYPE, (uint64_t)type[0]);

	int err = t->err ? t->err : sub.err ? sub.err : packed.err ? packed.err : b->err;
	lg_mem_free(sub.buf);
	lg_mem_free(packed.buf);
	return err;
}

/* ---- gzip ---- */

/* zlib's own allocations come from the guard's memory, not the host's heap. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
	(void)opaque;
	return lg_mem_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf address)
{
	(void)opaque;
	lg_mem_free(address);
}

static int gzip_out(const uint8_t *data, size_t len, struct lg_out *o)
{
	z_stream z = { .zalloc = z_alloc, .zfree = z_free };
	uint8_t chunk[8192];
	int zrc;

	/* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		zrc = deflate(&z, Z_FINISH);
		lg_out_write(o, chunk, sizeof(chunk) - z.avail_out);
	} while (zrc == Z_OK || (zrc == Z_BUF_ERROR && z.avail_out == 0));
	deflateEnd(&z);
	if (zrc != Z_STREAM_END)
		return o->err ? o->err : -EIO;
	return o->err;
}

int lg_write_pprof_profile(const struct lg_snapshot *s, enum lg_profile p, struct lg_out *o)
{
	struct tables t;
	struct pb b = { 0 };

	int rc = tables_init(&t, s, p);
	if (rc == 0)
		rc = encode_profile(s, p, &t, &b);
	if (rc == 0 && b.len > UINT32_MAX)
		rc = -EFBIG;
	if (rc == 0)
		rc = gzip_out(b.buf, b.len, o);
	lg_mem_free(b.buf);
	tables_free(&t);
	return rc;
}

static int pprof_contents(const struct lg_snapshot *s, int profile, struct lg_out *o)
{
	return lg_write_pprof_profile(s, (enum lg_profile)profile, o);
}

static int write_pprof_files(const struct lg_snapshot *s, const char *base)
{
	return lg_report_write_profiles(s, base, ".pb.gz", pprof_contents);
}
LG_REPORT_FORMAT(pprof, LG_FORMAT_PPROF, write_pprof_files);
