/* Clock guard (issue 7): wall-clock jumps, monotonic regressions, clamping, injected steps and a
 * sampled profile of the code that reads the wall clock.
 *
 * Every clock read in the program comes through here, often from signal handlers (a SIGALRM or
 * SIGPROF handler that timestamps an event), and clock_gettime is the cheapest call a program
 * makes (~20 ns through the vDSO). So the per-read work is a few loads and compares on memory
 * that is only written on rare events, and everything here is async-signal-safe: no lock, no
 * allocation, no syscall on the fast path; atomics and thread-local counters only.
 *
 * Jumps. The kernel keeps realtime = monotonic + offset and a step (settimeofday, clock_settime,
 * an NTP step, a VM resumed with a corrected clock) changes only the offset. We keep the offset we
 * last believed in (base_off_ns) and call a change of more than clock.jump_ms a jump. Checking it
 * on every read would cost a second vDSO call, so a reader checks only when its own realtime
 * readings move by more than jump_ms from its previous one (a step, or simply a thread that had
 * not read the clock for a while): one thread-local compare. The guardian checks every 250 ms as
 * well and reads a timerfd armed with TFD_TIMER_CANCEL_ON_SET, which the kernel cancels on every
 * clock_settime (timerfd_create(2)), so a step is known even if no thread reads the clock. The
 * first one to see a changed offset records the jump (a CAS on base_off_ns decides who); a reader
 * records its own stack, a jump found by the guardian takes the stack of the next reader.
 *
 * Readers. Every realtime read counts down a per-thread counter; when it runs out the read
 * records its stack (the first read of every thread does too, so a site that reads the clock
 * once is still seen) and is credited with all the reads since the previous sample. Intervals
 * are random around READER_SAMPLE_MEAN so that two sites alternating in a loop are not aliased.
 * Aggregation is a fixed open-addressing table keyed by stack id, filled with CAS: a sample taken
 * in a signal handler can never wait for a frame of its own thread.
 *
 * Clamp and injection change what the program sees: injection adds a step to every realtime
 * reading from at_ms after start; clamp keeps one process-wide high-water mark of the realtime
 * the program was given and never answers below it (the program sees time stand still until the
 * real clock catches up; clamped_ms is how long it stood still). Both cost a shared write only
 * while they are in use.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* Mean realtime reads between two recorded stacks of a thread. A sample costs a stack capture
 * (~0.3 us with interning); 1/512 of that stays well inside the clock budget (+8 ns a call). */
#define READER_SAMPLE_MEAN 512u
#define READER_SLOTS 4096u        /* distinct reading stacks kept; more are counted as dropped */
#define READER_PROBES 64u
#define MAX_JUMPS 64u
#define MAX_INJECT LG_POLICY_MAX_INJECT
#define GUARDIAN_PERIOD_MS 250u
/* A realtime/monotonic pair read further apart than this (preemption, a signal) is read again:
 * the offset it gives is only as good as the gap. */
#define PAIR_MAX_GAP_NS (NS_PER_MS / 2)
#define PAIR_TRIES 4
/* clamped_ms is the time the program's realtime stood still, counting holds that began more than
 * this far behind the mark. Smaller lags are not steps but resolution: a CLOCK_REALTIME_COARSE
 * reading lags the precise clock by up to a tick (10 ms at HZ=100). */
#define CLAMP_COUNT_MIN_NS (20 * NS_PER_MS)
/* Our timerfd is armed ~100 years ahead; a descriptor with less than this left is not ours. */
#define TIMERFD_MIN_LEFT_S (30LL * 365 * 24 * 3600)

enum { SLOW_OFFSET = 1u, SLOW_CLAMP = 2u, SLOW_PENDING = 4u };

/* What every realtime read looks at: one cache line, written only on rare events. */
static struct {
	_Atomic uint32_t on;               /* clock.enabled and initialised */
	_Atomic uint32_t slow;             /* SLOW_* bits: every read takes the slow path */
	_Atomic int64_t offset_ns;         /* sum of the injected steps applied so far */
	_Atomic int64_t inject_at_rt_ns;   /* raw realtime from which the next step may be due */
	int64_t window_ns;                 /* clock.jump_ms */
} hot __attribute__((aligned(64)));

/* Written on every read in clamp mode only: its own cache line. */
static struct {
	_Atomic int64_t max_ns;            /* the latest realtime given to the program */
	_Atomic int64_t hold_mark_ns;      /* the max_ns of the hold in progress, 0 = none */
	_Atomic uint64_t hold_start_ns;    /* monotonic, when it began */
	_Atomic uint64_t clamped_ns;       /* holds that ended */
} clamp __attribute__((aligned(64)));

struct jump {
	_Atomic uint32_t ready;
	_Atomic uint32_t stack;
	int64_t delta_ns;
	uint64_t unix_ms;
};

struct reader {
	_Atomic uint32_t stack;            /* 0 = free; set once with CAS */
	_Atomic uint64_t calls;
};

static struct {
	_Atomic int64_t base_off_ns;       /* realtime - monotonic as last believed */
	_Atomic uint64_t mono_regressions;
	struct jump jumps[MAX_JUMPS];
	_Atomic uint32_t njumps;           /* may exceed MAX_JUMPS: the excess is dropped */
	_Atomic uint32_t pending;          /* 1 + index of a jump waiting for a reader's stack */
	/* Injected steps, sorted by due time; next is claimed with CAS. */
	uint64_t inject_due_ns[MAX_INJECT];
	int64_t inject_step_ns[MAX_INJECT];
	uint32_t ninject;
	_Atomic uint32_t inject_next;
	struct reader *readers;            /* READER_SLOTS, mmap'd */
	_Atomic uint64_t readers_dropped;
	int timerfd;
	bool task_registered;
} clk = { .timerfd = -1 };

/* Per thread: the last raw realtime reading of each kind (a thread mixing time() and
 * gettimeofday must not look like a clock moving by up to a second each way), and the length of
 * the sampling interval in progress (the weight of its sample). */
static LG_TLS int64_t rt_last_ns[LG_RT_KINDS];
static LG_TLS uint32_t rt_interval;

/* Per kind of reading (enum lg_rt_kind): extra slack before a reading counts as "moved by more
 * than jump_ms" from the previous one of its kind (a coarse reading lags by up to a tick, a
 * time() value by up to a second), and its resolution (a value is only "behind" the clamp mark if
 * its whole resolution interval is). */
static const int64_t kind_slack_ns[LG_RT_KINDS] = { 0, 0, 20 * NS_PER_MS, NS_PER_S };
static const int64_t kind_res_ns[LG_RT_KINDS] = { 1, 1000, 1, NS_PER_S };

/* ---------------------------------------------------------------------------------------------
 * Reading the real clocks
 * ------------------------------------------------------------------------------------------- */

static int64_t real_ns(clockid_t id)
{
	struct timespec ts;
	int (*fn)(clockid_t, struct timespec *) = NULL;

	if (atomic_load_explicit(&lg_real_ready, memory_order_acquire))
		fn = lg_real.clock_gettime;
	if (!fn || fn(id, &ts) != 0)
		syscall(SYS_clock_gettime, id, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* realtime - monotonic now, from a pair of readings taken close together. false if every try
 * was stretched (preempted, interrupted): no decision is better than a false jump. */
static bool read_offset(int64_t *off, int64_t *rt_out)
{
	for (int i = 0; i < PAIR_TRIES; i++) {
		int64_t m1 = real_ns(CLOCK_MONOTONIC);
		int64_t rt = real_ns(CLOCK_REALTIME);
		int64_t m2 = real_ns(CLOCK_MONOTONIC);

		if (m2 - m1 <= PAIR_MAX_GAP_NS) {
			*off = rt - (m1 + (m2 - m1) / 2);
			*rt_out = rt;
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------------------------------------
 * Jumps
 * ------------------------------------------------------------------------------------------- */

/* Returns the jump's index, or -1 when the list is full. */
static int record_jump(int64_t delta_ns, int64_t seen_ns, uint32_t stack)
{
	uint32_t i = atomic_fetch_add_explicit(&clk.njumps, 1, memory_order_relaxed);

	if (i >= MAX_JUMPS)
		return -1;
	struct jump *j = &clk.jumps[i];
	j->delta_ns = delta_ns;
	j->unix_ms = seen_ns > 0 ? (uint64_t)(seen_ns / NS_PER_MS) : 0;
	atomic_store_explicit(&j->stack, stack, memory_order_relaxed);
	atomic_store_explicit(&j->ready, 1, memory_order_release);
	return (int)i;
}

/* A jump found where no reader's stack is at hand: the next realtime reader lends its own. */
static void want_reader_stack(int idx)
{
	if (idx < 0)
		return;
	atomic_store_explicit(&clk.pending, (uint32_t)idx + 1, memory_order_relaxed);
	atomic_fetch_or_explicit(&hot.slow, SLOW_PENDING, memory_order_release);
}

/* Compare the kernel's offset with the one we believed; returns the index of a jump this call
 * recorded, or -1. drift: adopt small changes (slewing by adjtime/NTP moves the offset by up to
 * 0.5 ms/s, which would add up to a false jump over a long run); only the guardian does, so that
 * readers write the shared word only on a real jump. */
static int check_offset(bool drift)
{
	int64_t off, rt;

	if (!read_offset(&off, &rt))
		return -1;
	int64_t base = atomic_load_explicit(&clk.base_off_ns, memory_order_relaxed);
	for (;;) {
		int64_t delta = off - base;
		bool jump = delta > hot.window_ns || delta < -hot.window_ns;

		if (!jump && (!drift || delta == 0))
			return -1;
		if (atomic_compare_exchange_weak_explicit(&clk.base_off_ns, &base, off,
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			if (!jump)
				return -1;
			return record_jump(delta,
					   rt + atomic_load_explicit(&hot.offset_ns, memory_order_relaxed),
					   0);
		}
		/* Someone else moved the base (and recorded the jump, if it was one): compare again. */
	}
}

/* ---------------------------------------------------------------------------------------------
 * Injected steps
 * ------------------------------------------------------------------------------------------- */

/* Apply every step that is due; returns the index of the last jump recorded, or -1. raw_rt_ns
 * is a realtime reading from around now, used to re-aim the readers' trigger. */
static int apply_due_injections(int64_t raw_rt_ns)
{
	int idx = -1;

	for (;;) {
		uint32_t i = atomic_load_explicit(&clk.inject_next, memory_order_acquire);
		if (i >= clk.ninject) {
			atomic_store_explicit(&hot.inject_at_rt_ns, INT64_MAX, memory_order_relaxed);
			return idx;
		}
		uint64_t mono = lg_now_ns();
		if (mono < clk.inject_due_ns[i]) {
			/* Readers compare realtime readings with this, not monotonic ones (which they do
			 * not have); if realtime was stepped since, aim again from here. */
			atomic_store_explicit(&hot.inject_at_rt_ns,
					      raw_rt_ns + (int64_t)(clk.inject_due_ns[i] - mono),
					      memory_order_relaxed);
			return idx;
		}
		if (!atomic_compare_exchange_strong_explicit(&clk.inject_next, &i, i + 1,
							     memory_order_acq_rel,
							     memory_order_acquire))
			continue;
		int64_t step = clk.inject_step_ns[i];
		int64_t off = atomic_fetch_add_explicit(&hot.offset_ns, step, memory_order_relaxed) +
			      step;
		atomic_fetch_or_explicit(&hot.slow, SLOW_OFFSET, memory_order_release);
		/* An injected step is a jump like any other, under the same threshold. */
		if (step > hot.window_ns || step < -hot.window_ns)
			idx = record_jump(step, raw_rt_ns + off, 0);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Clamp
 * ------------------------------------------------------------------------------------------- */

/* A hold is counted in clamped_ms for as long as it lasts (monotonic time), from the first
 * reader held at a mark to the reader that moves the mark on. Sequentially consistent: a hold
 * started just as another thread moved the mark must be seen by one of the two. */
static void hold_begin(int64_t mark)
{
	int64_t cur = atomic_load(&clamp.hold_mark_ns);

	if (cur == mark)
		return;
	atomic_store(&clamp.hold_start_ns, lg_now_ns());
	if (!atomic_compare_exchange_strong(&clamp.hold_mark_ns, &cur, mark))
		return;
	/* The mark moved on meanwhile and its mover did not see our hold: undo it. */
	if (atomic_load(&clamp.max_ns) != mark)
		atomic_compare_exchange_strong(&clamp.hold_mark_ns, &mark, 0);
}

static void hold_end(int64_t old_mark)
{
	int64_t mark = atomic_load(&clamp.hold_mark_ns);

	if (LG_UNLIKELY(mark == old_mark && mark != 0) &&
	    atomic_compare_exchange_strong(&clamp.hold_mark_ns, &mark, 0)) {
		uint64_t start = atomic_load(&clamp.hold_start_ns), now = lg_now_ns();
		if (now > start)
			atomic_fetch_add(&clamp.clamped_ns, now - start);
	}
}

static int64_t clamp_value(int64_t v, enum lg_rt_kind kind)
{
	int64_t res = kind_res_ns[kind];
	int64_t max = atomic_load(&clamp.max_ns);

	for (;;) {
		if (v + res <= max) {
			/* Behind what the program was already given: hold. A lag within a coarse
			 * clock's tick is resolution, not a step, and is not counted. */
			if (max - (v + res - 1) > CLAMP_COUNT_MIN_NS)
				hold_begin(max);
			return max;
		}
		/* Within the value's resolution of the mark: unchanged (it truncates the same). */
		if (v <= max)
			return v;
		if (atomic_compare_exchange_weak(&clamp.max_ns, &max, v)) {
			hold_end(max);
			return v;
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * Readers
 * ------------------------------------------------------------------------------------------- */

static void reader_add(uint32_t stack, uint64_t calls)
{
	struct reader *t = clk.readers;

	if (!t || !stack) {
		atomic_fetch_add_explicit(&clk.readers_dropped, calls, memory_order_relaxed);
		return;
	}
	/* Stack ids are numbered from 1 in order of first capture, so the id itself is the slot:
	 * a program's readers fill the table's first page (256 of them) instead of touching a page
	 * each, as a scattering hash did; ids past READER_SLOTS wrap and probe. */
	uint32_t h = stack;
	for (uint32_t k = 0; k < READER_PROBES; k++) {
		struct reader *r = &t[(h + k) & (READER_SLOTS - 1)];
		uint32_t cur = atomic_load_explicit(&r->stack, memory_order_acquire);

		if (cur == 0 && atomic_compare_exchange_strong_explicit(&r->stack, &cur, stack,
									 memory_order_acq_rel,
									 memory_order_acquire))
			cur = stack;
		if (cur == stack) {
			atomic_fetch_add_explicit(&r->calls, calls, memory_order_relaxed);
			return;
		}
	}
	atomic_fetch_add_explicit(&clk.readers_dropped, calls, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------------
 * The read path
 * ------------------------------------------------------------------------------------------- */

/* Frames between lg_stack_capture's caller and the program: realtime_slow itself,
 * lg_clock_on_realtime, and the hook. */
#define READER_SKIP 3

static __attribute__((noinline)) int64_t realtime_slow(int64_t raw, enum lg_rt_kind kind,
						       bool moved)
{
	int saved = errno;
	int jump = -1, seen;
	uint32_t stack = 0;
	/* The countdown wrapped: this read is the sample. */
	bool sample = lg_tls.realtime_countdown == UINT32_MAX;

	lg_enter();
	if (moved)
		jump = check_offset(false);
	if (raw >= atomic_load_explicit(&hot.inject_at_rt_ns, memory_order_relaxed) &&
	    (seen = apply_due_injections(raw)) >= 0)
		jump = seen;
	uint32_t slow = atomic_load_explicit(&hot.slow, memory_order_acquire);
	uint32_t pending = 0;
	if (slow & SLOW_PENDING) {
		pending = atomic_exchange_explicit(&clk.pending, 0, memory_order_acq_rel);
		atomic_fetch_and_explicit(&hot.slow, ~SLOW_PENDING, memory_order_relaxed);
		/* The guardian may have left another one in between. */
		if (atomic_load_explicit(&clk.pending, memory_order_relaxed) != 0)
			atomic_fetch_or_explicit(&hot.slow, SLOW_PENDING, memory_order_relaxed);
	}
	/* One capture serves every purpose of this read; it is the rare part, done last and
	 * outside anything shared. */
	if (sample || jump >= 0 || pending)
		stack = lg_stack_capture(READER_SKIP);
	if (jump >= 0)
		atomic_store_explicit(&clk.jumps[jump].stack, stack, memory_order_relaxed);
	if (pending && pending <= MAX_JUMPS)
		atomic_store_explicit(&clk.jumps[pending - 1].stack, stack, memory_order_relaxed);
	if (sample) {
		uint32_t weight = rt_interval ? rt_interval : 1;
		rt_interval = 1 + (uint32_t)(lg_random() % (2 * READER_SAMPLE_MEAN - 1));
		lg_tls.realtime_countdown = rt_interval - 1;
		reader_add(stack, weight);
	}

	int64_t v = raw;
	if (slow & SLOW_OFFSET)
		v += atomic_load_explicit(&hot.offset_ns, memory_order_relaxed);
	if (slow & SLOW_CLAMP)
		v = clamp_value(v, kind);
	lg_leave();
	errno = saved;
	return v;
}

int64_t lg_clock_on_realtime(int64_t raw_ns, enum lg_rt_kind kind)
{
	if (LG_UNLIKELY(!atomic_load_explicit(&hot.on, memory_order_relaxed)))
		return raw_ns;
	/* Moved by more than jump_ms (either way) since this thread's last precise reading? */
	int64_t w = hot.window_ns + kind_slack_ns[kind];
	bool moved = (uint64_t)(raw_ns - rt_last_ns[kind] + w) > (uint64_t)(2 * w);
	rt_last_ns[kind] = raw_ns;
	uint32_t countdown = lg_tls.realtime_countdown--;
	if (LG_UNLIKELY(moved | (countdown == 0) |
			(atomic_load_explicit(&hot.slow, memory_order_relaxed) != 0) |
			(raw_ns >= atomic_load_explicit(&hot.inject_at_rt_ns, memory_order_relaxed)))) {
		int64_t v = realtime_slow(raw_ns, kind, moved);
		/* Not a tail call: this frame must stay for READER_SKIP to land on the program. */
		__asm__ volatile("" : "+r"(v));
		return v;
	}
	return raw_ns;
}

void lg_clock_on_monotonic(uint64_t last_ns, uint64_t now_ns)
{
	/* last_ns was read before the clock: a signal handler that ran in between and stored a
	 * later reading cannot make this one look like a regression. */
	if (LG_UNLIKELY(now_ns < last_ns) && atomic_load_explicit(&hot.on, memory_order_relaxed))
		atomic_fetch_add_explicit(&clk.mono_regressions, 1, memory_order_relaxed);
	lg_tls.mono_last_ns = now_ns;
}

/* ---------------------------------------------------------------------------------------------
 * The timerfd: the kernel cancels it on every clock_settime/settimeofday
 * ------------------------------------------------------------------------------------------- */

static int timerfd_arm(int fd)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = (time_t)(real_ns(CLOCK_REALTIME) / NS_PER_S) +
			      100LL * 365 * 24 * 3600;
	return (int)syscall(SYS_timerfd_settime, fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET,
			    &its, NULL);
}

static void timerfd_open(void)
{
	/* Raw syscalls: our descriptor is not the program's, and must not go through its hooks. */
	int fd = lg_fd_move_high((int)syscall(SYS_timerfd_create, CLOCK_REALTIME,
					     TFD_NONBLOCK | TFD_CLOEXEC));

	if (fd < 0)
		return;
	if (timerfd_arm(fd) != 0) {
		syscall(SYS_close, fd);
		return;
	}
	clk.timerfd = fd;
}

/* Still our timerfd? A program may close every descriptor it did not open (or dup2 over ours);
 * reading a descriptor that is now the program's would steal its data. */
static bool timerfd_is_ours(int fd)
{
	struct itimerspec cur;

	return fd >= 0 && syscall(SYS_timerfd_gettime, fd, &cur) == 0 &&
	       cur.it_value.tv_sec > TIMERFD_MIN_LEFT_S;
}

/* true when the kernel says the realtime clock was set since the last call. */
static bool timerfd_clock_was_set(void)
{
	uint64_t ticks;
	int fd = clk.timerfd;

	if (fd < 0)
		return false;
	if (!timerfd_is_ours(fd)) {
		clk.timerfd = -1;
		lg_debug("clock: the clock-change timerfd %d was closed by the program; the guardian's "
			 "periodic check goes on without it", fd);
		return false;
	}
	if (syscall(SYS_read, fd, &ticks, sizeof(ticks)) >= 0 || errno != ECANCELED)
		return false;
	timerfd_arm(fd);
	return true;
}

bool lg_clock_owns_fd(int fd)
{
	return fd >= 0 && fd == clk.timerfd;
}

/* ---------------------------------------------------------------------------------------------
 * Guardian task, init, fork, snapshot
 * ------------------------------------------------------------------------------------------- */

void lg_clock_poll(uint64_t now_ns)
{
	(void)now_ns;

	if (!atomic_load_explicit(&hot.on, memory_order_relaxed))
		return;
	int saved = errno;
	bool was_set = timerfd_clock_was_set();
	want_reader_stack(check_offset(true));
	if (was_set)
		lg_debug("clock: realtime was set (timerfd cancelled)");
	if (atomic_load_explicit(&clk.inject_next, memory_order_relaxed) < clk.ninject)
		want_reader_stack(apply_due_injections(real_ns(CLOCK_REALTIME)));
	errno = saved;
}

static void guardian_task(uint64_t now_ns)
{
	lg_clock_poll(now_ns);
}

static void reset_counters(void)
{
	atomic_store(&clk.njumps, 0);
	atomic_store(&clk.pending, 0);
	atomic_fetch_and(&hot.slow, ~SLOW_PENDING);
	for (uint32_t i = 0; i < MAX_JUMPS; i++)
		atomic_store(&clk.jumps[i].ready, 0);
	atomic_store(&clk.mono_regressions, 0);
	atomic_store(&clk.readers_dropped, 0);
	atomic_store(&clamp.clamped_ns, 0);
	atomic_store(&clamp.hold_mark_ns, 0);
	/* Dropping the pages zeroes them (private anonymous memory) without making every page of
	 * the table resident, as a memset would: the table is sparse, and self_bytes counts what
	 * is resident. */
	if (clk.readers && madvise(clk.readers, READER_SLOTS * sizeof(*clk.readers), MADV_DONTNEED) != 0)
		memset(clk.readers, 0, READER_SLOTS * sizeof(*clk.readers));
}

static int cmp_inject(const void *a, const void *b)
{
	const struct lg_clock_inject *x = a, *y = b;
	return x->at_ms < y->at_ms ? -1 : x->at_ms > y->at_ms;
}

void lg_clock_init(void)
{
	struct lg_clock_inject in[MAX_INJECT];
	int64_t off, rt;

	atomic_store(&hot.on, 0);
	if (!lg_policy.clock.enabled)
		return;
	if (!clk.readers) {
		void *p = mmap(NULL, READER_SLOTS * sizeof(*clk.readers), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED) {
			clk.readers = p;
			lg_mem_register_table(p, READER_SLOTS * sizeof(*clk.readers));
		}
	}
	reset_counters();
	hot.window_ns = (int64_t)lg_policy.clock.jump_ms * NS_PER_MS;
	atomic_store(&hot.slow, lg_policy.clock.realtime == LG_REALTIME_CLAMP ? SLOW_CLAMP : 0u);
	atomic_store(&hot.offset_ns, 0);
	atomic_store(&clamp.max_ns, 0);

	/* Injected steps, in the order they fall due (the policy may list them in any order). */
	uint32_t n = lg_policy.clock.ninject < MAX_INJECT ? lg_policy.clock.ninject : MAX_INJECT;
	memcpy(in, lg_policy.clock.inject, n * sizeof(in[0]));
	qsort(in, n, sizeof(in[0]), cmp_inject);
	clk.ninject = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (in[i].clock != LG_CLOCK_REALTIME)
			continue;
		clk.inject_due_ns[clk.ninject] = lg_started_ns() + (uint64_t)in[i].at_ms * NS_PER_MS;
		clk.inject_step_ns[clk.ninject] = in[i].step_ms * NS_PER_MS;
		clk.ninject++;
	}
	atomic_store(&clk.inject_next, 0);
	rt = real_ns(CLOCK_REALTIME);
	atomic_store(&hot.inject_at_rt_ns, INT64_MAX);
	if (clk.ninject) {
		uint64_t mono = lg_now_ns();
		uint64_t due = clk.inject_due_ns[0];
		atomic_store(&hot.inject_at_rt_ns, rt + (due > mono ? (int64_t)(due - mono) : 0));
		lg_info("clock: %u injected realtime step(s) from this policy: a test-environment "
			"feature; remove clock.inject outside tests", clk.ninject);
	}
	if (read_offset(&off, &rt))
		atomic_store(&clk.base_off_ns, off);
	else
		atomic_store(&clk.base_off_ns, real_ns(CLOCK_REALTIME) - real_ns(CLOCK_MONOTONIC));
	if (clk.timerfd < 0)
		timerfd_open();
	if (!clk.task_registered && lg_guardian_every("clock", GUARDIAN_PERIOD_MS, guardian_task) == 0)
		clk.task_registered = true;
	atomic_store_explicit(&hot.on, 1, memory_order_release);
}

static void clock_atfork_child(void)
{
	if (!atomic_load(&hot.on))
		return;
	/* The timerfd's open file description is shared with the parent: a read here would take
	 * the parent's notice. Ours alone from now on. Injection state and the clamp mark carry
	 * over: the child's wall clock goes on where the parent's was. */
	int fd = clk.timerfd;
	clk.timerfd = -1;
	if (timerfd_is_ours(fd))
		syscall(SYS_close, fd);
	timerfd_open();
	reset_counters();
}

static int cmp_reader(const void *a, const void *b)
{
	const struct lg_snap_clock_reader *x = a, *y = b;

	if (x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

int lg_clock_snapshot(struct lg_snapshot *s)
{
	struct lg_snap_clock *c = &s->clock;

	if (!atomic_load(&hot.on))
		return 0;
	c->present = true;
	c->monotonic_regressions = atomic_load_explicit(&clk.mono_regressions, memory_order_relaxed);
	/* Holds that ended, and the one in progress so far. */
	uint64_t held = atomic_load(&clamp.clamped_ns), start = atomic_load(&clamp.hold_start_ns);
	uint64_t now = lg_now_ns();
	if (atomic_load(&clamp.hold_mark_ns) != 0 && now > start)
		held += now - start;
	c->clamped_ms = held / (uint64_t)NS_PER_MS;

	uint32_t nj = atomic_load_explicit(&clk.njumps, memory_order_acquire);
	if (nj > MAX_JUMPS)
		nj = MAX_JUMPS;
	c->jumps = lg_snapshot_alloc(s, sizeof(*c->jumps) * (nj ? nj : 1));
	for (uint32_t i = 0; c->jumps && i < nj; i++) {
		const struct jump *j = &clk.jumps[i];
		if (!atomic_load_explicit(&j->ready, memory_order_acquire))
			continue;
		c->jumps[c->njumps++] = (struct lg_snap_clock_jump){
			.clock = "realtime",
			.delta_ms = j->delta_ns / NS_PER_MS,
			.unix_ms = j->unix_ms,
			.stack = atomic_load_explicit(&j->stack, memory_order_relaxed),
		};
	}

	/* Only pages ever written hold readers: the others are skipped unread, since reading a page
	 * of the table can make it resident (self_bytes counts it then). */
	unsigned char present[(READER_SLOTS * sizeof(struct reader) + LG_PAGE - 1) / LG_PAGE];
	if (clk.readers)
		lg_mem_pages_present(clk.readers, READER_SLOTS * sizeof(*clk.readers), present);
#define READER_PRESENT(i) (present[(i) * sizeof(struct reader) / LG_PAGE] & 1)
	size_t nr = 0;
	for (uint32_t i = 0; clk.readers && i < READER_SLOTS; i++)
		nr += READER_PRESENT(i) &&
		      atomic_load_explicit(&clk.readers[i].stack, memory_order_relaxed) != 0;
	c->readers = lg_snapshot_alloc(s, sizeof(*c->readers) * (nr ? nr : 1));
	for (uint32_t i = 0; c->readers && clk.readers && i < READER_SLOTS && c->nreaders < nr; i++) {
		if (!READER_PRESENT(i))
			continue;
		uint32_t stack = atomic_load_explicit(&clk.readers[i].stack, memory_order_acquire);
		if (stack)
			c->readers[c->nreaders++] = (struct lg_snap_clock_reader){
				.stack = stack,
				.calls = atomic_load_explicit(&clk.readers[i].calls,
							      memory_order_relaxed),
			};
	}
#undef READER_PRESENT
	if (c->readers)
		qsort(c->readers, c->nreaders, sizeof(*c->readers), cmp_reader);
	return 0;
}

static void clock_boot(void)
{
	lg_clock_init();
}

static int clock_snapshot(struct lg_snapshot *s)
{
	return lg_clock_snapshot(s);
}

LG_GUARD(clock, .order = 60, .init = clock_boot, .atfork_child = clock_atfork_child,
	 .snapshot = clock_snapshot);
