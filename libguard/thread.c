/* Thread guard: live and peak threads, threads.max, and threads nobody joins.
 *
 * pthread_create (hooks/pthread.c) comes here: the creation stack is captured, a small record is
 * taken from the guard's own memory, and the thread starts in a trampoline that runs the
 * program's start routine and marks the record finished however the thread ends (return,
 * pthread_exit, cancellation: glibc unwinds the thread through the trampoline's cleanup handler
 * in the last two cases). pthread_join / tryjoin / timedjoin / detach mark it released. A record
 * is freed when it is both finished and released; a finished record never released is a thread
 * leak, the C analogue of a leaked goroutine: its stack and memory stay until the process exits.
 *
 * Records are found by pthread_t in a small hash table under a spin lock of ours (never a pthread
 * lock: those are hooked). Nothing under the spin lock allocates, unwinds or makes a syscall;
 * creation, join and exit are rare next to the microseconds a thread costs anyway.
 *
 * "live" counts the threads started through pthread_create since the guard started, not the
 * main thread and not the guard's own thread (created with LG_REAL under the busy flag).
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

enum {
	REC_FINISHED = 1u,   /* the start routine returned, or the thread exited or was cancelled */
	REC_RELEASED = 2u,   /* joined or detached: the program will not join it */
	REC_PUBLISHED = 4u,  /* the creator put it in the table */
	REC_ALL = REC_FINISHED | REC_RELEASED | REC_PUBLISHED,
};

struct thread_rec {
	struct thread_rec *next;   /* bucket chain, newest first */
	pthread_t tid;
	void *(*start)(void *);
	void *arg;
	uint32_t stack;
	unsigned state;            /* REC_* bits; changed only under table_lock */
};

#define BUCKETS 1024u

static struct thread_rec *buckets[BUCKETS];
static _Atomic int table_lock;
static _Atomic uint64_t live, peak;
static _Atomic bool exiting;
static bool tracking;
static uint32_t max_threads;

/* The record of the calling thread, if we started it; NULL once it is marked finished. */
static LG_TLS struct thread_rec *self_rec;

static void lock_table(void)
{
	for (unsigned spins = 0; atomic_exchange_explicit(&table_lock, 1, memory_order_acquire);) {
		/* Two cores: a holder that was preempted needs the CPU back, not our spinning. */
		if (++spins > 64) {
			sched_yield();
			spins = 0;
		}
	}
}

static void unlock_table(void)
{
	atomic_store_explicit(&table_lock, 0, memory_order_release);
}

static unsigned bucket_of(pthread_t t)
{
	uint64_t h = (uint64_t)t * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 40) & (BUCKETS - 1);
}

/* Under the lock. A pthread_t is reused once its thread is joined, so the newest record that
 * is not released yet is the one that names the running thread. */
static struct thread_rec *find(pthread_t t)
{
	for (struct thread_rec *r = buckets[bucket_of(t)]; r; r = r->next)
		if (pthread_equal(r->tid, t) && !(r->state & REC_RELEASED))
			return r;
	return NULL;
}

static void unlink_rec(struct thread_rec *rec)
{
	for (struct thread_rec **p = &buckets[bucket_of(rec->tid)]; *p; p = &(*p)->next) {
		if (*p == rec) {
			*p = rec->next;
			return;
		}
	}
}

/* Set bits on a record; returns true if the caller must free it (all bits are now set and the
 * record left the table). Under the lock. */
static bool set_bits(struct thread_rec *rec, unsigned bits)
{
	rec->state |= bits;
	if ((rec->state & REC_ALL) != REC_ALL)
		return false;
	unlink_rec(rec);
	return true;
}

static void free_rec(struct thread_rec *rec)
{
	lg_enter();
	lg_mem_free(rec);
	lg_leave();
}

/* ---- the trampoline ---- */

static void mark_finished(void)
{
	struct thread_rec *rec = self_rec;

	if (!rec)
		return;
	self_rec = NULL;
	atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
	lock_table();
	bool done = set_bits(rec, REC_FINISHED);
	unlock_table();
	if (done)
		free_rec(rec);
}

static void on_unwind(void *unused)
{
	(void)unused;
	mark_finished();
}

static void *trampoline(void *p)
{
	struct thread_rec *rec = p;
	void *(*start)(void *) = rec->start;
	void *arg = rec->arg;
	void *ret;

	self_rec = rec;
	/* pthread_exit and cancellation unwind through here and run the handler; a return runs it
	 * through pthread_cleanup_pop(1). Either way the record is used through self_rec, which
	 * the pthread_exit hook may already have cleared. */
	pthread_cleanup_push(on_unwind, NULL);
	ret = start(arg);
	pthread_cleanup_pop(1);
	return ret;
}

/* ---- hooks ---- */

static void note_peak(uint64_t now_live)
{
	uint64_t p = atomic_load_explicit(&peak, memory_order_relaxed);

	while (now_live > p && !atomic_compare_exchange_weak_explicit(&peak, &p, now_live,
								      memory_order_relaxed,
								      memory_order_relaxed))
		;
}

int lg_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
		     void *arg)
{
	int (*real_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
		LG_REAL(pthread_create);

	if (!real_create)
		return EAGAIN;   /* only while the real table is being resolved, at startup */
	/* The program becomes multi-threaded: the guardian's thread costs it nothing more now. */
	if (lg_active())
		lg_guardian_need_thread();
	if (!tracking || !lg_active())
		return real_create(thread, attr, start, arg);

	int saved = errno;
	/* Frames: lg_stack_capture <- here <- the hook <- the program. */
	uint32_t stack = lg_stack_capture(2);
	uint64_t now_live = atomic_fetch_add_explicit(&live, 1, memory_order_relaxed) + 1;
	if (max_threads && now_live > max_threads) {
		lg_violation("threads.max", stack);
		if (lg_enforcing()) {
			atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
			errno = saved;
			return EAGAIN;   /* what pthread_create returns at RLIMIT_NPROC */
		}
	}
	lg_enter();
	struct thread_rec *rec = lg_mem_alloc(sizeof(*rec));
	lg_leave();
	if (!rec) {
		/* Untracked rather than failed: the guard must not make creation fail. */
		atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
		errno = saved;
		return real_create(thread, attr, start, arg);
	}
	int detached = PTHREAD_CREATE_JOINABLE;
	if (attr)
		pthread_attr_getdetachstate(attr, &detached);
	*rec = (struct thread_rec){ .start = start, .arg = arg, .stack = stack,
				    .state = detached == PTHREAD_CREATE_DETACHED ? REC_RELEASED : 0 };
	note_peak(now_live);

	pthread_t t;
	int rc = real_create(&t, attr, trampoline, rec);
	if (rc != 0) {
		atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
		free_rec(rec);
		errno = saved;
		return rc;
	}
	*thread = t;
	/* The thread may already have finished (and, if detached, wait for us to free it). */
	lock_table();
	rec->tid = t;
	rec->next = buckets[bucket_of(t)];
	buckets[bucket_of(t)] = rec;
	bool done = set_bits(rec, REC_PUBLISHED);
	unlock_table();
	if (done)
		free_rec(rec);
	errno = saved;
	return 0;
}

/* After a successful join or detach of t. */
void lg_thread_released(pthread_t t)
{
	if (!tracking)
		return;
	lock_table();
	struct thread_rec *rec = find(t);
	bool done = rec && set_bits(rec, REC_RELEASED);
	unlock_table();
	if (done)
		free_rec(rec);
}

void lg_thread_on_exit(void)
{
	mark_finished();
}

uint64_t lg_threads_live(void)
{
	return atomic_load_explicit(&live, memory_order_relaxed);
}

/* ---- runtime ---- */

static void thread_init(void)
{
	tracking = lg_policy.threads.enabled;
	max_threads = lg_policy.threads.max;
}

static void thread_at_exit(void)
{
	/* From now on a joinable thread that is still running will never be joined. */
	atomic_store(&exiting, true);
}

static void thread_atfork_child(void)
{
	/* Only the forking thread exists in the child. Its own record (if we started it) is kept;
	 * the others are dropped without walking chains a thread of the parent may have been
	 * changing when fork copied them (their few bytes stay allocated). */
	atomic_store(&table_lock, 0);
	memset(buckets, 0, sizeof(buckets));
	struct thread_rec *me = self_rec;
	uint64_t n = 0;
	if (me) {
		me->state = REC_PUBLISHED | (me->state & REC_RELEASED);
		me->tid = pthread_self();
		me->next = NULL;
		buckets[bucket_of(me->tid)] = me;
		n = 1;
	}
	atomic_store(&live, n);
	atomic_store(&peak, n);
}

static int by_count_desc(const void *a, const void *b)
{
	const struct lg_snap_thread_site *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

static int thread_snapshot(struct lg_snapshot *snap)
{
	if (!tracking)
		return 0;
	snap->threads.present = true;
	snap->threads.live = atomic_load(&live);
	snap->threads.peak = atomic_load(&peak);
	bool at_exit = atomic_load(&exiting);

	/* Count candidates, then copy: the arena allocation happens outside the spin lock, so the
	 * table may change in between; the copy is bounded by what was allocated. */
	size_t cap = 0;
	lock_table();
	for (unsigned b = 0; b < BUCKETS; b++)
		for (struct thread_rec *r = buckets[b]; r; r = r->next)
			cap++;
	unlock_table();
	if (cap == 0)
		return 0;
	struct lg_snap_thread_site *out = lg_snapshot_alloc(snap, sizeof(*out) * cap);
	if (!out)
		return -ENOMEM;
	size_t n = 0;
	lock_table();
	for (unsigned b = 0; b < BUCKETS; b++) {
		for (struct thread_rec *r = buckets[b]; r; r = r->next) {
			if (r->state & REC_RELEASED)
				continue;
			if (!(r->state & REC_FINISHED) && !at_exit)
				continue;
			size_t i;
			for (i = 0; i < n && out[i].stack != r->stack; i++)
				;
			if (i == n) {
				if (n == cap)
					continue;
				out[n++] = (struct lg_snap_thread_site){ .stack = r->stack, .count = 0 };
			}
			out[i].count++;
		}
	}
	unlock_table();
	qsort(out, n, sizeof(*out), by_count_desc);
	snap->threads.unjoined = out;
	snap->threads.n = n;
	return 0;
}

LG_GUARD(threads, .order = 71, .init = thread_init, .atfork_child = thread_atfork_child,
	 .snapshot = thread_snapshot, .at_exit = thread_at_exit);
