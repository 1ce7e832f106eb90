/* The heap guard: Poisson byte sampling, unbiased live-heap estimates per site, growth detection
 * and heap.max_bytes.
 *
 * Sampling. Each thread counts down lg_tls.heap_countdown by the bytes it allocates; the hook takes
 * the slow path here only when it goes below zero. The countdown is an exponential draw with mean
 * heap.sample_bytes, so the sampled points form a Poisson process over allocated bytes: a block of
 * s bytes is sampled with probability 1 - exp(-s/m), independently of every other block (the
 * process is memoryless, so a fresh draw after each sample loses nothing). Weighting each sample
 * by the inverse of that probability makes the per-site sums unbiased estimates of live bytes and
 * objects. sample_bytes 1 samples every allocation with weight 1: exact figures.
 *
 * The table. Sampled blocks are kept in a hash table keyed by address, split into 64 stripes each
 * behind a spinlock (only sampled events take one; never held while unwinding or allocating).
 * Each stripe is an open-addressing array of records (linear probing, backward-shift deletion: a
 * lookup is usually one cache line, where a chained table cost two or three misses per sampled
 * free), in the guard's own arena, grown by doubling outside the lock. A free must not probe the
 * table for the unsampled majority: a 64 Kibit bitmap in .bss (lg_heap_filter) has a bit set while
 * some sampled block hashes to it. All blocks of one bit live in one stripe (the bit's low 6 bits
 * are the stripe) and start their probe at one slot (while the stripe has <= 1024 slots), so the
 * bit is kept exact under that stripe's lock: a removal clears it when no record in that probe run
 * shares it.
 *
 * heap.max_bytes is checked against the sampled estimate of the live heap (an atomic touched only
 * by sampled events: a shared counter on every malloc costs 23%, DESIGN 2). So it is enforced at
 * sample points, about every sample_bytes per thread; once over the ceiling with on_max "fail",
 * a thread takes the slow path on every allocation until the estimate is back under it.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STRIPES 64u
#define SLOTS_INITIAL 8u
/* The filter bits of one stripe, above the stripe's 6: while a stripe has at most this many
 * slots, the bit determines where a record's probe starts. */
#define FILTER_SPAN (LG_HEAP_FILTER_BITS / STRIPES)
/* Past this many probe starts per bit a removal leaves the filter bit set: the table then holds
 * hundreds of thousands of samples and nearly every bit is set anyway. */
#define FILTER_MAX_SCAN 8u
/* One stripe never grows past this (2^22 slots x 64 stripes = 134 M records of 32 bytes). */
#define SLOTS_MAX (1u << 22)
/* Growth windows without report.interval_s: long enough that a service's warm-up is one or two
 * windows, short enough that a leak of a few MB a minute is named within a minute. */
#define GROWTH_DEFAULT_MS 10000u
#define PARK_FAR (INT64_MAX / 2)
/* Before the runtime is up: look again after this many bytes (a linked program that calls
 * guard_start() later joins within this; the init thread re-arms at once). */
#define PARK_UNINIT 262144

_Atomic uint64_t lg_heap_filter[LG_HEAP_FILTER_BITS / 64];
/* Every allocation sampled (sample_bytes 1): nearly every free is of a sampled block, so the
 * filter is set once to all ones and never updated. Keeping it exact there cost an atomic
 * read-modify-write on a line both threads write, on every allocation and every free. */
static bool filter_fixed;

struct rec {
	uintptr_t ptr;   /* 0: empty slot */
	uint64_t size;
	double weight;   /* 1 / P(sampled) */
	uint32_t stack;
};

struct stripe {
	_Atomic int lock;
	uint32_t cap;        /* slots, a power of two */
	uint32_t count;
	struct rec *slots;
	int64_t live;        /* sum of est_bytes over this stripe, under the lock */
} __attribute__((aligned(64)));

static struct {
	bool enabled;
	uint64_t mean;           /* heap.sample_bytes */
	uint64_t max_bytes;
	enum lg_on_max on_max;
	bool enforce;
	_Atomic int full_warned;
	_Atomic uint64_t dropped;
	/* Sum of est_bytes over the table, kept only when heap.max_bytes needs it at every sample:
	 * one shared counter touched by every sampled allocation and free of every thread made
	 * sampling every allocation 2.4x slower (cache-line ping-pong). Otherwise the stripes'
	 * own sums, each under its stripe's lock, are added up when someone asks. */
	_Atomic int64_t live_est;
	_Atomic int over_max;       /* the estimate is above max_bytes (edge for violations) */
} heap;

static struct stripe stripes[STRIPES];

static LG_TLS bool armed;      /* this thread's countdown holds a draw (not a parked value) */
static LG_TLS bool in_table;   /* holding a stripe lock: a nested hook (signal handler) stays out */

/* ---------------------------------------------------------------------------------------------
 * Sampler math
 * ------------------------------------------------------------------------------------------- */

int64_t lg_heap_draw_countdown(uint64_t mean)
{
	if (mean <= 1)
		return 0;
	/* u in (0, 1]: 53 random bits, never 0, so log(u) is finite. */
	double u = ((double)(lg_random() >> 11) + 1.0) * 0x1.0p-53;
	double x = -log(u) * (double)mean;
	return x >= 0x1.0p62 ? (INT64_C(1) << 62) : (int64_t)x;
}

double lg_heap_weight(uint64_t size, uint64_t mean)
{
	if (mean <= 1 || size == 0)
		return 1.0;
	/* P(sampled) = 1 - exp(-s/m); expm1 keeps precision when s << m. */
	double p = -expm1(-(double)size / (double)mean);
	return p > 0 ? 1.0 / p : 1.0;
}

static int64_t est_bytes(const struct rec *r)
{
	return (int64_t)(r->weight * (double)r->size + 0.5);
}

/* ---------------------------------------------------------------------------------------------
 * Stripe locks
 * ------------------------------------------------------------------------------------------- */

/* Start fetching the slot a lookup of hash h will read, before the lock is taken: the two
 * cache misses (lock line, slot line) then overlap. Unlocked, relaxed reads: at worst a stale
 * address is prefetched, which never faults. */
static inline void slot_prefetch(const struct stripe *s, uint32_t h)
{
	const struct rec *slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
	uint32_t cap = __atomic_load_n(&s->cap, __ATOMIC_RELAXED);

	if (slots)
		__builtin_prefetch(&slots[(h / STRIPES) & (cap - 1)], 1);
}

static void stripe_lock(struct stripe *s)
{
	unsigned spins = 0;

	while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire)) {
		while (atomic_load_explicit(&s->lock, memory_order_relaxed)) {
			if (++spins < 128) {
#if defined(__x86_64__) || defined(__i386__)
				__builtin_ia32_pause();
#endif
			} else {
				/* The holder may be preempted (2 cores, many threads): give it the CPU.
				 * Raw syscall: no hook of ours or anyone's on the way. */
				syscall(SYS_sched_yield);
				spins = 0;
			}
		}
	}
	in_table = true;
}

static void stripe_unlock(struct stripe *s)
{
	in_table = false;
	atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* ---------------------------------------------------------------------------------------------
 * The table (every function here runs with the stripe's lock held)
 * ------------------------------------------------------------------------------------------- */

static uint32_t home_of(const struct stripe *s, uint32_t h)
{
	return (h / STRIPES) & (s->cap - 1);
}

static uint32_t filter_bit(uintptr_t p)
{
	return lg_heap_hash((void *)p) & (LG_HEAP_FILTER_BITS - 1);
}

/* The slot holding p, or -1. The empty test comes first: free(NULL) reaches here whenever
 * NULL's filter bit happens to be set, and must not match an empty slot. */
static int64_t slot_find(const struct stripe *s, uintptr_t p, uint32_t h)
{
	uint32_t mask = s->cap - 1;

	for (uint32_t i = home_of(s, h);; i = (i + 1) & mask) {
		if (s->slots[i].ptr == 0)
			return -1;
		if (s->slots[i].ptr == p)
			return i;
	}
}

/* Place a record known to be absent (the stripe has a free slot: its load stays <= 1/2). */
static void slot_place(struct stripe *s, const struct rec *r, uint32_t h)
{
	uint32_t mask = s->cap - 1, i = home_of(s, h);

	while (s->slots[i].ptr)
		i = (i + 1) & mask;
	s->slots[i] = *r;
}

/* Is any record whose probe starts at `home` in filter bit f? They all sit in the run of full
 * slots from home on (backward-shift deletion keeps runs without holes). */
static bool run_has_bit(const struct stripe *s, uint32_t home, uint32_t f)
{
	uint32_t mask = s->cap - 1;

	for (uint32_t i = home; s->slots[i].ptr; i = (i + 1) & mask)
		if (filter_bit(s->slots[i].ptr) == f)
			return true;
	return false;
}

/* Empty slot i by backward shift (Knuth 6.4, algorithm R): later records of the run whose probe
 * starts at or before the hole move into it, so no lookup ever meets a hole before its record.
 * Then clear p's filter bit if no record of the stripe still has it. */
static void slot_remove(struct stripe *s, uint32_t i, uint32_t h)
{
	uint32_t mask = s->cap - 1, j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (s->slots[j].ptr == 0)
			break;
		uint32_t k = home_of(s, lg_heap_hash((void *)s->slots[j].ptr));
		/* Stays if its home lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		s->slots[i] = s->slots[j];
		i = j;
	}
	s->slots[i].ptr = 0;
	s->count--;

	if (filter_fixed)
		return;
	uint32_t f = h & (LG_HEAP_FILTER_BITS - 1);
	uint32_t span = s->cap > FILTER_SPAN ? s->cap / FILTER_SPAN : 1;
	if (span > FILTER_MAX_SCAN)
		return;
	for (uint32_t n = 0; n < span; n++) {
		uint32_t home = span == 1 ? home_of(s, h) : (home_of(s, h) & (FILTER_SPAN - 1)) + n * FILTER_SPAN;
		if (run_has_bit(s, home, f))
			return;
	}
	atomic_fetch_and_explicit(&lg_heap_filter[f / 64], ~(UINT64_C(1) << (f % 64)),
				  memory_order_relaxed);
}

/* Double a stripe's slots once it is half full. Allocates outside the lock. */
static void stripe_grow(struct stripe *s, uint32_t want)
{
	struct rec *fresh = lg_mem_calloc(want, sizeof(struct rec));

	if (!fresh)
		return;
	stripe_lock(s);
	if (s->cap >= want) {
		stripe_unlock(s);
		lg_mem_free(fresh);
		return;
	}
	struct rec *old = s->slots;
	uint32_t oldn = s->cap;
	/* Atomic stores: slot_prefetch and the unlocked "table exists" tests read these. */
	__atomic_store_n(&s->slots, fresh, __ATOMIC_RELAXED);
	__atomic_store_n(&s->cap, want, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < oldn; i++)
		if (old[i].ptr)
			slot_place(s, &old[i], lg_heap_hash((void *)old[i].ptr));
	stripe_unlock(s);
	lg_mem_free(old);
}

/* ---------------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------------- */

static void warn_full(void)
{
	if (!atomic_exchange(&heap.full_warned, 1))
		lg_warn("heap sample table is full; further samples are dropped, raise "
			"heap.sample_bytes");
}

/* Record a sampled block. An old record at the same address (a free that could not reach the
 * table, from a signal handler that interrupted us) is replaced. */
static void filter_set(uint32_t h)
{
	uint32_t f = h & (LG_HEAP_FILTER_BITS - 1);

	if (!filter_fixed)
		atomic_fetch_or_explicit(&lg_heap_filter[f / 64], UINT64_C(1) << (f % 64),
					 memory_order_relaxed);
}

static void record_insert(uintptr_t p, uint64_t size, uint32_t stack, double weight)
{
	uint32_t h = lg_heap_hash((void *)p);
	struct stripe *s = &stripes[h % STRIPES];
	struct rec r = { .ptr = p, .size = size, .weight = weight, .stack = stack };
	int64_t delta = est_bytes(&r);
	uint32_t grow = 0;
	bool stored = true;

	slot_prefetch(s, h);
	stripe_lock(s);
	int64_t i = slot_find(s, p, h);
	if (i >= 0) {
		delta -= est_bytes(&s->slots[i]);
		s->slots[i] = r;
		s->live += delta;
	} else if ((s->count + 1) * 2 <= s->cap) {
		slot_place(s, &r, h);
		s->count++;
		s->live += delta;
		filter_set(h);
	} else {
		stored = false;
	}
	if ((s->count + 2) * 2 > s->cap && s->cap < SLOTS_MAX)
		grow = s->cap * 2;
	stripe_unlock(s);
	if (grow)
		stripe_grow(s, grow);
	if (!stored) {
		/* Only when growing failed (or the stripe is at SLOTS_MAX): retry once. */
		stripe_lock(s);
		if ((s->count + 1) * 2 <= s->cap) {
			slot_place(s, &r, h);
			s->count++;
			s->live += delta;
			filter_set(h);
			stored = true;
		}
		stripe_unlock(s);
	}
	if (!stored) {
		atomic_fetch_add_explicit(&heap.dropped, 1, memory_order_relaxed);
		warn_full();
		return;
	}
	if (heap.max_bytes)
		atomic_fetch_add_explicit(&heap.live_est, delta, memory_order_relaxed);
}

/* Take the record of p out of the table; *out gets it if asked. false: p was not sampled. */
static bool record_take(uintptr_t p, struct rec *out)
{
	uint32_t h = lg_heap_hash((void *)p);
	struct stripe *s = &stripes[h % STRIPES];
	struct rec r;

	if (!__atomic_load_n(&s->slots, __ATOMIC_RELAXED))
		return false;
	slot_prefetch(s, h);
	stripe_lock(s);
	int64_t i = slot_find(s, p, h);
	if (i >= 0) {
		r = s->slots[i];
		slot_remove(s, (uint32_t)i, h);
		s->live -= est_bytes(&r);
	}
	stripe_unlock(s);
	if (i < 0)
		return false;
	if (heap.max_bytes) {
		int64_t now = atomic_fetch_sub_explicit(&heap.live_est, est_bytes(&r),
							memory_order_relaxed) - est_bytes(&r);
		if (now <= (int64_t)heap.max_bytes)
			atomic_store_explicit(&heap.over_max, 0, memory_order_relaxed);
	}
	if (out)
		*out = r;
	return true;
}

bool lg_heap_record_of(const void *p, uint64_t *size, uint32_t *stack)
{
	uint32_t h = lg_heap_hash(p);
	struct stripe *s = &stripes[h % STRIPES];

	if (!__atomic_load_n(&s->slots, __ATOMIC_RELAXED))
		return false;
	stripe_lock(s);
	int64_t i = slot_find(s, (uintptr_t)p, h);
	if (i >= 0) {
		*size = s->slots[i].size;
		*stack = s->slots[i].stack;
	}
	stripe_unlock(s);
	return i >= 0;
}

uint64_t lg_heap_live_bytes(void)
{
	int64_t v = 0;

	if (heap.max_bytes) {
		v = atomic_load_explicit(&heap.live_est, memory_order_relaxed);
	} else {
		/* A moment's sum without the locks: each stripe's figure is read whole. */
		for (unsigned i = 0; i < STRIPES; i++)
			v += __atomic_load_n(&stripes[i].live, __ATOMIC_RELAXED);
	}
	return v > 0 ? (uint64_t)v : 0;
}

/* ---------------------------------------------------------------------------------------------
 * heap.max_bytes
 * ------------------------------------------------------------------------------------------- */

static bool refuse_over_max(size_t size)
{
	if (!heap.max_bytes || !heap.enforce || heap.on_max != LG_ON_MAX_FAIL)
		return false;
	int64_t live = atomic_load_explicit(&heap.live_est, memory_order_relaxed);
	return (uint64_t)(live > 0 ? live : 0) + size > heap.max_bytes;
}

/* After a sample raised the estimate: a heap.max violation when it crosses the ceiling. */
static void check_over_max(uint32_t stack)
{
	if (!heap.max_bytes)
		return;
	int64_t live = atomic_load_explicit(&heap.live_est, memory_order_relaxed);
	if (live <= (int64_t)heap.max_bytes || atomic_exchange(&heap.over_max, 1))
		return;
	lg_violation("heap.max", stack);
	if (heap.enforce && heap.on_max == LG_ON_MAX_ABORT) {
		lg_error("live heap (estimated %lld bytes) exceeds heap.max_bytes %llu; aborting as "
			 "heap.on_max says", (long long)live, (unsigned long long)heap.max_bytes);
		lg_report_write("exit");
		abort();
	}
}

/* ---------------------------------------------------------------------------------------------
 * The slow paths
 * ------------------------------------------------------------------------------------------- */

static void *do_alloc(enum lg_heap_op op, size_t arg, size_t size)
{
	switch (op) {
	case LG_HEAP_CALLOC: return lg_alloc.calloc(arg, size);
	case LG_HEAP_MEMALIGN: return lg_alloc.memalign(arg, size);
	default: return lg_alloc.malloc(size);
	}
}

/* Whether the guard may sample on this thread now; if not, park the countdown suitably. */
static bool may_sample(size_t size)
{
	int st = lg_state();

	if (LG_LIKELY(st == LG_READY && heap.enabled && !lg_tls.busy && !in_table))
		return true;
	if (st == LG_READY && heap.enabled) {
		/* The guard's own allocation (or one from inside our lock): not the program's, so
		 * it does not count towards the next sample. */
		if (heap.mean <= 1)
			lg_tls.heap_countdown = -1;   /* every allocation: malloc(0) included */
		else if (armed)
			lg_tls.heap_countdown += (int64_t)size;
		else
			lg_tls.heap_countdown = 0;
	} else if (st == LG_UNINIT || st == LG_BOOTING) {
		armed = false;
		lg_tls.heap_countdown = st == LG_BOOTING ? 0 : PARK_UNINIT;
	} else {
		armed = false;
		lg_tls.heap_countdown = PARK_FAR;
	}
	return false;
}

/* The countdown (already lowered by size) went below zero, or realloc asks: is this block
 * sampled? Re-arms the countdown. */
static bool decide(size_t size)
{
	int64_t cd = lg_tls.heap_countdown;
	bool sampled;

	if (heap.mean <= 1) {
		/* Every allocation, malloc(0) included: keep the countdown negative. */
		lg_tls.heap_countdown = -1;
		return true;
	}
	if (!armed) {
		/* A thread's first look (or after a pause): place the next sample point as if the
		 * countdown had been drawn before this block. Memoryless, so unbiased. */
		armed = true;
		cd = lg_heap_draw_countdown(heap.mean) - (int64_t)size;
	}
	sampled = cd < 0;
	if (sampled)
		cd = lg_heap_draw_countdown(heap.mean);
	lg_tls.heap_countdown = cd;
	return sampled;
}

/* Refused by heap.max_bytes (on_max fail): this thread checks every allocation until the
 * estimate is back under the ceiling. Inlined, so the stack it captures skips the same frames. */
static inline __attribute__((always_inline)) void *refuse(void)
{
	if (!atomic_exchange(&heap.over_max, 1)) {
		uint32_t stack = lg_stack_capture(2);
		lg_violation("heap.max", stack);
	}
	armed = false;
	lg_tls.heap_countdown = -1;
	errno = ENOMEM;
	return NULL;
}

void *lg_heap_alloc_slow(enum lg_heap_op op, size_t arg, size_t size)
{
	size_t total = size;

	if (op == LG_HEAP_CALLOC && __builtin_mul_overflow(arg, size, &total))
		total = SIZE_MAX;
	if (!may_sample(total))
		return do_alloc(op, arg, size);

	int saved = errno;
	bool sampled = decide(total);
	if (LG_UNLIKELY(refuse_over_max(total)))
		return refuse();
	void *p = do_alloc(op, arg, size);
	if (!p || !sampled)
		return p;
	/* Skip this function and the hook: the first frame is the caller of malloc. */
	uint32_t stack = lg_stack_capture(2);
	record_insert((uintptr_t)p, total, stack, lg_heap_weight(total, heap.mean));
	check_over_max(stack);
	errno = saved;
	return p;
}

/* realloc keeps its sampling unbiased by treating the new block as a new allocation of the new
 * size (sampled with probability 1 - exp(-size/m), by the countdown). If the old block was
 * sampled and the new one is too, the record moves to the new address and keeps the stack of the
 * block's first allocation; with every allocation sampled, records therefore always move. */
void *lg_heap_realloc_slow(void *p, size_t size)
{
	struct rec old;
	bool had = lg_heap_maybe_sampled(p) && !in_table && record_take((uintptr_t)p, &old);

	if (!may_sample(size)) {
		void *q = lg_alloc.realloc(p, size);
		if (had && !q && size)
			record_insert((uintptr_t)p, old.size, old.stack, old.weight);
		return q;
	}
	int saved = errno;
	bool sampled = decide(size);
	if (LG_UNLIKELY(refuse_over_max(size) && size > (had ? old.size : 0))) {
		if (had)
			record_insert((uintptr_t)p, old.size, old.stack, old.weight);
		return refuse();
	}
	void *q = lg_alloc.realloc(p, size);
	if (!q) {
		/* size 0 freed p; otherwise the realloc failed and p, still live, keeps its record. */
		if (had && size) {
			int e = errno;
			record_insert((uintptr_t)p, old.size, old.stack, old.weight);
			errno = e;
		}
		return NULL;
	}
	if (!sampled) {
		errno = saved;
		return q;
	}
	uint32_t stack = had ? old.stack : lg_stack_capture(2);
	record_insert((uintptr_t)q, size, stack, lg_heap_weight(size, heap.mean));
	check_over_max(stack);
	errno = saved;
	return q;
}

void lg_heap_on_free(void *p)
{
	/* Frees always reach the table, busy or not: a record left behind would be a false leak.
	 * Only a free from inside our own lock (a signal handler) cannot. */
	if (LG_UNLIKELY(in_table))
		return;
	int saved = errno;
	record_take((uintptr_t)p, NULL);
	errno = saved;
}

/* ---------------------------------------------------------------------------------------------
 * Per-site aggregation (snapshots and growth windows)
 * ------------------------------------------------------------------------------------------- */

struct site_sum {
	int64_t bytes;
	double objects;
};

/* Sum the table by stack id into an array of *n entries (ids past the end count as id 0). */
static struct site_sum *aggregate(uint32_t *n)
{
	uint32_t cap = lg_stack_count() + 1024;
	struct site_sum *sum = lg_mem_calloc(cap, sizeof(*sum));

	*n = 0;
	if (!sum)
		return NULL;
	for (uint32_t k = 0; k < STRIPES; k++) {
		struct stripe *s = &stripes[k];
		if (!__atomic_load_n(&s->slots, __ATOMIC_RELAXED))
			continue;
		stripe_lock(s);
		for (uint32_t i = 0; i < s->cap; i++) {
			const struct rec *r = &s->slots[i];
			if (!r->ptr)
				continue;
			uint32_t id = r->stack < cap ? r->stack : 0;
			sum[id].bytes += est_bytes(r);
			sum[id].objects += r->weight;
		}
		stripe_unlock(s);
	}
	*n = cap;
	return sum;
}

/* ---------------------------------------------------------------------------------------------
 * Growth windows
 * ------------------------------------------------------------------------------------------- */

struct growth_site {
	int64_t prev;        /* live bytes at the previous window */
	int64_t bytes;       /* at the last window */
	uint32_t streak;     /* consecutive windows of growth */
	uint32_t windows;    /* the longest streak, once a suspect */
	bool seen;
	bool suspect;
};

static pthread_mutex_t growth_lock = PTHREAD_MUTEX_INITIALIZER;
static struct growth_site *growth;
static uint32_t growth_n;

/* Growth beyond sampling noise. A site's estimate moves by at least one sample weight (>= m
 * bytes) whenever a sampled block comes or goes, and its spread is about sqrt(m * bytes) (a
 * Poisson count of samples scaled by m), so a steady site with churn must not count as growing:
 * a window grows when it adds more than m + 2 * sqrt(m * previous). Exact (m = 1): any growth. */
static bool grew(int64_t prev, int64_t cur)
{
	if (heap.mean <= 1)
		return cur > prev;
	double m = (double)heap.mean;
	return (double)(cur - prev) > m + 2.0 * sqrt(m * (double)(prev > 0 ? prev : 0));
}

void lg_heap_tick(uint64_t now_ns)
{
	uint32_t n;

	(void)now_ns;
	if (!heap.enabled)
		return;
	struct site_sum *sum = aggregate(&n);
	if (!sum)
		return;
	LG_REAL(pthread_mutex_lock)(&growth_lock);
	if (n > growth_n) {
		struct growth_site *g = lg_mem_realloc(growth, n * sizeof(*g));
		if (g) {
			memset(g + growth_n, 0, (n - growth_n) * sizeof(*g));
			growth = g;
			growth_n = n;
		}
	}
	/* Id 0 (no stack) is not a site. */
	for (uint32_t id = 1; id < growth_n; id++) {
		struct growth_site *g = &growth[id];
		int64_t cur = id < n ? sum[id].bytes : 0;

		/* The first window a site is seen in is its baseline, not growth from nothing: a
		 * service warming up is not leaking. */
		if (!g->seen) {
			if (cur > 0) {
				g->seen = true;
				g->prev = g->bytes = cur;
			}
			continue;
		}
		g->streak = grew(g->prev, cur) ? g->streak + 1 : 0;
		g->prev = g->bytes = cur;
		if (g->streak >= lg_policy.heap.growth_windows) {
			if (g->streak > g->windows)
				g->windows = g->streak;
			if (!g->suspect) {
				g->suspect = true;
				lg_violation("heap.growth", id);
			}
		}
	}
	LG_REAL(pthread_mutex_unlock)(&growth_lock);
	lg_mem_free(sum);
}

/* ---------------------------------------------------------------------------------------------
 * Snapshot
 * ------------------------------------------------------------------------------------------- */

static int by_bytes_desc(const void *a, const void *b)
{
	const struct lg_snap_heap_site *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

int lg_heap_snapshot(struct lg_snapshot *s)
{
	struct lg_snap_heap *h = &s->heap;
	uint32_t n, nsites = 0;

	if (!heap.enabled)
		return 0;
	h->present = true;
	h->backend = lg_alloc_backend_name();
	h->sample_bytes = heap.mean;
	h->allocated_bytes = lg_alloc_allocated_bytes();

	struct site_sum *sum = aggregate(&n);
	if (!sum)
		return -ENOMEM;
	for (uint32_t id = 0; id < n; id++)
		nsites += sum[id].objects > 0;
	h->live = lg_snapshot_alloc(s, (nsites ? nsites : 1) * sizeof(*h->live));
	for (uint32_t id = 0; h->live && id < n; id++) {
		if (sum[id].objects <= 0)
			continue;
		h->live[h->nlive++] = (struct lg_snap_heap_site){
			.stack = id,
			.bytes = sum[id].bytes > 0 ? (uint64_t)sum[id].bytes : 0,
			.objects = (uint64_t)llround(sum[id].objects),
		};
	}
	lg_mem_free(sum);
	if (h->live)
		qsort(h->live, h->nlive, sizeof(*h->live), by_bytes_desc);

	LG_REAL(pthread_mutex_lock)(&growth_lock);
	uint32_t nsus = 0;
	for (uint32_t id = 1; id < growth_n; id++)
		nsus += growth[id].suspect;
	h->suspects = lg_snapshot_alloc(s, (nsus ? nsus : 1) * sizeof(*h->suspects));
	for (uint32_t id = 1; h->suspects && id < growth_n; id++) {
		if (!growth[id].suspect)
			continue;
		h->suspects[h->nsuspects++] = (struct lg_snap_heap_suspect){
			.stack = id,
			.bytes = growth[id].bytes > 0 ? (uint64_t)growth[id].bytes : 0,
			.windows = growth[id].windows,
		};
	}
	LG_REAL(pthread_mutex_unlock)(&growth_lock);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Init and fork
 * ------------------------------------------------------------------------------------------- */

/* fork: the child's heap is a copy of the parent's, so it keeps the records; it must not inherit
 * a lock held by a thread that does not exist in it. Order: growth lock, then the stripes (a
 * growth window holds the first while it takes the second). pthread_atfork runs this prepare
 * after the runtime's (which takes the report lock, taken before both by a report). */
static void atfork_prepare(void)
{
	LG_REAL(pthread_mutex_lock)(&growth_lock);
	for (uint32_t k = 0; k < STRIPES; k++)
		stripe_lock(&stripes[k]);
}

static void atfork_release(void)
{
	for (uint32_t k = 0; k < STRIPES; k++)
		stripe_unlock(&stripes[k]);
	LG_REAL(pthread_mutex_unlock)(&growth_lock);
}

static void atfork_child_unlock(void)
{
	for (uint32_t k = 0; k < STRIPES; k++)
		stripe_unlock(&stripes[k]);
	pthread_mutex_init(&growth_lock, NULL);
}

/* The registered .atfork_child: the child's growth history starts afresh (its violations do). */
static void heap_atfork_child(void)
{
	for (uint32_t id = 0; id < growth_n; id++)
		growth[id] = (struct growth_site){ 0 };
}

static void heap_init(void)
{
	static bool atfork_done;

	heap.enabled = false;
	heap.mean = lg_policy.heap.sample_bytes ? lg_policy.heap.sample_bytes : 1;
	heap.max_bytes = lg_policy.heap.max_bytes;
	heap.on_max = lg_policy.heap.on_max;
	heap.enforce = lg_enforcing();
	if (!lg_policy.heap.enabled)
		return;
	for (uint32_t k = 0; k < STRIPES; k++) {
		if (stripes[k].slots)
			continue;
		struct rec *slots = lg_mem_calloc(SLOTS_INITIAL, sizeof(struct rec));
		if (!slots) {
			lg_warn("cannot allocate the heap sample table; the heap guard is off");
			return;
		}
		__atomic_store_n(&stripes[k].cap, SLOTS_INITIAL, __ATOMIC_RELAXED);
		__atomic_store_n(&stripes[k].slots, slots, __ATOMIC_RELAXED);
	}
	/* The filter lives in .bss: count it once, as if it were resident. */
	lg_mem_account_mmap(sizeof(lg_heap_filter));
	if (heap.mean == 1) {
		filter_fixed = true;
		for (size_t w = 0; w < LG_ARRAY_SIZE(lg_heap_filter); w++)
			atomic_store_explicit(&lg_heap_filter[w], ~UINT64_C(0), memory_order_relaxed);
	}
	if (!atfork_done) {
		pthread_atfork(atfork_prepare, atfork_release, atfork_child_unlock);
		atfork_done = true;
	}
	uint32_t period_ms = lg_policy.report.interval_s ? lg_policy.report.interval_s * 1000u
							 : GROWTH_DEFAULT_MS;
	lg_guardian_every("heap-growth", period_ms, lg_heap_tick);
	heap.enabled = true;
	/* This thread's allocations before READY parked its countdown; arm it at the next one. */
	armed = false;
	lg_tls.heap_countdown = 0;
}

LG_GUARD(heap, .order = 10, .init = heap_init, .atfork_child = heap_atfork_child,
	 .snapshot = lg_heap_snapshot);
