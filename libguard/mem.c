/* Memory: the guard's own, and the application's allocator behind the hooks.
 *
 * The guard's bookkeeping never comes from the application's heap, so that a leak report does
 * not count the guard and the guard cannot fragment or exhaust what the program measures: it
 * lives in a private jemalloc arena ("arenas.create"), used with MALLOCX_TCACHE_NONE so no
 * thread cache holds its blocks (should the arena not be available, jemalloc's default arena
 * without tcache). The same arena holds the heap guard's sampled blocks (below).
 *
 * The application's allocation hooks forward to jemalloc (linked --no-as-needed, so no dlsym is
 * needed for malloc) or, with GUARD_ALLOCATOR=system, to glibc's __libc_* entry points.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the guard's arena and its region ----
 *
 * One arena serves the guard's bookkeeping and the heap guard's sampled blocks. Its extent hooks
 * carve every extent out of one reserved, size-aligned address range, so "is p a sampled block?"
 * is a mask and a compare on the hot free path (lg_heap_region), with no table and no bitmap to
 * load. One arena rather than two because an arena's metadata is ~90 KiB whatever it holds.
 *
 * The range is reserved PROT_NONE (no commit charge, nothing resident) and made writable piece by
 * piece as jemalloc asks for extents. jemalloc never unmaps them (dalloc opts out: they are
 * retained and reused); purging gives their pages back. 64 GiB, or an eighth of a finite
 * RLIMIT_AS, halved until the kernel grants it; without one, the arena is made with the default
 * hooks and the heap guard cannot sample (it says so). */

#define REGION_MAX_SHIFT 36u   /* 64 GiB */
#define REGION_MIN_SHIFT 26u   /* 64 MiB */

struct lg_heap_region lg_heap_region = { .mask = 0, .base = 1 };

static struct {
	uintptr_t start, end;
	_Atomic uintptr_t next;   /* bump pointer: extents are never unmapped */
	_Atomic int full;         /* an extent did not fit */
} region;

static bool region_reserve(void)
{
	unsigned shift = REGION_MAX_SHIFT;
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		while (shift > REGION_MIN_SHIFT && ((uint64_t)1 << shift) > rl.rlim_cur / 8)
			shift--;
	for (; shift >= REGION_MIN_SHIFT; shift--) {
		size_t size = (size_t)1 << shift;
		/* Twice the size, then trim to a size-aligned range. */
		char *p = mmap(NULL, size * 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
		if (p == MAP_FAILED)
			continue;
		uintptr_t start = ((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1);
		if (start > (uintptr_t)p)
			munmap(p, start - (uintptr_t)p);
		if ((uintptr_t)p + size * 2 > start + size)
			munmap((void *)(start + size), (uintptr_t)p + size * 2 - (start + size));
		region.start = start;
		region.end = start + size;
		atomic_store_explicit(&region.next, start, memory_order_relaxed);
		return true;
	}
	return false;
}

/* Extent hooks. They run inside jemalloc with its locks held: syscalls only, no allocation. */
static void *region_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t align, bool *zero,
			  bool *commit, unsigned arena)
{
	(void)h, (void)arena;
	if (new_addr)
		return NULL;   /* growing in place: jemalloc moves the extent instead */
	if (align < 4096)
		align = 4096;
	uintptr_t cur = atomic_load_explicit(&region.next, memory_order_relaxed), start;
	do {
		start = (cur + align - 1) & ~(uintptr_t)(align - 1);
		if (start < cur || start > region.end || region.end - start < size) {
			atomic_store_explicit(&region.full, 1, memory_order_relaxed);
			return NULL;
		}
	} while (!atomic_compare_exchange_weak(&region.next, &cur, start + size));
	if (mprotect((void *)start, size, PROT_READ | PROT_WRITE) != 0) {
		/* Strict overcommit refused the commit: give the range back if nobody took more
		 * since (otherwise it stays reserved, unused). */
		uintptr_t end = start + size;
		atomic_compare_exchange_strong(&region.next, &end, cur);
		return NULL;
	}
	*zero = true;      /* never touched before */
	*commit = true;
	return (void *)start;
}

static bool region_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned a)
{
	(void)h, (void)addr, (void)size, (void)committed, (void)a;
	return true;   /* opt out: jemalloc retains the extent and reuses it */
}

static bool region_purge_lazy(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len,
			      unsigned a)
{
	(void)h, (void)size, (void)a;
	return madvise((char *)addr + off, len, MADV_FREE) != 0;
}

static bool region_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t off,
				size_t len, unsigned a)
{
	(void)h, (void)size, (void)a;
	return madvise((char *)addr + off, len, MADV_DONTNEED) != 0;
}

/* Split and merge need nothing from us: the range is one mapping. */
static bool region_split(extent_hooks_t *h, void *addr, size_t size, size_t a_len, size_t b_len,
			 bool committed, unsigned a)
{
	(void)h, (void)addr, (void)size, (void)a_len, (void)b_len, (void)committed, (void)a;
	return false;
}

static bool region_merge(extent_hooks_t *h, void *a_addr, size_t a_len, void *b_addr, size_t b_len,
			 bool committed, unsigned a)
{
	(void)h, (void)a_addr, (void)a_len, (void)b_addr, (void)b_len, (void)committed, (void)a;
	return false;
}

static extent_hooks_t region_hooks = {
	.alloc = region_alloc,
	.dalloc = region_dalloc,
	.purge_lazy = region_purge_lazy,
	.purge_forced = region_purge_forced,
	.split = region_split,
	.merge = region_merge,
};

static _Atomic unsigned own_arena_state;   /* 0 = not made, 1 = making, 2 = ready, 3 = failed */
static unsigned own_arena;
static _Atomic int64_t own_bytes;
static _Atomic int64_t mmap_bytes;

static void arena_make(void)
{
	unsigned idx;
	size_t sz = sizeof(idx);
	extent_hooks_t *hooks = &region_hooks;
	int rc = -1;

	lg_enter();
	if (region_reserve()) {
		rc = mallctl("arenas.create", &idx, &sz, &hooks, sizeof(hooks));
		if (rc == 0) {
			/* Publish the range: mask and base are each safe to see alone (a pointer
			 * masked with 0 is never base, nor is any pointer masked equal to 1). */
			__atomic_store_n(&lg_heap_region.base, region.start, __ATOMIC_RELAXED);
			__atomic_store_n(&lg_heap_region.mask, ~(region.end - region.start - 1),
					 __ATOMIC_RELEASE);
		} else {
			munmap((void *)region.start, region.end - region.start);
			region.start = region.end = 0;
		}
	}
	if (rc != 0)
		rc = mallctl("arenas.create", &idx, &sz, NULL, 0);
	lg_leave();
	if (rc == 0)
		own_arena = idx;
	atomic_store_explicit(&own_arena_state, rc == 0 ? 2 : 3, memory_order_release);
}

static int own_flags(void)
{
	unsigned st = atomic_load_explicit(&own_arena_state, memory_order_acquire);

	if (LG_UNLIKELY(st != 2)) {
		unsigned expected = 0;
		if (st == 0 && atomic_compare_exchange_strong(&own_arena_state, &expected, 1)) {
			arena_make();
		} else {
			/* Another thread is making it: wait (once per process, a few syscalls). */
			while (atomic_load_explicit(&own_arena_state, memory_order_acquire) == 1)
				;
		}
		if (atomic_load_explicit(&own_arena_state, memory_order_acquire) != 2)
			return MALLOCX_TCACHE_NONE;
	}
	return (int)(MALLOCX_ARENA(own_arena) | MALLOCX_TCACHE_NONE);
}

int lg_mem_sample_flags(void)
{
	own_flags();
	if (__atomic_load_n(&lg_heap_region.mask, __ATOMIC_ACQUIRE) == 0)
		return -1;   /* no range */
	return (int)MALLOCX_ARENA(own_arena);
}

size_t lg_mem_region_bytes(void)
{
	return region.end - region.start;
}

bool lg_mem_region_full(void)
{
	return atomic_load_explicit(&region.full, memory_order_relaxed) != 0;
}

/* The guard's arena shares its range with the sampled blocks; when they have filled it (a range
 * capped by RLIMIT_AS), the bookkeeping goes to jemalloc's default arena, still without tcache,
 * so that reports stay whole. dallocx and sallocx find any block's arena themselves. */
static void *own_mallocx(size_t size, int flags)
{
	void *p = mallocx(size, flags);

	if (!p && (flags & ~(MALLOCX_TCACHE_NONE | MALLOCX_ZERO)) != 0)
		p = mallocx(size, (flags & MALLOCX_ZERO) | MALLOCX_TCACHE_NONE);
	return p;
}

void *lg_mem_alloc(size_t size)
{
	int flags = own_flags();
	void *p = own_mallocx(size ? size : 1, flags);

	if (p)
		atomic_fetch_add_explicit(&own_bytes, (int64_t)sallocx(p, flags), memory_order_relaxed);
	return p;
}

void *lg_mem_calloc(size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	int flags = own_flags() | MALLOCX_ZERO;
	void *p = own_mallocx(total ? total : 1, flags);
	if (p)
		atomic_fetch_add_explicit(&own_bytes, (int64_t)sallocx(p, flags), memory_order_relaxed);
	return p;
}

void *lg_mem_realloc(void *p, size_t size)
{
	int flags = own_flags();

	if (!p)
		return lg_mem_alloc(size);
	int64_t before = (int64_t)sallocx(p, flags);
	void *q = rallocx(p, size ? size : 1, flags);
	if (!q && (q = own_mallocx(size ? size : 1, flags)) != NULL) {
		memcpy(q, p, (size_t)before < size ? (size_t)before : size);
		dallocx(p, MALLOCX_TCACHE_NONE);
	}
	if (q)
		atomic_fetch_add_explicit(&own_bytes, (int64_t)sallocx(q, flags) - before,
					  memory_order_relaxed);
	return q;
}

void lg_mem_free(void *p)
{
	if (!p)
		return;
	int flags = own_flags();
	atomic_fetch_sub_explicit(&own_bytes, (int64_t)sallocx(p, flags), memory_order_relaxed);
	dallocx(p, flags);
}

char *lg_mem_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = lg_mem_alloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

void lg_mem_account_mmap(int64_t delta)
{
	atomic_fetch_add_explicit(&mmap_bytes, delta, memory_order_relaxed);
}

/* Tables the guards mmap and touch sparsely (fd segments, the clock's reader table): counted by
 * their resident pages when self_bytes is asked for, not by their size. */
#define TABLES_MAX 32u
static struct {
	void *base;
	size_t len;
} tables[TABLES_MAX];
static _Atomic unsigned ntables;

void lg_mem_register_table(void *base, size_t len)
{
	unsigned i = atomic_fetch_add(&ntables, 1);

	if (i >= TABLES_MAX) {
		/* Not expected (23 fd segments at most, one reader table): count it whole. */
		atomic_fetch_sub(&ntables, 1);
		lg_mem_account_mmap((int64_t)len);
		return;
	}
	tables[i].len = len;
	__atomic_store_n(&tables[i].base, base, __ATOMIC_RELEASE);
}

bool lg_mem_pages_present(const void *base, size_t len, unsigned char *present)
{
	if (mincore((void *)base, len, present) == 0)
		return true;
	memset(present, 1, (len + LG_PAGE - 1) / LG_PAGE);
	return false;
}

static uint64_t resident_bytes(const void *base, size_t len)
{
	unsigned char vec[1024];
	uint64_t n = 0;
	size_t chunk = sizeof(vec) * LG_PAGE;

	for (size_t off = 0; off < len; off += chunk) {
		size_t l = len - off < chunk ? len - off : chunk;
		if (!lg_mem_pages_present((const char *)base + off, l, vec))
			return n;
		for (size_t i = 0; i < (l + LG_PAGE - 1) / LG_PAGE; i++)
			n += (vec[i] & 1) * LG_PAGE;
	}
	return n;
}

/* Bytes of jemalloc metadata behind the guard's arena (its bins, extent maps: ~90 KiB). */
static uint64_t arena_metadata_bytes(void)
{
	if (atomic_load_explicit(&own_arena_state, memory_order_acquire) != 2)
		return 0;
	char name[64];
	uint64_t epoch = 1;
	size_t v = 0, sz = sizeof(epoch);
	lg_enter();
	mallctl("epoch", &epoch, &sz, &epoch, sz);
	snprintf(name, sizeof(name), "stats.arenas.%u.base", own_arena);
	sz = sizeof(v);
	if (mallctl(name, &v, &sz, NULL, 0) != 0)
		v = 0;
	lg_leave();
	return v;
}

uint64_t lg_mem_self_bytes(void)
{
	int64_t own = atomic_load_explicit(&own_bytes, memory_order_relaxed);
	int64_t mapped = atomic_load_explicit(&mmap_bytes, memory_order_relaxed);
	int64_t resident = 0, meta = (int64_t)arena_metadata_bytes();
	unsigned n = atomic_load(&ntables);

	for (unsigned i = 0; i < n && i < TABLES_MAX; i++) {
		const void *base = __atomic_load_n(&tables[i].base, __ATOMIC_ACQUIRE);
		if (base)
			resident += (int64_t)resident_bytes(base, tables[i].len);
	}
	lg_debug("own memory: heap %lld, arena metadata %lld, stack table %lld, other tables %lld",
		 (long long)own, (long long)meta, (long long)mapped, (long long)resident);
	int64_t b = own + mapped + resident + meta;
	return b > 0 ? (uint64_t)b : 0;
}

/* ---- the application's allocator ---- */

/* jemalloc's mallocx(0) is undefined; malloc(0) must return a unique pointer. */
static void *je_malloc_x(size_t n) { return mallocx(n ? n : 1, 0); }
static void je_free_x(void *p) { if (p) dallocx(p, 0); }
static void *je_calloc_x(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return mallocx(total ? total : 1, MALLOCX_ZERO);
}
static void *je_realloc_x(void *p, size_t n)
{
	if (!p)
		return mallocx(n ? n : 1, 0);
	if (n == 0) {
		/* glibc frees and returns NULL for realloc(p, 0); jemalloc's realloc does too. */
		dallocx(p, 0);
		return NULL;
	}
	return rallocx(p, n, 0);
}
static void *je_memalign_x(size_t align, size_t n)
{
	return mallocx(n ? n : 1, MALLOCX_ALIGN(align));
}
static size_t je_usable_x(void *p) { return p ? sallocx(p, 0) : 0; }

/* glibc's own entry points, for GUARD_ALLOCATOR=system. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static size_t (*sys_usable_size_fn)(void *);
static size_t sys_usable_x(void *p)
{
	if (!sys_usable_size_fn) {
		lg_enter();
		*(void **)&sys_usable_size_fn = dlsym(RTLD_NEXT, "malloc_usable_size");
		lg_leave();
	}
	return sys_usable_size_fn ? sys_usable_size_fn(p) : 0;
}

/* The table starts on trampolines that choose the backend on the very first call (from any
 * entry point), so the hot path never checks whether that was done. */
static void *boot_malloc(size_t n) { lg_alloc_boot(); return lg_alloc.malloc(n); }
static void boot_free(void *p) { lg_alloc_boot(); lg_alloc.free(p); }
static void *boot_calloc(size_t n, size_t s) { lg_alloc_boot(); return lg_alloc.calloc(n, s); }
static void *boot_realloc(void *p, size_t n) { lg_alloc_boot(); return lg_alloc.realloc(p, n); }
static void *boot_memalign(size_t a, size_t n) { lg_alloc_boot(); return lg_alloc.memalign(a, n); }
static size_t boot_usable(void *p) { lg_alloc_boot(); return lg_alloc.usable_size(p); }

struct lg_allocator lg_alloc = {
	.malloc = boot_malloc, .free = boot_free, .calloc = boot_calloc, .realloc = boot_realloc,
	.memalign = boot_memalign, .usable_size = boot_usable,
};
static _Atomic int alloc_booted;
static enum lg_backend backend = LG_BACKEND_JEMALLOC;

/* environ may not be set yet when the loader makes the first allocation (libc's own initialiser
 * has not run), so read the variable from /proc/self/environ with raw syscalls in that case. */
static bool system_allocator_requested(void)
{
	extern char **environ;
	static const char key[] = "GUARD_ALLOCATOR=system";

	if (environ) {
		const char *v = getenv("GUARD_ALLOCATOR");
		return v && strcmp(v, "system") == 0;
	}
	int fd = (int)syscall(SYS_open, "/proc/self/environ", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[4096];
	size_t have = 0;
	bool found = false;
	for (;;) {
		ssize_t n = syscall(SYS_read, fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		/* Check every complete entry, keep the incomplete tail. */
		size_t start = 0;
		for (size_t i = 0; i < have; i++) {
			if (buf[i] == '\0') {
				if (i - start == sizeof(key) - 1 && memcmp(buf + start, key, i - start) == 0)
					found = true;
				start = i + 1;
			}
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == sizeof(buf))
			have = 0;   /* an entry longer than the buffer is not ours */
	}
	syscall(SYS_close, fd);
	return found;
}

void lg_alloc_boot(void)
{
	int expected = 0;

	if (!atomic_compare_exchange_strong(&alloc_booted, &expected, 1)) {
		/* Another thread is choosing: wait until the table is whole (this is the very first
		 * allocation of the process, made by the loader, so it practically never happens). */
		while (atomic_load_explicit(&alloc_booted, memory_order_acquire) != 2)
			;
		return;
	}
	if (system_allocator_requested()) {
		lg_alloc = (struct lg_allocator){
			.malloc = __libc_malloc, .free = __libc_free, .calloc = __libc_calloc,
			.realloc = __libc_realloc, .memalign = __libc_memalign,
			.usable_size = sys_usable_x,
		};
		backend = LG_BACKEND_SYSTEM;
	} else {
		lg_alloc = (struct lg_allocator){
			.malloc = je_malloc_x, .free = je_free_x, .calloc = je_calloc_x,
			.realloc = je_realloc_x, .memalign = je_memalign_x, .usable_size = je_usable_x,
		};
	}
	atomic_store_explicit(&alloc_booted, 2, memory_order_release);
}

/* jemalloc's own malloc/free have fast paths that mallocx/dallocx lack (~5% on a malloc
 * benchmark); take them from its handle once the loader is done (RTLD_NOLOAD: no new load). */
void lg_alloc_fast_entry(void)
{
	lg_alloc_boot();
	if (backend != LG_BACKEND_JEMALLOC)
		return;
	lg_enter();
	void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
	if (h) {
		void *m = dlsym(h, "malloc"), *f = dlsym(h, "free"), *c = dlsym(h, "calloc");
		void *r = dlsym(h, "realloc");
		if (m && f && c && r) {
			*(void **)&lg_alloc.malloc = m;
			*(void **)&lg_alloc.calloc = c;
			*(void **)&lg_alloc.realloc = r;
			*(void **)&lg_alloc.free = f;
		}
		dlclose(h);
	}
	lg_leave();
}

enum lg_backend lg_alloc_backend(void) { return backend; }

const char *lg_alloc_backend_name(void)
{
	return backend == LG_BACKEND_JEMALLOC ? "jemalloc" : "system";
}

uint64_t lg_alloc_allocated_bytes(void)
{
	if (backend != LG_BACKEND_JEMALLOC)
		return 0;
	uint64_t epoch = 1, allocated = 0;
	size_t sz = sizeof(epoch);
	lg_enter();
	mallctl("epoch", &epoch, &sz, &epoch, sz);
	sz = sizeof(size_t);
	size_t v = 0;
	if (mallctl("stats.allocated", &v, &sz, NULL, 0) == 0)
		allocated = v;
	lg_leave();
	/* The guard's own arena is part of jemalloc's total; the program's heap is the rest. */
	uint64_t own = (uint64_t)atomic_load_explicit(&own_bytes, memory_order_relaxed);
	return allocated > own ? allocated - own : 0;
}
