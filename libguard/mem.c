/* Memory: the guard's own, and the application's allocator behind the hooks.
 *
 * The guard's bookkeeping never comes from the application's heap, so that a leak report does
 * not count the guard and the guard cannot fragment or exhaust what the program measures: it
 * lives in a private jemalloc arena ("arenas.create"), used with MALLOCX_TCACHE_NONE so no
 * thread cache holds its blocks. Should the arena not be available, pages come from mmap.
 *
 * The application's allocation hooks forward to jemalloc (linked --no-as-needed, so no dlsym is
 * needed for malloc) or, with GUARD_ALLOCATOR=system, to glibc's __libc_* entry points.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the guard's own memory ---- */

static _Atomic unsigned own_arena_state;   /* 0 = not made, 1 = making, 2 = ready, 3 = failed */
static unsigned own_arena;
static _Atomic int64_t own_bytes;
static _Atomic int64_t mmap_bytes;

static int own_flags(void)
{
	unsigned st = atomic_load_explicit(&own_arena_state, memory_order_acquire);

	if (LG_UNLIKELY(st != 2)) {
		unsigned expected = 0;
		if (st == 0 && atomic_compare_exchange_strong(&own_arena_state, &expected, 1)) {
			unsigned idx;
			size_t sz = sizeof(idx);
			lg_enter();
			int rc = mallctl("arenas.create", &idx, &sz, NULL, 0);
			lg_leave();
			if (rc == 0)
				own_arena = idx;
			atomic_store_explicit(&own_arena_state, rc == 0 ? 2 : 3, memory_order_release);
			st = rc == 0 ? 2 : 3;
		} else {
			/* Another thread is making it: use the default arena for this one block. */
			while ((st = atomic_load_explicit(&own_arena_state, memory_order_acquire)) == 1)
				;
		}
		if (st != 2)
			return MALLOCX_TCACHE_NONE;
	}
	return (int)(MALLOCX_ARENA(own_arena) | MALLOCX_TCACHE_NONE);
}

void *lg_mem_alloc(size_t size)
{
	int flags = own_flags();
	void *p = mallocx(size ? size : 1, flags);

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
	void *p = mallocx(total ? total : 1, flags);
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

uint64_t lg_mem_self_bytes(void)
{
	int64_t b = atomic_load_explicit(&own_bytes, memory_order_relaxed) +
		    atomic_load_explicit(&mmap_bytes, memory_order_relaxed);
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
