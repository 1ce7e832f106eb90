/* The heap guard: Poisson byte sampling, unbiased live-heap estimates per site and
 * heap.max_bytes. Growth windows and the report's heap section are in heap_report.c, which reads
 * the per-site sums through lg_heap_aggregate.
 *
 * Sampling. Each thread counts down lg_tls.heap_countdown by the bytes it allocates; the hook takes
 * the slow path here only when it goes below zero. The countdown is an exponential draw with mean
 * heap.sample_bytes, so the sampled points form a Poisson process over allocated bytes: a block of
 * s bytes is sampled with probability 1 - exp(-s/m), independently of every other block (the
 * process is memoryless, so a fresh draw after each sample loses nothing). Weighting each sample
 * by the inverse of that probability makes the per-site sums unbiased estimates of live bytes and
 * objects. sample_bytes 1 samples every allocation with weight 1: exact figures.
 *
 * Sampled blocks. A sampled allocation is made in the guard's arena (mem.c), whose extents all lie
 * in one reserved, size-aligned address range, with a 16-byte header in front of the program's
 * pointer: the requested size, the stack id, the header's offset from the block's start (16, or
 * the alignment asked for). So a free needs no table: "p is in the range" (a mask and a compare,
 * lg_heap_in_region) says it is sampled, and the header says what to take off which site. Nothing
 * else of the program's ever lands in that range: the program's own blocks come from jemalloc's
 * automatic arenas (or glibc), and a sampled block never enters a thread cache of theirs.
 *
 * Sites. Live estimates are kept per stack id as sums of (bytes, objects) in shards. When nearly
 * every allocation is sampled, each thread has a shard of its own that only it writes, with plain
 * adds (ten locked adds per malloc and free, or two threads adding to one site's line, cost more
 * than all the rest of the bookkeeping); a thread that exits leaves its sums to a shared shard.
 * Otherwise one shared shard takes atomic adds (they are rare). Frees subtract on the shard of the
 * thread that frees; a site's figure is the sum over shards. There is no list of blocks: a report
 * reads the sums.
 *
 * heap.max_bytes is checked against the sampled estimate of the live heap at sample points
 * (about every sample_bytes per thread; a shared counter on every malloc costs 23%, DESIGN 2);
 * once over the ceiling with on_max "fail", a thread takes the slow path on every allocation until
 * the estimate is back under it.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Growth windows without report.interval_s: long enough that a service's warm-up is one or two
 * windows, short enough that a leak of a few MB a minute is named within a minute. */
#define GROWTH_DEFAULT_MS 10000u
#define PARK_FAR (INT64_MAX / 2)
/* Before the runtime is up: look again after this many bytes (a linked program that calls
 * guard_start() later joins within this; the init thread re-arms at once). */
#define PARK_UNINIT 262144

#define HDR 16u
#define HDR_MAGIC 0x6c67u
#define OVER8_NONE 255u   /* the overhead does not fit in hdr.over8: computed again at free */
/* Sampling this dense or denser: a shard and a thread cache per thread for the sampled blocks
 * (without a cache, each sampled block takes the arena's bin lock). */
#define DENSE_MEAN 16384u
/* Sites (stack ids) per counter chunk; stack ids beyond SITES_MAX count at site 0. */
#define CHUNK_SHIFT 8u
#define SITES_MAX (1u << 17)
#define OBJ_ONE 65536.0        /* objects are summed in fixed point */
#define NO_SITE UINT32_MAX     /* a header whose site could not be counted */
#define ALIGN_MAX 65536u       /* over-aligned beyond this: not sampled (counted as dropped) */

struct hdr {
	uint64_t size;      /* what the program asked for */
	uint32_t stack;     /* the site: the stack of the block's first allocation */
	uint8_t off_log2;   /* the program's pointer is at the block's start + 1 << off_log2 */
	uint8_t over8;      /* lg_heap_block_overhead / 8 as counted, or OVER8_NONE */
	uint16_t magic;
};

struct site {
	_Atomic int64_t bytes;     /* estimated live bytes */
	_Atomic int64_t objects;   /* estimated live objects, x OBJ_ONE */
};

struct shard {
	_Atomic int64_t live;      /* estimated live bytes, all sites */
	_Atomic int64_t overhead;  /* header and size-class rounding of the live sampled blocks */
	bool owned;                /* written by one thread only: plain adds */
	struct shard *next;        /* on the list of shards (under shards_lock) */
	_Atomic(struct site *) chunks[SITES_MAX >> CHUNK_SHIFT];
};

/* A thread's own state with dense sampling: its shard and its thread cache. */
struct tstate {
	struct shard shard;
	int tcache;                /* jemalloc's index + 1; 0: none */
};

static struct {
	bool enabled;
	uint64_t mean;           /* heap.sample_bytes */
	uint64_t max_bytes;
	enum lg_on_max on_max;
	bool enforce;
	bool dense;
	int flags;               /* mallocx flags of the guard's arena, -1: cannot sample */
	pthread_key_t key;       /* a thread's struct tstate, torn down at its exit */
	bool have_key;
	_Atomic int full_warned;
	_Atomic int bad_free_warned;
	_Atomic int64_t live_est;   /* estimated live bytes, kept only with heap.max_bytes */
	_Atomic uint64_t dropped;
	_Atomic int over_max;    /* the estimate is above max_bytes (edge for violations) */
} heap = { .flags = -1 };

/* The shared shard heads the list; threads' shards follow it. */
static struct shard shared;
static struct shard *shards_head = &shared;
static pthread_mutex_t shards_lock = PTHREAD_MUTEX_INITIALIZER;

static LG_TLS bool armed;      /* this thread's countdown holds a draw (not a parked value) */
/* Dense sampling: this thread's state; (struct tstate *)-1 while it cannot have one. */
static LG_TLS struct tstate *self;

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

/* ---------------------------------------------------------------------------------------------
 * Sites
 * ------------------------------------------------------------------------------------------- */

/* The counters of site id in shard sh; NULL if their chunk cannot be had (make: allocate it). */
static inline __attribute__((always_inline)) struct site *site_at(struct shard *sh, uint32_t id, bool make)
{
	if (id >= SITES_MAX)
		id = 0;
	_Atomic(struct site *) *slot = &sh->chunks[id >> CHUNK_SHIFT];
	struct site *c = atomic_load_explicit(slot, memory_order_acquire);

	if (!c && make) {
		struct site *fresh = lg_mem_calloc((size_t)1 << CHUNK_SHIFT, sizeof(struct site));
		struct site *expected = NULL;
		if (!fresh)
			return NULL;
		if (atomic_compare_exchange_strong(slot, &expected, fresh))
			c = fresh;
		else {
			lg_mem_free(fresh);
			c = expected;
		}
	}
	return c ? &c[id & ((1u << CHUNK_SHIFT) - 1)] : NULL;
}

/* Add d to a counter: a plain add on a shard only this thread writes (readers take relaxed loads
 * of whole words), an atomic one on the shared shard. */
static inline void counter_add(const struct shard *sh, _Atomic int64_t *c, int64_t d)
{
	if (sh->owned)
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
				      memory_order_relaxed);
	else
		atomic_fetch_add_explicit(c, d, memory_order_relaxed);
}

static void shard_fold(struct shard *into, struct shard *from);
static void tstate_exit(void *v);

static struct tstate *tstate_make(void);

/* This thread's state (dense sampling), made at its first sampled event; NULL: use the shared
 * shard and no thread cache. Inlined, as are may_sample, decide and site_at: with every
 * allocation sampled, these calls' frames were 3% of the run. */
static inline __attribute__((always_inline)) struct tstate *tstate_get(void)
{
	if (LG_LIKELY(self != NULL))
		return self == (struct tstate *)-1 ? NULL : self;
	return tstate_make();
}

static __attribute__((noinline)) struct tstate *tstate_make(void)
{
	self = (struct tstate *)-1;
	if (!heap.dense || !heap.have_key)
		return NULL;
	struct tstate *t = lg_mem_calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->shard.owned = true;
	lg_enter();
	t->tcache = lg_heap_tcache_create();
	if (pthread_setspecific(heap.key, t) != 0) {
		lg_heap_tcache_destroy(t->tcache);
		lg_leave();
		lg_mem_free(t);
		return NULL;
	}
	LG_REAL(pthread_mutex_lock)(&shards_lock);
	t->shard.next = shared.next;
	shared.next = &t->shard;
	LG_REAL(pthread_mutex_unlock)(&shards_lock);
	lg_leave();
	self = t;
	return t;
}

/* Thread exit (the key's destructor): its sums go to the shared shard, its cache to jemalloc. A
 * destructor of the program's that runs after this one and frees a sampled block uses the
 * shared shard. */
static void tstate_exit(void *v)
{
	struct tstate *t = v;

	self = (struct tstate *)-1;
	lg_enter();
	lg_heap_tcache_destroy(t->tcache);
	LG_REAL(pthread_mutex_lock)(&shards_lock);
	for (struct shard **pp = &shared.next; *pp; pp = &(*pp)->next) {
		if (*pp == &t->shard) {
			*pp = t->shard.next;
			break;
		}
	}
	shard_fold(&shared, &t->shard);
	LG_REAL(pthread_mutex_unlock)(&shards_lock);
	for (size_t c = 0; c < LG_ARRAY_SIZE(t->shard.chunks); c++)
		lg_mem_free(atomic_load(&t->shard.chunks[c]));
	lg_mem_free(t);
	lg_leave();
}

/* Add from's sums into into (the shared shard, under shards_lock). */
static void shard_fold(struct shard *into, struct shard *from)
{
	atomic_fetch_add(&into->live, atomic_load(&from->live));
	atomic_fetch_add(&into->overhead, atomic_load(&from->overhead));
	for (uint32_t c = 0; c < LG_ARRAY_SIZE(from->chunks); c++) {
		struct site *src = atomic_load(&from->chunks[c]);
		if (!src)
			continue;
		for (uint32_t i = 0; i < (1u << CHUNK_SHIFT); i++) {
			int64_t b = atomic_load_explicit(&src[i].bytes, memory_order_relaxed);
			int64_t o = atomic_load_explicit(&src[i].objects, memory_order_relaxed);
			if (!b && !o)
				continue;
			struct site *dst = site_at(into, (c << CHUNK_SHIFT) + i, true);
			if (!dst)
				continue;   /* out of memory: that site's figure is lost, not wrong */
			atomic_fetch_add(&dst->bytes, b);
			atomic_fetch_add(&dst->objects, o);
		}
	}
}

/* Add (sign 1) or take off (sign -1) a sampled block's estimate, on t's shard (op_begin) or the
 * shared one. A block whose site could not be counted when it was sampled (NO_SITE) counts only
 * in the totals. */
static void account(struct tstate *t, struct hdr *h, int sign)
{
	struct shard *sh = t ? &t->shard : &shared;
	int64_t b = (int64_t)h->size, objects = (int64_t)OBJ_ONE;

	/* Every allocation sampled: a weight of exactly 1, and no floating point. */
	if (heap.mean > 1) {
		double w = lg_heap_weight(h->size, heap.mean);
		b = (int64_t)(w * (double)h->size + 0.5);
		objects = (int64_t)(w * OBJ_ONE + 0.5);
	}
	b *= sign;
	objects *= sign;

	if (h->stack != NO_SITE) {
		/* A free may land on a shard that never counted this site (the block was sampled on
		 * another thread's shard, or this thread's state is gone): the chunk is made then. */
		struct site *st = site_at(sh, h->stack, true);
		if (st) {
			counter_add(sh, &st->bytes, b);
			counter_add(sh, &st->objects, objects);
		} else if (sign > 0) {
			h->stack = NO_SITE;
		}
	}
	counter_add(sh, &sh->live, b);
	/* heap.max_bytes asks at every sample: one shared atomic then, not a walk of the shards. */
	if (heap.max_bytes)
		atomic_fetch_add_explicit(&heap.live_est, b, memory_order_relaxed);
	/* Counted when the block is made, kept for its free (the same figure, computed once). */
	int64_t over;
	if (sign > 0) {
		over = lg_heap_block_overhead(h->size, h->off_log2);
		h->over8 = over >= 0 && over % 8 == 0 && over / 8 < OVER8_NONE ? (uint8_t)(over / 8)
									      : OVER8_NONE;
	} else {
		over = h->over8 != OVER8_NONE ? (int64_t)h->over8 * 8
					     : lg_heap_block_overhead(h->size, h->off_log2);
	}
	counter_add(sh, &sh->overhead, over * sign);
}

/* The sum of one total over every shard. */
static int64_t shards_sum(size_t field)
{
	int64_t v = 0;

	LG_REAL(pthread_mutex_lock)(&shards_lock);
	for (struct shard *sh = shards_head; sh; sh = sh->next)
		v += atomic_load_explicit((_Atomic int64_t *)((char *)sh + field), memory_order_relaxed);
	LG_REAL(pthread_mutex_unlock)(&shards_lock);
	return v;
}

uint64_t lg_heap_live_bytes(void)
{
	int64_t v = shards_sum(offsetof(struct shard, live));
	return v > 0 ? (uint64_t)v : 0;
}

uint64_t lg_heap_sampled_overhead(void)
{
	int64_t v = shards_sum(offsetof(struct shard, overhead));
	return v > 0 ? (uint64_t)v : 0;
}

uint64_t lg_heap_self_bytes(void)
{
	return lg_heap_sampled_overhead() + lg_heap_tcache_bytes();
}

/* ---------------------------------------------------------------------------------------------
 * Sampled blocks
 * ------------------------------------------------------------------------------------------- */

static inline struct hdr *hdr_of(const void *p)
{
	return (struct hdr *)((uintptr_t)p - HDR);
}

static inline void *block_of(const void *p, const struct hdr *h)
{
	return (void *)((uintptr_t)p - ((uintptr_t)1 << h->off_log2));
}

/* A thread inside a sampled block's allocation, free or resize. */
static LG_TLS volatile sig_atomic_t in_op;

/* Begin an operation on sampled blocks: this thread's own state (dense sampling), or NULL for the
 * shared shard and no thread cache. NULL as well when the operation interrupts another on the
 * same thread -- a signal handler that frees a sampled block: the plain adds on the thread's
 * shard and its thread cache are not reentrant (an update would be lost, the cache corrupted).
 * Returns with *entered set if op_end must close it. */
static struct tstate *op_begin(bool *entered)
{
	*entered = false;
	if (!heap.dense || in_op)
		return NULL;
	in_op = 1;
	*entered = true;
	__asm__ volatile("" ::: "memory");
	return tstate_get();
}

static void op_end(bool entered)
{
	__asm__ volatile("" ::: "memory");
	if (entered)
		in_op = 0;
}

/* mallocx flags for sampled blocks: the guard's arena, and with dense sampling the thread's own
 * cache (t); otherwise none, so no sampled block ever sits in a cache that serves the program's
 * own mallocs. */
static int block_flags(const struct tstate *t)
{
	if (!t || !t->tcache)
		return heap.flags | MALLOCX_TCACHE_NONE;
	return heap.flags | MALLOCX_TCACHE(t->tcache - 1);
}

static void warn_full(void)
{
	if (!atomic_exchange(&heap.full_warned, 1))
		lg_warn("the heap guard's address range (%zu MiB%s) is full: sampled blocks that do "
			"not fit are made unsampled and counted in heap.dropped_samples, so the "
			"estimates undercount", lg_mem_region_bytes() >> 20,
			lg_mem_region_bytes() < ((size_t)64 << 30) ? ", an eighth of RLIMIT_AS" : "");
}

/* A sampled block of size bytes (align 0: malloc's), or NULL: the caller then makes it unsampled,
 * and the report counts it in dropped_samples. */
static void *block_alloc(size_t size, size_t align, bool zero, uint32_t stack)
{
	unsigned off_log2 = align > HDR ? (unsigned)__builtin_ctzl(align) : 4;
	size_t total;

	/* Past ALIGN_MAX a header that far in front would cost more than the block. */
	if (align > ALIGN_MAX || __builtin_add_overflow(size, (size_t)1 << off_log2, &total)) {
		atomic_fetch_add_explicit(&heap.dropped, 1, memory_order_relaxed);
		return NULL;
	}
	bool entered;
	struct tstate *t = op_begin(&entered);
	int flags = block_flags(t) | (zero ? MALLOCX_ZERO : 0) |
		    (align > HDR ? MALLOCX_LG_ALIGN(off_log2) : 0);
	char *b = mallocx(total, flags);
	if (!b) {
		op_end(entered);
		/* A full range drops the sample (the block is made unsampled); any other failure
		 * (an impossible size) is the allocator's answer to the program as well. */
		if (lg_mem_region_full()) {
			atomic_fetch_add_explicit(&heap.dropped, 1, memory_order_relaxed);
			warn_full();
		}
		return NULL;
	}
	void *p = b + ((size_t)1 << off_log2);
	struct hdr *h = hdr_of(p);
	*h = (struct hdr){ .size = size, .stack = stack, .off_log2 = (uint8_t)off_log2,
			   .magic = HDR_MAGIC };
	account(t, h, 1);
	op_end(entered);
	return p;
}

/* Free a sampled block. */
void lg_heap_free(void *p)
{
	struct hdr *h = hdr_of(p);
	int saved = errno;

	if (LG_UNLIKELY(h->magic != HDR_MAGIC)) {
		/* Freed already (or never ours): freeing it again would corrupt the arena and take
		 * its estimate off twice. It is left alone, and said once. */
		if (!atomic_exchange(&heap.bad_free_warned, 1))
			lg_warn("free of a sampled block that is not live (double free?) at %p; ignored",
				p);
		return;
	}
	bool entered;
	struct tstate *t = op_begin(&entered);
	account(t, h, -1);
	h->magic = 0;
	/* Sized: with a thread cache, jemalloc then needs no lookup of the block's extent. */
	int flags = block_flags(t) | (h->off_log2 > 4 ? MALLOCX_LG_ALIGN(h->off_log2) : 0);
	sdallocx(block_of(p, h), h->size + ((size_t)1 << h->off_log2), flags);
	op_end(entered);
	errno = saved;
}

size_t lg_heap_usable_size(void *p)
{
	struct hdr *h = hdr_of(p);

	return sallocx(block_of(p, h), 0) - ((size_t)1 << h->off_log2);
}

/* Copy a sampled block's bytes into q (what the program may have used: its usable size, as
 * glibc allows, up to size) and free it. */
static void block_move_out(void *p, void *q, size_t size)
{
	size_t have = lg_heap_usable_size(p);

	memcpy(q, p, have < size ? have : size);
	lg_heap_free(p);
}

/* Resize a sampled block, which stays sampled at its site. NULL (p intact) if it cannot. */
static void *block_resize(void *p, size_t size)
{
	struct hdr *h = hdr_of(p), old = *h;
	size_t total;

	if (h->off_log2 == 4 && !__builtin_add_overflow(size, HDR, &total)) {
		/* The header moves with the block. Mark the old one dead first: after a move its
		 * memory is free. */
		bool entered;
		struct tstate *t = op_begin(&entered);
		account(t, h, -1);
		h->magic = 0;
		char *b = rallocx(block_of(p, h), total, block_flags(t));
		if (!b) {
			h->magic = HDR_MAGIC;
			account(t, h, 1);
			op_end(entered);
			return NULL;
		}
		void *q = b + HDR;
		struct hdr *nh = hdr_of(q);
		*nh = old;
		nh->size = size;
		account(t, nh, 1);
		op_end(entered);
		return q;
	}
	/* Over-aligned: a fresh block of malloc's alignment, as realloc promises no more. */
	void *q = block_alloc(size, 0, false, old.stack);
	if (!q)
		return NULL;
	block_move_out(p, q, size);
	return q;
}

/* realloc of a sampled block: resized in the range if it can be, else moved to the program's
 * allocator (the range may be full, or capped by RLIMIT_AS). NULL + ENOMEM: p is intact. */
static void *sampled_realloc(void *p, size_t size)
{
	void *q = block_resize(p, size);

	if (q)
		return q;
	q = lg_alloc.malloc(size);
	if (!q) {
		errno = ENOMEM;
		return NULL;
	}
	block_move_out(p, q, size);
	return q;
}

bool lg_heap_record_of(const void *p, uint64_t *size, uint32_t *stack)
{
	if (!lg_heap_in_region(p) || hdr_of(p)->magic != HDR_MAGIC)
		return false;
	*size = hdr_of(p)->size;
	*stack = hdr_of(p)->stack;
	return true;
}

/* ---------------------------------------------------------------------------------------------
 * heap.max_bytes
 * ------------------------------------------------------------------------------------------- */

static uint64_t live_for_max(void)
{
	int64_t v = atomic_load_explicit(&heap.live_est, memory_order_relaxed);
	return v > 0 ? (uint64_t)v : 0;
}

static bool refuse_over_max(size_t size)
{
	if (!heap.max_bytes || !heap.enforce || heap.on_max != LG_ON_MAX_FAIL)
		return false;
	if (live_for_max() + size <= heap.max_bytes) {
		atomic_store_explicit(&heap.over_max, 0, memory_order_relaxed);
		return false;
	}
	return true;
}

/* After a sample raised the estimate: a heap.max violation when it crosses the ceiling. */
static void check_over_max(uint32_t stack)
{
	if (!heap.max_bytes)
		return;
	uint64_t live = live_for_max();
	if (live <= heap.max_bytes) {
		atomic_store_explicit(&heap.over_max, 0, memory_order_relaxed);
		return;
	}
	if (atomic_exchange(&heap.over_max, 1))
		return;
	lg_violation("heap.max", stack);
	if (heap.enforce && heap.on_max == LG_ON_MAX_ABORT) {
		lg_error("live heap (estimated %llu bytes) exceeds heap.max_bytes %llu; aborting as "
			 "heap.on_max says", (unsigned long long)live,
			 (unsigned long long)heap.max_bytes);
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
static inline __attribute__((always_inline)) bool may_sample(size_t size)
{
	int st = lg_state();

	if (LG_LIKELY(st == LG_READY && heap.enabled && !lg_tls.busy))
		return true;
	if (st == LG_READY && heap.enabled) {
		/* The guard's own allocation: not the program's, so it does not count towards the
		 * next sample. */
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
static inline __attribute__((always_inline)) bool decide(size_t size)
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
 * estimate is back under the ceiling. ret: the hook's return address. */
static inline __attribute__((always_inline)) void *refuse(const void *ret)
{
	if (!atomic_exchange(&heap.over_max, 1)) {
		uint32_t stack = lg_stack_capture_at(ret, 0);
		lg_violation("heap.max", stack);
	}
	armed = false;
	lg_tls.heap_countdown = -1;
	errno = ENOMEM;
	return NULL;
}

void *lg_heap_alloc_slow(enum lg_heap_op op, size_t arg, size_t size, const void *ret)
{
	size_t total = size;

	if (op == LG_HEAP_CALLOC && __builtin_mul_overflow(arg, size, &total))
		return do_alloc(op, arg, size);   /* the allocator says ENOMEM */
	if (!may_sample(total))
		return do_alloc(op, arg, size);

	int saved = errno;
	bool sampled = decide(total);
	if (LG_UNLIKELY(refuse_over_max(total)))
		return refuse(ret);
	if (!sampled)
		return do_alloc(op, arg, size);
	/* Captured here (inlined): the first frame is the caller of malloc. */
	uint32_t stack = lg_stack_capture_at(ret, 0);
	void *p = block_alloc(total, op == LG_HEAP_MEMALIGN ? arg : 0, op == LG_HEAP_CALLOC, stack);
	if (!p)
		return do_alloc(op, arg, size);
	check_over_max(stack);
	errno = saved;
	return p;
}

/* realloc keeps its sampling unbiased by treating the new block as a new allocation of the new
 * size (sampled with probability 1 - exp(-size/m), by the countdown). A sampled block that stays
 * sampled keeps the stack of its first allocation; with every allocation sampled, it always
 * does. A block moves into or out of the range by copy. */
void *lg_heap_realloc_slow(void *p, size_t size, const void *ret)
{
	bool had = lg_heap_in_region(p);

	if (had && size == 0) {
		lg_heap_free(p);   /* glibc and jemalloc free p and return NULL */
		return NULL;
	}
	if (!may_sample(size))
		return had ? sampled_realloc(p, size) : lg_alloc.realloc(p, size);

	int saved = errno;
	bool sampled = decide(size);
	size_t old = had ? hdr_of(p)->size : 0;
	if (LG_UNLIKELY(refuse_over_max(size) && size > old))
		return refuse(ret);
	void *q;
	if (had && sampled) {
		q = sampled_realloc(p, size);
	} else if (had) {
		q = lg_alloc.malloc(size);
		if (q)
			block_move_out(p, q, size);
	} else if (sampled && size) {
		uint32_t stack = lg_stack_capture_at(ret, 0);
		q = block_alloc(size, 0, false, stack);
		if (q) {
			size_t have = lg_alloc.usable_size(p);
			memcpy(q, p, have < size ? have : size);
			lg_alloc.free(p);
		} else {
			q = lg_alloc.realloc(p, size);
		}
	} else {
		return lg_alloc.realloc(p, size);
	}
	if (!q)
		return NULL;
	/* q may have ended up outside the range (the range was full, the resize failed): no
	 * header to read then. */
	if (sampled)
		check_over_max(lg_heap_in_region(q) ? hdr_of(q)->stack : 0);
	errno = saved;
	return q;
}

/* ---------------------------------------------------------------------------------------------
 * Per-site sums, for the growth windows and snapshots (heap_report.c)
 * ------------------------------------------------------------------------------------------- */

struct lg_heap_site_sum *lg_heap_aggregate(uint32_t *n)
{
	uint32_t cap = lg_stack_count() + 1;
	struct lg_heap_site_sum *sum;

	if (cap > SITES_MAX)
		cap = SITES_MAX;
	sum = lg_mem_calloc(cap, sizeof(*sum));
	*n = 0;
	if (!sum)
		return NULL;
	LG_REAL(pthread_mutex_lock)(&shards_lock);
	for (struct shard *sh = shards_head; sh; sh = sh->next) {
		for (uint32_t c = 0; c <= (cap - 1) >> CHUNK_SHIFT; c++) {
			struct site *chunk = atomic_load_explicit(&sh->chunks[c], memory_order_acquire);
			if (!chunk)
				continue;
			for (uint32_t i = 0; i < (1u << CHUNK_SHIFT); i++) {
				uint32_t id = (c << CHUNK_SHIFT) + i;
				if (id >= cap)
					break;
				sum[id].bytes += atomic_load_explicit(&chunk[i].bytes,
								      memory_order_relaxed);
				sum[id].objects += (double)atomic_load_explicit(
					&chunk[i].objects, memory_order_relaxed) / OBJ_ONE;
			}
		}
	}
	LG_REAL(pthread_mutex_unlock)(&shards_lock);
	*n = cap;
	return sum;
}

uint64_t lg_heap_mean(void) { return heap.mean; }

uint64_t lg_heap_dropped(void)
{
	return atomic_load_explicit(&heap.dropped, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------------
 * Init and fork
 * ------------------------------------------------------------------------------------------- */

/* fork: the child's heap is a copy of the parent's, so it keeps the sampled blocks and their
 * sums (jemalloc's own fork handlers take care of the arena); it must not inherit a lock held by
 * a thread that does not exist in it (growth lock, then shards lock; nothing else holds both:
 * a growth window reads the sums under the shards lock and releases it before it takes the
 * growth lock). pthread_atfork runs this prepare after the
 * runtime's (which takes the report lock, taken before this one by a report). */
static void atfork_prepare(void)
{
	lg_heap_growth_fork(LG_FORK_PREPARE);
	LG_REAL(pthread_mutex_lock)(&shards_lock);
}

static void atfork_release(void)
{
	LG_REAL(pthread_mutex_unlock)(&shards_lock);
	lg_heap_growth_fork(LG_FORK_PARENT);
}

/* The other threads' shards stay on the list: the blocks they sampled are live in the child. */
static void atfork_child_unlock(void)
{
	pthread_mutex_init(&shards_lock, NULL);
	lg_heap_growth_fork(LG_FORK_CHILD);
}

/* The registered .atfork_child: the child's growth history starts afresh (its violations do). */
static void heap_atfork_child(void)
{
	lg_heap_growth_fork(LG_FORK_CHILD_LATER);
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
	heap.flags = lg_mem_sample_flags();
	if (heap.flags < 0) {
		lg_warn("cannot reserve an address range for sampled blocks; the heap guard is off");
		return;
	}
	heap.dense = heap.mean <= DENSE_MEAN;
	if (heap.dense)
		heap.have_key = pthread_key_create(&heap.key, tstate_exit) == 0;
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

bool lg_heap_sampling(void)
{
	return heap.enabled;
}

LG_GUARD(heap, .order = 10, .init = heap_init, .atfork_child = heap_atfork_child,
	 .snapshot = lg_heap_snapshot);
