/* The malloc family. Thin: forward to the application's allocator (jemalloc, or glibc with
 * GUARD_ALLOCATOR=system) and, on the rare slow path, let the heap guard sample.
 *
 * Fast paths: an allocation is one thread-local subtraction plus one indirect call (the sampling
 * countdown starts at 0, so a thread's first allocation takes the slow path, which arms it, or
 * parks it far away when the heap guard is off or not ready); a free is a mask and a compare
 * (is the block in the heap guard's address range, i.e. sampled?) plus the indirect call. The
 * slow path makes the allocation itself, so that an enforced heap.max_bytes can refuse it.
 *
 * The slow paths get the hook's return address (RET), so a sampled block's stack starts at the
 * hook's caller however the hook reached them: a tail jump (malloc, calloc, realloc: the hook's
 * frame is gone, and libunwind has one frame fewer to cross) or a call (posix_memalign, which
 * has work left after it).
 */
#include "libguard/internal.h"

#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RET __builtin_return_address(0)

/* true when this allocation of size bytes must take the slow path. */
static inline bool countdown(size_t size)
{
	return LG_UNLIKELY((lg_tls.heap_countdown -= (int64_t)size) < 0);
}

static inline __attribute__((always_inline)) void *do_malloc(size_t size)
{
	if (countdown(size))
		return lg_heap_alloc_slow(LG_HEAP_MALLOC, 0, size, RET);
	return lg_alloc.malloc(size);
}

/* No block this large can be had anywhere (2^60 bytes, beyond any address space): jemalloc
 * refuses it without setting errno, glibc with ENOMEM, which realloc must give (p intact). */
#define IMPOSSIBLE_SIZE ((size_t)1 << 60)

static inline __attribute__((always_inline)) void *do_realloc(void *p, size_t size)
{
	if (!p)
		return do_malloc(size);
	if (LG_UNLIKELY(size >= IMPOSSIBLE_SIZE)) {
		errno = ENOMEM;
		return NULL;
	}
	/* Both tests run: the countdown must move even when p is sampled (the heap guard resizes
	 * a sampled block, which only it can). */
	bool slow = countdown(size);
	if (LG_UNLIKELY(slow | lg_heap_in_region(p)))
		return lg_heap_realloc_slow(p, size, RET);
	return lg_alloc.realloc(p, size);
}

static inline __attribute__((always_inline)) void *do_memalign(size_t align, size_t size)
{
	if (countdown(size))
		return lg_heap_alloc_slow(LG_HEAP_MEMALIGN, align, size, RET);
	return lg_alloc.memalign(align, size);
}

LG_EXPORT void *malloc(size_t size)
{
	return do_malloc(size);
}

LG_EXPORT void free(void *p)
{
	/* free(NULL) reaches the allocator, which ignores it (NULL is never in the range). */
	if (LG_UNLIKELY(lg_heap_in_region(p))) {
		lg_heap_free(p);
		return;
	}
	lg_alloc.free(p);
}

LG_EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	if (countdown(total))
		return lg_heap_alloc_slow(LG_HEAP_CALLOC, n, size, RET);
	return lg_alloc.calloc(n, size);
}

LG_EXPORT void *realloc(void *p, size_t size)
{
	return do_realloc(p, size);
}

LG_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return do_realloc(p, total);
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
	void *p = do_memalign(align, size);
	if (!p) {
		errno = saved;
		return ENOMEM;
	}
	*out = p;
	errno = saved;
	return 0;
}

/* glibc's memalign family: ENOMEM when no memory (mallocx leaves errno alone), EINVAL for an
 * alignment no power of two can round up to. */
static inline __attribute__((always_inline)) void *glibc_memalign(size_t align, size_t size)
{
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	void *p = do_memalign(round_align(align), size);
	if (LG_UNLIKELY(!p))
		errno = ENOMEM;
	return p;
}

/* Before 2.38 glibc's aligned_alloc is memalign (any alignment, rounded up); from 2.38 it
 * rejects one that is not a power of two. Follow the glibc the program runs with. */
static bool aligned_alloc_checks(void)
{
	static _Atomic int cached;   /* 0 unknown, 1 no, 2 yes */
	int c = atomic_load_explicit(&cached, memory_order_relaxed);

	if (LG_UNLIKELY(c == 0)) {
		int major = 0, minor = 0;
		sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
		c = (major > 2 || (major == 2 && minor >= 38)) ? 2 : 1;
		atomic_store_explicit(&cached, c, memory_order_relaxed);
	}
	return c == 2;
}

LG_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if ((align == 0 || (align & (align - 1)) != 0) && aligned_alloc_checks()) {
		errno = EINVAL;
		return NULL;
	}
	return glibc_memalign(align, size);
}

LG_EXPORT void *memalign(size_t align, size_t size)
{
	return glibc_memalign(align, size);
}

LG_EXPORT void *valloc(size_t size)
{
	return glibc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
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
	return glibc_memalign(page, rounded ? rounded : page);
}

LG_EXPORT size_t malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	return lg_heap_in_region(p) ? lg_heap_usable_size(p) : lg_alloc.usable_size(p);
}

/* Our own definitions under hidden names, for libguard/rebind.c (which must tell them apart from
 * a definition of malloc that the program itself may have). */
extern __typeof(malloc) lg_hook_malloc
	__attribute__((alias("malloc"), copy(malloc), visibility("hidden")));
extern __typeof(free) lg_hook_free
	__attribute__((alias("free"), copy(free), visibility("hidden")));
extern __typeof(calloc) lg_hook_calloc
	__attribute__((alias("calloc"), copy(calloc), visibility("hidden")));
extern __typeof(realloc) lg_hook_realloc
	__attribute__((alias("realloc"), copy(realloc), visibility("hidden")));
