/* Lock contention guard: where threads wait for mutexes and rwlocks, and for how long.
 *
 * The hooks (hooks/pthread.c) try the lock first with the real trylock; an acquisition that
 * succeeds there never reaches this file, so an uncontended lock costs one extra indirect call
 * and no clock read (mutrace times every lock and adds ~1,100 ns to each). Only a trylock that
 * returns EBUSY comes here: lg_lock_wait_begin() before the real blocking call, and
 * lg_lock_wait_end() after it with its result.
 *
 * Sampling follows Go's mutex profile: every locks.sample-th contended acquisition of a thread
 * (a per-thread countdown, started at a random phase so that threads do not sample in step)
 * records a stack, and its count and wait are multiplied by the rate, so the totals estimate
 * every contended acquisition. The stack is taken before the blocking call: unwinding while
 * holding the program's lock would stretch its critical section, and libunwind may allocate the
 * first time a thread unwinds, which must not happen while that thread holds an allocator lock.
 *
 * Aggregation is per stack id in a fixed open-addressing table in static memory, filled with
 * compare-and-swap on the key and atomic adds on the figures: no lock of ours at all, so nothing
 * here can wait for anything but the program's own lock.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

/* Distinct contended stacks kept; beyond it contention is counted in `dropped` only. A service
 * has tens of contended sites; 4096 leaves room for deep stacks that differ in outer frames. */
#define LOCK_SITES 4096u

struct lock_site {
	_Atomic uint32_t stack;        /* 0 = free slot; set once with CAS */
	_Atomic uint64_t count;        /* de-biased contended acquisitions */
	_Atomic uint64_t wait_ns;      /* de-biased wait */
	_Atomic uint64_t max_wait_ns;  /* longest single sampled wait (not scaled) */
};

static struct lock_site sites[LOCK_SITES];
static _Atomic uint32_t sites_used;   /* slots ever claimed: a forked child with none skips the scan */
static _Atomic uint64_t dropped;   /* sampled waits with no slot or no stack */
static bool tracking;              /* locks.enabled, set at init */
static uint32_t sample_rate = 1;

/* The text of libjemalloc.so: its mutexes go through our hooks (its calls to pthread_mutex_lock
 * bind to the first definition, ours), sometimes while it holds another of its locks. A stack
 * capture there could allocate inside libunwind and re-enter jemalloc on the lock it holds, so
 * such waits are timed but recorded without a stack (see wait_begin). */
static uintptr_t jemalloc_lo, jemalloc_hi;

static int find_jemalloc(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	if (!info->dlpi_name || !strstr(info->dlpi_name, "libjemalloc"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (!jemalloc_lo || lo < jemalloc_lo)
			jemalloc_lo = lo;
		if (lo + ph->p_memsz > jemalloc_hi)
			jemalloc_hi = lo + ph->p_memsz;
	}
	return 1;
}

static void lock_init(void)
{
	tracking = lg_policy.locks.enabled;
	sample_rate = lg_policy.locks.sample ? lg_policy.locks.sample : 1;
	dl_iterate_phdr(find_jemalloc, NULL);
}

static void lock_atfork_child(void)
{
	/* The child starts its own profile; no thread of ours can be mid-update here (fork keeps
	 * only the calling thread), and a half-made slot is just a key with zero figures. Only used
	 * slots are written: a memset of the whole table would copy-on-write all its pages in every
	 * forked child, which a fork-and-exec-heavy host (a shell loop) pays for on each fork. */
	for (uint32_t i = 0; atomic_load(&sites_used) && i < LOCK_SITES; i++) {
		if (atomic_load_explicit(&sites[i].stack, memory_order_relaxed))
			sites[i] = (struct lock_site){ 0 };
	}
	atomic_store(&sites_used, 0);
	atomic_store(&dropped, 0);
	lg_tls.lock_countdown = 0;
	lg_tls.lock_contended = 0;
}

static struct lock_site *site_for(uint32_t stack)
{
	uint32_t h = stack * 2654435761u;

	for (uint32_t probe = 0; probe < LOCK_SITES; probe++) {
		struct lock_site *s = &sites[(h + probe) & (LOCK_SITES - 1)];
		uint32_t cur = atomic_load_explicit(&s->stack, memory_order_acquire);
		if (cur == stack)
			return s;
		if (cur == 0) {
			uint32_t expected = 0;
			if (atomic_compare_exchange_strong_explicit(&s->stack, &expected, stack,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				atomic_fetch_add_explicit(&sites_used, 1, memory_order_relaxed);
				return s;
			}
			if (expected == stack)
				return s;
		}
	}
	return NULL;
}

static void record(uint32_t stack, uint64_t wait_ns, uint32_t weight)
{
	struct lock_site *s = stack ? site_for(stack) : NULL;

	if (!s) {
		atomic_fetch_add_explicit(&dropped, weight, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&s->count, weight, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->wait_ns, wait_ns * weight, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&s->max_wait_ns, memory_order_relaxed);
	while (wait_ns > max &&
	       !atomic_compare_exchange_weak_explicit(&s->max_wait_ns, &max, wait_ns,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

bool lg_lock_wait_begin(struct lg_lock_wait *w, const void *caller)
{
	if (!tracking || !lg_active())
		return false;
	lg_tls.lock_contended++;
	w->stack = 0;
	w->weight = 0;
	uint32_t left = lg_tls.lock_countdown;
	if (LG_UNLIKELY(left == 0))   /* a thread's first contended acquisition: random phase */
		left = (uint32_t)(lg_random() % sample_rate) + 1;
	if (--left == 0) {
		left = sample_rate;
		w->weight = sample_rate;
		uintptr_t pc = (uintptr_t)caller;
		if (!(pc >= jemalloc_lo && pc < jemalloc_hi)) {
			int saved = errno;
			/* Frames: lg_stack_capture <- here <- the hook's slow-path helper <- the
			 * hook <- the program. */
			w->stack = lg_stack_capture(3);
			errno = saved;
		}
	}
	lg_tls.lock_countdown = left;
	/* Read the clock last: the wait excludes the unwinding above. */
	w->start_ns = w->weight ? lg_now_ns() : 0;
	return true;
}

void lg_lock_wait_end(const struct lg_lock_wait *w, int rc)
{
	/* EDEADLK (an error-checking mutex its owner locks again, a rwlock its writer read-locks)
	 * and EINVAL never waited: they are not contention. A robust mutex whose owner died
	 * (EOWNERDEAD, ENOTRECOVERABLE) and a timed lock that timed out did wait. */
	if (!w->weight || rc == EDEADLK || rc == EINVAL || rc == EAGAIN)
		return;
	uint64_t now = lg_now_ns();
	record(w->stack, now > w->start_ns ? now - w->start_ns : 0, w->weight);
}

/* ---- report ---- */

static int by_wait_desc(const void *a, const void *b)
{
	const struct lg_snap_lock_site *x = a, *y = b;

	if (x->wait_ns != y->wait_ns)
		return x->wait_ns < y->wait_ns ? 1 : -1;
	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

static int lock_snapshot(struct lg_snapshot *snap)
{
	size_t n = 0;

	if (!tracking)
		return 0;
	snap->locks.present = true;
	/* No slot ever claimed: skip reading a table whose pages were never touched (each first read
	 * is a page fault, paid at exit by every short-lived process). */
	for (uint32_t i = 0; atomic_load(&sites_used) && i < LOCK_SITES; i++)
		if (atomic_load_explicit(&sites[i].stack, memory_order_acquire) &&
		    atomic_load_explicit(&sites[i].count, memory_order_relaxed))
			n++;
	snap->locks.contended = lg_snapshot_alloc(snap, sizeof(*snap->locks.contended) * (n ? n : 1));
	if (!snap->locks.contended)
		return -ENOMEM;
	for (uint32_t i = 0; i < LOCK_SITES && snap->locks.n < n; i++) {
		struct lock_site *s = &sites[i];
		uint32_t stack = atomic_load_explicit(&s->stack, memory_order_acquire);
		uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
		if (!stack || !count)
			continue;
		snap->locks.contended[snap->locks.n++] = (struct lg_snap_lock_site){
			.stack = stack,
			.count = count,
			.wait_ns = atomic_load_explicit(&s->wait_ns, memory_order_relaxed),
			.max_wait_ns = atomic_load_explicit(&s->max_wait_ns, memory_order_relaxed),
		};
	}
	qsort(snap->locks.contended, snap->locks.n, sizeof(*snap->locks.contended), by_wait_desc);
	return 0;
}

uint64_t lg_lock_dropped(void)
{
	return atomic_load_explicit(&dropped, memory_order_relaxed);
}

LG_GUARD(locks, .order = 70, .init = lock_init, .atfork_child = lock_atfork_child,
	 .snapshot = lock_snapshot);
