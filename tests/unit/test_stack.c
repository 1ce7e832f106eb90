/* Stack capture, interning and symbolization (libguard/stack.c, libguard/symbol.c).
 *
 * The tests share one process-wide stack table (ids are never recycled by design), so they run in
 * the order listed in main() and the one that fills the table runs last.
 */
#include "libguard/internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <libunwind.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* noclone: a constprop clone would be named "fn.constprop.0". */
#define NOINLINE __attribute__((noinline, noclone))

/* A volatile access after a call keeps it out of tail position, so the caller keeps its frame.
 * Per thread: the concurrency tests run these functions on several threads. */
static __thread volatile unsigned sink;

static NOINLINE uint32_t capture_here(unsigned skip)
{
	uint32_t id = lg_stack_capture(skip);

	sink++;
	return id;
}

/* ---------------------------------------------------------------------------------------------
 * Distinct stacks on demand: walk(bits, levels) recurses `levels` times, through walk0 or walk1 as
 * bit (levels - 1) says, so the low bits pick the innermost frames (the ones a depth limit keeps)
 * and each value of bits below 2^levels gives its own chain of return addresses.
 * ------------------------------------------------------------------------------------------- */

static uint32_t walk(uint32_t bits, unsigned levels);

static NOINLINE uint32_t walk0(uint32_t bits, unsigned levels)
{
	uint32_t id;

	sink += 1;
	id = walk(bits, levels);
	sink += 1;
	return id;
}

static NOINLINE uint32_t walk1(uint32_t bits, unsigned levels)
{
	uint32_t id;

	sink += 2;
	id = walk(bits, levels);
	sink += 3;
	return id;
}

static NOINLINE uint32_t walk(uint32_t bits, unsigned levels)
{
	uint32_t id;

	if (levels == 0)
		id = lg_stack_capture(0);
	else if (levels <= 32 && ((bits >> (levels - 1)) & 1))
		id = walk1(bits, levels - 1);
	else
		id = walk0(bits, levels - 1);
	sink++;
	return id;
}

static int group_setup(void **state)
{
	(void)state;
	lg_stack_init(32);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Interning
 * ------------------------------------------------------------------------------------------- */

static void test_stack_same_site_same_id(void **state)
{
	uint32_t ids[2];

	(void)state;
	/* volatile: an unrolled loop would be two call sites. */
	for (volatile int i = 0; i < 2; i++)
		ids[i] = capture_here(0);
	assert_int_not_equal(ids[0], 0);
	assert_int_equal(ids[0], ids[1]);
}

static void test_stack_different_sites_differ(void **state)
{
	uint32_t a, b, before = lg_stack_count();

	(void)state;
	a = walk(0, 3);
	b = walk(1, 3);
	assert_int_not_equal(a, 0);
	assert_int_not_equal(b, 0);
	assert_int_not_equal(a, b);
	/* Ids are dense: two new stacks, two new ids. */
	assert_int_equal(lg_stack_count(), before + 2);
	assert_true(a > before && b > before);
}

static void test_stack_frames_start_at_caller(void **state)
{
	const uintptr_t *frames;
	uint32_t id, n;
	Dl_info info;

	(void)state;
	id = capture_here(0);
	n = lg_stack_frames(id, &frames);
	assert_true(n >= 3);
	/* Frame 0 is the return address inside capture_here: neither unw_backtrace nor
	 * lg_stack_capture itself is part of the stack. */
	struct lg_symbol s;
	assert_int_equal(lg_symbolize(frames[0], &s), 0);
	assert_non_null(s.fn);
	assert_string_equal(s.fn, "capture_here");
	/* Frame 1 is where this test called capture_here. */
	assert_int_equal(lg_symbolize(frames[1], &s), 0);
	assert_non_null(s.fn);
	assert_string_equal(s.fn, "test_stack_frames_start_at_caller");
	/* libunwind's own frame would be named by dladdr; it must not be there. */
	for (uint32_t i = 0; i < n; i++)
		if (dladdr((void *)(frames[i] - 1), &info) && info.dli_sname != NULL)
			assert_null(strstr(info.dli_sname, "backtrace"));
}

static void test_stack_skip_drops_innermost_frames(void **state)
{
	const uintptr_t *f0, *f1;
	uint32_t ids[2], n0, n1;

	(void)state;
	/* One call instruction for both, so the stacks differ only by the skipped frame. */
	for (volatile unsigned skip = 0; skip < 2; skip++)
		ids[skip] = capture_here(skip);
	assert_int_not_equal(ids[0], ids[1]);
	n0 = lg_stack_frames(ids[0], &f0);
	n1 = lg_stack_frames(ids[1], &f1);
	assert_true(n0 >= 2);
	assert_int_equal(n1, n0 - 1);
	assert_memory_equal(f1, f0 + 1, n1 * sizeof(uintptr_t));
}

static void test_stack_depth_limit_respected(void **state)
{
	const uintptr_t *frames;
	uint32_t id, n;

	(void)state;
	lg_stack_init(4);
	id = walk(5, 12);
	n = lg_stack_frames(id, &frames);
	lg_stack_init(32);
	assert_int_equal(n, 4);

	/* The same call chain at depth 32 is a different (longer) stack. */
	uint32_t deep = walk(5, 12);
	assert_int_not_equal(deep, id);
	n = lg_stack_frames(deep, &frames);
	assert_true(n > 25 && n <= 32);

	/* Out-of-range depths are clamped, never trusted. */
	lg_stack_init(100000);
	id = walk(6, 70);
	n = lg_stack_frames(id, &frames);
	lg_stack_init(32);
	assert_int_equal(n, LG_STACK_MAX_DEPTH);
}

static void test_stack_unknown_id_has_no_frames(void **state)
{
	const uintptr_t *frames = (const uintptr_t *)&frames;

	(void)state;
	assert_int_equal(lg_stack_frames(0, &frames), 0);
	assert_null(frames);
	assert_int_equal(lg_stack_frames(lg_stack_count() + 1, &frames), 0);
	assert_int_equal(lg_stack_frames(UINT32_MAX, &frames), 0);
}

static void test_stack_self_bytes_counts_touched_pages(void **state)
{
	uint64_t before, after;

	(void)state;
	before = lg_stack_self_bytes();
	assert_true(before > 0);
	/* Far below the reservation (over 100 MiB): only pages actually written count. */
	assert_true(before < 1024 * 1024);
	for (uint32_t bits = 0; bits < 256; bits++)
		walk(bits, 8);
	after = lg_stack_self_bytes();
	assert_true(after > before);
	assert_int_equal(after % 4096, 0);
	/* 256 new stacks: the small tier of slots holds the first 256 of the process in one page,
	 * so the slots add a few pages, not one each (a single hashed array made ~256 resident). */
	print_message("256 new stacks: %llu KiB more\n", (unsigned long long)(after - before) / 1024);
	assert_true(after - before < 100 * 4096);
}

/* ---------------------------------------------------------------------------------------------
 * Symbolization
 * ------------------------------------------------------------------------------------------- */

/* Not exported (hidden visibility, no -rdynamic): only .symtab names it. */
static NOINLINE uint32_t leak_here(void)
{
	uint32_t id = lg_stack_capture(0);

	sink++;
	return id;
}

static uintptr_t first_frame(uint32_t id)
{
	const uintptr_t *frames;

	assert_true(lg_stack_frames(id, &frames) > 0);
	return frames[0];
}

static void test_symbol_names_static_function(void **state)
{
	uintptr_t addr = first_frame(leak_here());
	struct lg_symbol s;
	Dl_info info;

	(void)state;
	/* The dynamic symbol table must not know it, or this would not test .symtab at all. */
	assert_true(dladdr((void *)(addr - 1), &info) != 0);
	assert_null(info.dli_sname);

	assert_int_equal(lg_symbolize(addr, &s), 0);
	assert_non_null(s.fn);
	assert_string_equal(s.fn, "leak_here");
	assert_true(s.fn_offset > 0 && s.fn_offset < 256);
	assert_int_equal(addr - s.fn_offset, (uintptr_t)&leak_here);
}

static void test_symbol_module_is_exe_with_pie_offset(void **state)
{
	uintptr_t addr = first_frame(leak_here());
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	struct lg_symbol s;
	Dl_info info;

	(void)state;
	assert_true(len > 0);
	exe[len] = '\0';
	assert_int_equal(lg_symbolize(addr, &s), 0);
	assert_non_null(s.module);
	assert_string_equal(s.module, exe);

	assert_true(dladdr((void *)addr, &info) != 0);
	if (((const Elf64_Ehdr *)info.dli_fbase)->e_type != ET_DYN)
		skip();   /* a non-PIE build: offsets are absolute addresses */
	assert_true((uintptr_t)info.dli_fbase != 0);
	assert_int_equal(s.offset, addr - (uintptr_t)info.dli_fbase);
	assert_true(s.offset < addr);
}

static uint32_t compare_stack;

static int compare_capturing(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (compare_stack == 0)
		compare_stack = lg_stack_capture(0);
	return (x > y) - (x < y);
}

static void test_symbol_names_libc_module(void **state)
{
	int values[] = { 5, 3, 9, 1, 7 };
	const uintptr_t *frames;
	bool libc = false;
	uint32_t n;

	(void)state;
	compare_stack = 0;
	qsort(values, LG_ARRAY_SIZE(values), sizeof(values[0]), compare_capturing);
	n = lg_stack_frames(compare_stack, &frames);
	assert_true(n >= 2);
	for (uint32_t i = 0; i < n && !libc; i++) {
		struct lg_symbol s;
		const char *base;

		if (lg_symbolize(frames[i], &s) != 0 || s.module == NULL)
			continue;
		base = strrchr(s.module, '/');
		libc = strcmp(base ? base + 1 : s.module, "libc.so.6") == 0;
		if (libc)
			print_message("qsort frame %u: %s+0x%zx in %s\n", i, s.fn ? s.fn : "?",
				      (size_t)s.fn_offset, s.module);
	}
	assert_true(libc);
}

static void test_symbol_vdso_and_anonymous_code(void **state)
{
	uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
	struct lg_symbol s;
	void *page;

	(void)state;
	/* Anonymous executable memory (a JIT) has no module and no name. */
	page = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(page != MAP_FAILED);
	assert_int_equal(lg_symbolize((uintptr_t)page + 16, &s), -ENOENT);
	assert_null(s.fn);
	assert_null(s.module);
	munmap(page, 4096);
	assert_int_equal(lg_symbolize(0, &s), -ENOENT);

	if (vdso == 0)
		skip();
	/* The vDSO has no file on disk; its dynamic symbols still name it. */
	void *h = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
	void *fn = h ? dlsym(h, "__vdso_clock_gettime") : NULL;
	uintptr_t addr = fn ? (uintptr_t)fn + 1 : vdso + 64;

	assert_int_equal(lg_symbolize(addr, &s), 0);
	assert_non_null(s.module);
	assert_string_equal(s.module, "[vdso]");
	if (fn != NULL) {
		assert_non_null(s.fn);
		assert_non_null(strstr(s.fn, "clock_gettime"));
	}
	if (h)
		dlclose(h);
}

static void test_symbol_names_survive_until_reset(void **state)
{
	uintptr_t addr = first_frame(leak_here());
	struct lg_symbol a, b;

	(void)state;
	assert_int_equal(lg_symbolize(addr, &a), 0);
	assert_int_equal(lg_symbolize(first_frame(capture_here(0)), &b), 0);
	/* Cached per module: the second lookup did not invalidate the first name. */
	assert_string_equal(a.fn, "leak_here");
	assert_string_equal(b.fn, "capture_here");
	lg_symbol_reset();
	assert_int_equal(lg_symbolize(addr, &a), 0);
	assert_string_equal(a.fn, "leak_here");
	lg_symbol_reset();
	lg_symbol_reset();   /* idempotent */
}

/* ---------------------------------------------------------------------------------------------
 * Concurrency
 * ------------------------------------------------------------------------------------------- */

/* Under TSan a thread that used unw_backtrace must not exit: libunwind's trace-cache TSD destructor
 * (trace_cache_free -> mempool_free -> pthread_mutex_lock) runs after TSan has finished the thread,
 * and TSan's mutex interceptor crashes. Such a thread reports done and sleeps until the process
 * exits; elsewhere threads are joined as usual. */
struct test_thread {
	pthread_t tid;
	void *(*fn)(void *);
	void *arg;
	sem_t done;
};

static void *test_thread_main(void *p)
{
	struct test_thread *t = p;

	t->fn(t->arg);
	sem_post(&t->done);
#ifdef __SANITIZE_THREAD__
	for (;;)
		pause();
#endif
	return NULL;
}

static int thread_start(struct test_thread *t, void *(*fn)(void *), void *arg)
{
	int rc;

	t->fn = fn;
	t->arg = arg;
	sem_init(&t->done, 0, 0);
	rc = pthread_create(&t->tid, NULL, test_thread_main, t);
#ifdef __SANITIZE_THREAD__
	if (rc == 0)
		pthread_detach(t->tid);
#endif
	return rc;
}

static void thread_wait(struct test_thread *t)
{
	while (sem_wait(&t->done) != 0)
		;
#ifndef __SANITIZE_THREAD__
	pthread_join(t->tid, NULL);
#endif
	sem_destroy(&t->done);
}

#define CONC_THREADS 4
#define CONC_CAPTURES 50000
#define CONC_PATTERNS 16    /* stacks per round */
#define CONC_LEVELS 20      /* rounds: each brings new stacks for the threads to race on */
#define CONC_ROUND (CONC_CAPTURES / CONC_LEVELS)
#define CONC_WALK 9         /* 2^9 >= CONC_LEVELS * CONC_PATTERNS distinct chains of 19 frames */

struct conc_thread {
	struct test_thread thread;
	uint32_t ids[CONC_LEVELS][CONC_PATTERNS];
	unsigned mismatches;
	unsigned zeros;
};

static pthread_barrier_t conc_barrier;
static _Atomic int conc_done;
static _Atomic unsigned conc_bad_reads;
static _Atomic unsigned long conc_reads;

static void *conc_capture(void *arg)
{
	struct conc_thread *t = arg;

	pthread_barrier_wait(&conc_barrier);
	for (unsigned i = 0; i < CONC_CAPTURES; i++) {
		unsigned level = i / CONC_ROUND, bits = i % CONC_PATTERNS;
		uint32_t id = walk(level * CONC_PATTERNS + bits, CONC_WALK);

		if (id == 0)
			t->zeros++;
		else if (t->ids[level][bits] == 0)
			t->ids[level][bits] = id;
		else if (t->ids[level][bits] != id)
			t->mismatches++;
	}
	return NULL;
}

/* Reads every published id while captures go on: each must show complete frames. */
static void *conc_read(void *arg)
{
	(void)arg;
	while (!atomic_load(&conc_done)) {
		uint32_t count = lg_stack_count();

		for (uint32_t id = 1; id <= count; id++) {
			const uintptr_t *frames;
			uint32_t n = lg_stack_frames(id, &frames);

			if (n == 0 || n > LG_STACK_MAX_DEPTH || frames[0] == 0 || frames[n - 1] == 0)
				atomic_fetch_add(&conc_bad_reads, 1);
			atomic_fetch_add(&conc_reads, 1);
		}
	}
	return NULL;
}

static void test_stack_concurrent_captures_give_dense_ids(void **state)
{
	static struct conc_thread threads[CONC_THREADS];
	uint32_t before = lg_stack_count(), lo = UINT32_MAX, hi = 0;
	static struct test_thread reader;

	(void)state;
	memset(threads, 0, sizeof(threads));
	atomic_store(&conc_done, 0);
	pthread_barrier_init(&conc_barrier, NULL, CONC_THREADS);
	assert_int_equal(thread_start(&reader, conc_read, NULL), 0);
	for (int i = 0; i < CONC_THREADS; i++)
		assert_int_equal(thread_start(&threads[i].thread, conc_capture, &threads[i]), 0);
	for (int i = 0; i < CONC_THREADS; i++)
		thread_wait(&threads[i].thread);
	atomic_store(&conc_done, 1);
	thread_wait(&reader);
	pthread_barrier_destroy(&conc_barrier);

	/* Every thread got the same id for the same stack, and never 0. */
	for (int i = 0; i < CONC_THREADS; i++) {
		assert_int_equal(threads[i].zeros, 0);
		assert_int_equal(threads[i].mismatches, 0);
		assert_memory_equal(threads[i].ids, threads[0].ids, sizeof(threads[0].ids));
	}
	/* Exactly one new id per distinct stack, and they are the next ids in order. */
	for (int l = 0; l < CONC_LEVELS; l++)
		for (int b = 0; b < CONC_PATTERNS; b++) {
			uint32_t id = threads[0].ids[l][b];

			lo = id < lo ? id : lo;
			hi = id > hi ? id : hi;
			for (int l2 = 0; l2 < CONC_LEVELS; l2++)
				for (int b2 = 0; b2 < CONC_PATTERNS; b2++)
					if (l2 != l || b2 != b)
						assert_int_not_equal(threads[0].ids[l2][b2], id);
		}
	assert_int_equal(lg_stack_count(), before + CONC_LEVELS * CONC_PATTERNS);
	assert_int_equal(lo, before + 1);
	assert_int_equal(hi, before + CONC_LEVELS * CONC_PATTERNS);
	assert_int_equal(atomic_load(&conc_bad_reads), 0);
	print_message("concurrency: %d threads, %d captures each, %d distinct stacks, %lu reads\n",
		      CONC_THREADS, CONC_CAPTURES, CONC_LEVELS * CONC_PATTERNS,
		      atomic_load(&conc_reads));
}

/* ---------------------------------------------------------------------------------------------
 * The loader lock
 * ------------------------------------------------------------------------------------------- */

/* Fewer rounds under TSan: there, every finished thread stays parked (see struct test_thread). */
#ifdef __SANITIZE_THREAD__
#define DL_ROUNDS 30
#else
#define DL_ROUNDS 400
#endif
#define DL_TIMEOUT_S 60

static _Atomic int dl_stop;
static _Atomic unsigned long dl_captures, dl_locked_captures;

static void on_alarm(int sig)
{
	static const char msg[] = "test_stack_dlopen_while_capturing_does_not_deadlock: "
				  "no progress in 60 s (deadlock)\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/* A library this process can load and really unload: small, everywhere on Debian (dpkg needs
 * them), and not already linked in (a loaded one would only gain a reference). */
static const char *unloadable_library(void)
{
	static const char *const candidates[] = { "libbz2.so.1.0", "libmd.so.0", "libzstd.so.1",
						  "libz.so.1" };

	for (size_t i = 0; i < LG_ARRAY_SIZE(candidates); i++) {
		void *h = dlopen(candidates[i], RTLD_LAZY | RTLD_NOLOAD);

		if (h != NULL) {
			dlclose(h);
			continue;
		}
		h = dlopen(candidates[i], RTLD_LAZY | RTLD_LOCAL);
		if (h == NULL)
			continue;
		dlclose(h);
		h = dlopen(candidates[i], RTLD_LAZY | RTLD_NOLOAD);
		if (h == NULL)
			return candidates[i];
		dlclose(h);
	}
	return NULL;
}

static void *dl_capture(void *arg)
{
	uint32_t bits = (uint32_t)(uintptr_t)arg;

	while (!atomic_load(&dl_stop)) {
		if (walk(bits++ % 64, 6) != 0)
			atomic_fetch_add(&dl_captures, 1);
	}
	return NULL;
}

/* dl_iterate_phdr holds the loader's dl_load_write_lock while it runs the callback: capturing here
 * is the situation of a hook reached by a thread that holds the loader lock. */
static int capture_in_loader_lock(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)info;
	(void)size;
	(void)arg;
	if (capture_here(0) != 0)
		atomic_fetch_add(&dl_locked_captures, 1);
	return 0;
}

/* Fresh threads: libunwind's per-thread trace cache is empty, so their unwinds take the slow
 * path (unw_step, fetch_proc_info, dl_iterate_phdr) where its locks are, as a thread sampled for
 * the first time does. A warm thread almost never gets there. */
static void *dl_fresh_capture(void *arg)
{
	(void)arg;
	for (uint32_t bits = 0; bits < 8; bits++)
		if (walk(bits, 6) != 0)
			atomic_fetch_add(&dl_captures, 1);
	return NULL;
}

static void *dl_fresh_locked(void *arg)
{
	(void)arg;
	dl_iterate_phdr(capture_in_loader_lock, NULL);
	return NULL;
}

static void *dl_capture_locked(void *arg)
{
	(void)arg;
	while (!atomic_load(&dl_stop))
		dl_iterate_phdr(capture_in_loader_lock, NULL);
	return NULL;
}

static void test_stack_dlopen_while_capturing_does_not_deadlock(void **state)
{
	static struct test_thread capturers[2], locked, fresh[4];
	const char *lib = unloadable_library();
	unsigned unloaded = 0;

	(void)state;
	assert_non_null(lib);
	signal(SIGALRM, on_alarm);
	alarm(DL_TIMEOUT_S);
	atomic_store(&dl_stop, 0);
	for (uintptr_t i = 0; i < LG_ARRAY_SIZE(capturers); i++)
		assert_int_equal(thread_start(&capturers[i], dl_capture, (void *)(i * 7)), 0);
	assert_int_equal(thread_start(&locked, dl_capture_locked, NULL), 0);

	for (int round = 0; round < DL_ROUNDS; round++) {
		void *h;

		for (size_t i = 0; i < LG_ARRAY_SIZE(fresh); i++)
			assert_int_equal(thread_start(&fresh[i], i % 2 ? dl_fresh_locked : dl_fresh_capture,
						      NULL), 0);
		h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
		assert_non_null(h);
		dlclose(h);
		/* Pins that the library really goes away, so the loader rewrites its lists. */
		h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
		if (h == NULL)
			unloaded++;
		else
			dlclose(h);
		for (size_t i = 0; i < LG_ARRAY_SIZE(fresh); i++)
			thread_wait(&fresh[i]);
	}
	atomic_store(&dl_stop, 1);
	for (size_t i = 0; i < LG_ARRAY_SIZE(capturers); i++)
		thread_wait(&capturers[i]);
	thread_wait(&locked);
	alarm(0);
	signal(SIGALRM, SIG_DFL);

	assert_int_equal(unloaded, DL_ROUNDS);
	assert_true(atomic_load(&dl_captures) > 0);
	assert_true(atomic_load(&dl_locked_captures) > 0);
	print_message("dlopen/dlclose of %s: %d rounds, %lu captures, %lu under the loader lock\n",
		      lib, DL_ROUNDS, atomic_load(&dl_captures), atomic_load(&dl_locked_captures));
}

/* ---------------------------------------------------------------------------------------------
 * Cost (a measurement, printed; not an assertion)
 * ------------------------------------------------------------------------------------------- */

#define COST_BATCHES 10
#define COST_ROUNDS 20000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The fastest of several batches: the machine may be busy with other work. */
static NOINLINE double cost_of_capture(uint32_t max_depth, uint32_t *depth)
{
	const uintptr_t *frames;
	double best = 1e18;

	lg_stack_init(max_depth);
	/* 13 levels of walk() give 27 frames, plus the test runner's: at least 32. */
	*depth = lg_stack_frames(walk(0, 13), &frames);   /* warm libunwind's trace cache */
	for (int b = 0; b < COST_BATCHES; b++) {
		uint64_t t0 = now_ns();

		for (int i = 0; i < COST_ROUNDS; i++)
			walk(0, 13);
		double ns = (double)(now_ns() - t0) / COST_ROUNDS;
		best = ns < best ? ns : best;
	}
	lg_stack_init(32);
	return best;
}

static NOINLINE uint32_t raw_unwind(unsigned levels)
{
	void *frames[64];

	if (levels > 0) {
		uint32_t n = raw_unwind(levels - 1);

		sink++;
		return n;
	}
	return (uint32_t)unw_backtrace(frames, 34);
}

static void test_stack_capture_cost(void **state)
{
	uint32_t depth, shallow_depth, raw_depth;
	double capture, shallow, raw = 1e18;

	(void)state;
	capture = cost_of_capture(32, &depth);
	assert_int_equal(depth, 32);
	shallow = cost_of_capture(14, &shallow_depth);
	assert_int_equal(shallow_depth, 14);

	raw_depth = raw_unwind(26);
	for (int b = 0; b < COST_BATCHES; b++) {
		uint64_t t0 = now_ns();

		for (int i = 0; i < COST_ROUNDS; i++)
			raw_unwind(26);
		double ns = (double)(now_ns() - t0) / COST_ROUNDS;
		raw = ns < raw ? ns : raw;
	}
	print_message("lg_stack_capture, warm, best of %d x %d (recursion to reach the depth "
		      "included): depth %u %.0f ns, depth %u %.0f ns; bare unw_backtrace of %u "
		      "frames %.0f ns\n",
		      COST_BATCHES, COST_ROUNDS, depth, capture, shallow_depth, shallow, raw_depth, raw);
}

/* ---------------------------------------------------------------------------------------------
 * Full table (last: it uses up every id)
 * ------------------------------------------------------------------------------------------- */

static void test_stack_full_table_returns_zero(void **state)
{
	uint32_t known, count, zeros = 0;

	(void)state;
	/* Depth 11 is exactly walk()'s 5 levels: the two captures of it below, from different lines
	 * of this function, are the same stack. */
	lg_stack_init(11);
	known = walk(7, 5);
	/* 2^18 distinct chains of 18 levels: more than the table holds (2^17 ids). */
	lg_stack_init(40);
	for (uint32_t bits = 0; bits < (1u << 18); bits++)
		if (walk(bits, 18) == 0)
			zeros++;
	count = lg_stack_count();
	assert_true(zeros > 0);
	assert_int_equal(walk(12345, 19), 0);   /* a new stack: no room */
	assert_int_equal(walk(12346, 19), 0);
	assert_int_equal(lg_stack_count(), count);
	/* Known stacks are still found, and readable. */
	lg_stack_init(11);
	assert_int_equal(walk(7, 5), known);
	lg_stack_init(32);
	const uintptr_t *frames;
	assert_true(lg_stack_frames(count, &frames) > 0);
	print_message("table full at %u stacks, %.1f MiB touched\n", count,
		      (double)lg_stack_self_bytes() / (1024.0 * 1024.0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stack_same_site_same_id),
		cmocka_unit_test(test_stack_different_sites_differ),
		cmocka_unit_test(test_stack_frames_start_at_caller),
		cmocka_unit_test(test_stack_skip_drops_innermost_frames),
		cmocka_unit_test(test_stack_depth_limit_respected),
		cmocka_unit_test(test_stack_unknown_id_has_no_frames),
		cmocka_unit_test(test_stack_self_bytes_counts_touched_pages),
		cmocka_unit_test(test_symbol_names_static_function),
		cmocka_unit_test(test_symbol_module_is_exe_with_pie_offset),
		cmocka_unit_test(test_symbol_names_libc_module),
		cmocka_unit_test(test_symbol_vdso_and_anonymous_code),
		cmocka_unit_test(test_symbol_names_survive_until_reset),
		cmocka_unit_test(test_stack_concurrent_captures_give_dense_ids),
		cmocka_unit_test(test_stack_dlopen_while_capturing_does_not_deadlock),
		cmocka_unit_test(test_stack_capture_cost),
		cmocka_unit_test(test_stack_full_table_returns_zero),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
