/* What the heap guard needs to know of jemalloc beyond its API: the size classes (what a sampled
 * block's header costs in rounding), and the size of the thread caches that dense sampling
 * makes (jemalloc metadata that no figure of its counts as the guard's).
 */
#include "libguard/internal.h"

#include <jemalloc/jemalloc.h>

/* ---------------------------------------------------------------------------------------------
 * Size classes
 * ------------------------------------------------------------------------------------------- */

/* jemalloc's size classes with its default 16-byte quantum: 8, multiples of 16 up to 128, then
 * four classes per doubling (small and large alike). Checked against nallocx at the first sampled
 * event (a few thousand calls, not paid at start-up); if this jemalloc was built otherwise,
 * nallocx is asked each time (two calls per sampled event). */
static _Atomic int classes_known;   /* 0: not checked yet, 1: they match, 2: they differ */

static size_t size_class(size_t n)
{
	if (n <= 8)
		return 8;
	if (n <= 128)
		return (n + 15) & ~(size_t)15;
	unsigned lg = 63u - (unsigned)__builtin_clzl(n - 1);   /* 2^lg < n <= 2^(lg + 1) */
	size_t delta = (size_t)1 << (lg - 2);
	return (n + delta - 1) & ~(delta - 1);
}

static bool size_classes_match(void)
{
	for (size_t n = 1; n <= 70000; n += n < 4200 ? 1 : 97)
		if (size_class(n) != nallocx(n, 0))
			return false;
	for (unsigned lg = 17; lg < 40; lg++)
		for (size_t n = ((size_t)1 << lg) - 1; n <= ((size_t)1 << lg) + 1; n++)
			if (size_class(n) != nallocx(n, 0))
				return false;
	return true;
}

int64_t lg_heap_block_overhead(uint64_t size, unsigned off_log2)
{
	size_t off = (size_t)1 << off_log2;

	if (size == 0)
		size = 1;
	int known = atomic_load_explicit(&classes_known, memory_order_relaxed);
	if (LG_UNLIKELY(known == 0)) {
		known = size_classes_match() ? 1 : 2;
		atomic_store_explicit(&classes_known, known, memory_order_relaxed);
	}
	/* A 16-byte header: malloc's alignment, whose classes are the table above. */
	if (LG_LIKELY(off_log2 == 4 && known == 1 && size < ((size_t)1 << 40)))
		return (int64_t)(size_class(size + off) - size_class(size));
	int align = off_log2 > 4 ? MALLOCX_LG_ALIGN(off_log2) : 0;
	return (int64_t)(nallocx(size + off, align) - nallocx(size, align));
}

/* ---------------------------------------------------------------------------------------------
 * Thread caches
 * ------------------------------------------------------------------------------------------- */

/* The thread caches of dense sampling are jemalloc metadata of ~28 KiB each (their bins'
 * stacks, in arena 0), in no arena's allocated bytes: self_bytes counts them, at the size the
 * first few creations measured (the smallest growth of arena 0's internal bytes across one; a
 * thread that starts meanwhile can only make it larger). */
#define TCACHE_MEASURES 8
static _Atomic int64_t tcache_each, tcaches_live;
static _Atomic int tcache_measured;

/* Arena 0's internal bytes now, or -1 once measuring is done (or impossible). */
static int64_t tcache_measure(void)
{
	if (atomic_load_explicit(&tcache_measured, memory_order_relaxed) >= TCACHE_MEASURES)
		return -1;
	uint64_t epoch = 1;
	size_t v = 0, sz = sizeof(epoch);
	if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0)
		return -1;
	sz = sizeof(v);
	return mallctl("stats.arenas.0.internal", &v, &sz, NULL, 0) == 0 ? (int64_t)v : -1;
}

int lg_heap_tcache_create(void)
{
	unsigned tc;
	size_t sz = sizeof(tc);
	int64_t before = tcache_measure();

	if (mallctl("tcache.create", &tc, &sz, NULL, 0) != 0)
		return 0;
	atomic_fetch_add_explicit(&tcaches_live, 1, memory_order_relaxed);
	if (before >= 0) {
		int64_t after = tcache_measure(), grew = after - before;
		atomic_fetch_add_explicit(&tcache_measured, 1, memory_order_relaxed);
		int64_t cur = atomic_load_explicit(&tcache_each, memory_order_relaxed);
		while (after >= 0 && grew > 0 && (cur == 0 || grew < cur) &&
		       !atomic_compare_exchange_weak(&tcache_each, &cur, grew))
			;
	}
	return (int)tc + 1;
}

void lg_heap_tcache_destroy(int tcache)
{
	if (!tcache)
		return;
	unsigned tc = (unsigned)tcache - 1;
	mallctl("tcache.destroy", NULL, NULL, &tc, sizeof(tc));
	atomic_fetch_sub_explicit(&tcaches_live, 1, memory_order_relaxed);
}

uint64_t lg_heap_tcache_bytes(void)
{
	int64_t b = atomic_load_explicit(&tcaches_live, memory_order_relaxed) *
		    atomic_load_explicit(&tcache_each, memory_order_relaxed);
	return b > 0 ? (uint64_t)b : 0;
}
