/* The malloc family. Thin: forward to the application's allocator (jemalloc, or glibc with
 * GUARD_ALLOCATOR=system) and, on the rare slow path, let the heap guard sample.
 *
 * The fast path is one indirect call plus a thread-local subtraction: the sampling countdown
 * starts at 0, so a thread's first allocation takes the slow path, which arms the countdown
 * (or parks it far away when the heap guard is off, busy, or not ready yet).
 */
#include "libguard/internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void *after_alloc(void *p, size_t size)
{
	if (LG_UNLIKELY((lg_tls.heap_countdown -= (int64_t)size) < 0) && p)
		return lg_heap_on_alloc_slow(p, size);
	return p;
}

static inline void before_free(void *p)
{
	if (LG_UNLIKELY(lg_heap_maybe_sampled(p)))
		lg_heap_on_free(p);
}

LG_EXPORT void *malloc(size_t size)
{
	return after_alloc(lg_alloc.malloc(size), size);
}

LG_EXPORT void free(void *p)
{
	if (!p)
		return;
	before_free(p);
	lg_alloc.free(p);
}

LG_EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return after_alloc(lg_alloc.calloc(n, size), total);
}

LG_EXPORT void *realloc(void *p, size_t size)
{
	if (!p)
		return malloc(size);
	/* A sampled block that moves or shrinks to nothing leaves its record behind: treat realloc
	 * as free + malloc for the heap guard; the allocator itself does a real realloc. */
	before_free(p);
	void *q = lg_alloc.realloc(p, size);
	if (!q)
		return NULL;   /* size 0 freed it; or it failed, and p is untouched and unsampled */
	return after_alloc(q, size);
}

LG_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, total);
}

static size_t round_align(size_t align)
{
	if (align < sizeof(void *))
		return sizeof(void *);
	if ((align & (align - 1)) == 0)
		return align;
	/* glibc's memalign rounds a non-power of two up to the next power of two. */
	size_t a = sizeof(void *);
	while (a < align && a <= SIZE_MAX / 2)
		a <<= 1;
	return a;
}

LG_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	int saved = errno;
	void *p = lg_alloc.memalign(align, size);
	if (!p) {
		errno = saved;
		return ENOMEM;
	}
	*out = after_alloc(p, size);
	errno = saved;
	return 0;
}

LG_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if (align == 0 || (align & (align - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	return after_alloc(lg_alloc.memalign(round_align(align), size), size);
}

LG_EXPORT void *memalign(size_t align, size_t size)
{
	return after_alloc(lg_alloc.memalign(round_align(align), size), size);
}

LG_EXPORT void *valloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return after_alloc(lg_alloc.memalign(page, size), size);
}

LG_EXPORT void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t rounded;

	if (__builtin_add_overflow(size, page - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(page - 1);
	return after_alloc(lg_alloc.memalign(page, rounded ? rounded : page), rounded);
}

LG_EXPORT size_t malloc_usable_size(void *p)
{
	return p ? lg_alloc.usable_size(p) : 0;
}
