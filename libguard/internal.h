/* Cross-file internals of libguard, grouped by the file that defines them.
 *
 * Everything here is hidden (-fvisibility=hidden); only hooks/ and the public API in guard.h are
 * exported, through LG_EXPORT.
 */
#ifndef LG_INTERNAL_H
#define LG_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "policy/policy.h"

#define LG_VERSION "0.1.0"

#define LG_EXPORT __attribute__((visibility("default")))
#define LG_LIKELY(x) __builtin_expect(!!(x), 1)
#define LG_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* initial-exec: a TLS access is one %fs-relative load, never __tls_get_addr (which can allocate). */
#define LG_TLS __thread __attribute__((tls_model("initial-exec")))
#define LG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The file name at the end of a path (the whole path if it has no slash). */
static inline const char *lg_base_name(const char *path)
{
	const char *slash = __builtin_strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* ---------------------------------------------------------------------------------------------
 * runtime.c: state machine, init, per-thread state, clocks for the guard's own use
 * ------------------------------------------------------------------------------------------- */

/* UNINIT -> BOOTING -> READY -> EXITING. DISABLED is terminal: GUARD_DISABLE=1, or a linked (not
 * preloaded) library whose program never called guard_start(). Hooks act only in READY. */
enum lg_state { LG_UNINIT = 0, LG_BOOTING, LG_READY, LG_EXITING, LG_DISABLED };

/* Everything a thread keeps for the guard. Kept small: it lives in static TLS. */
struct lg_thread {
	int busy;                    /* > 0 while inside the guard: hooks pass straight through */
	int64_t heap_countdown;      /* bytes until the next sampled allocation; < 0 = slow path */
	uint64_t rng;                /* xorshift state, 0 = not seeded */
	uint64_t mono_last_ns;       /* last CLOCK_MONOTONIC this thread saw (regression check) */
	uint32_t realtime_countdown; /* realtime reads until the next sampled reader stack */
	uint32_t lock_countdown;     /* contended acquisitions until the next recorded stack */
	uint64_t lock_contended;     /* contended acquisitions by this thread */
	uint32_t poll_calls;         /* descriptor calls, for lg_guardian_poll */
};

extern LG_TLS struct lg_thread lg_tls;
extern _Atomic int lg_state_var;
extern struct lg_policy lg_policy;   /* valid from BOOTING on; never changes while READY */

static inline int lg_state(void)
{
	return atomic_load_explicit(&lg_state_var, memory_order_acquire);
}

/* vfork (hooks/vfork.c) adds LG_VFORK_BUSY to the calling thread's busy count: the child, which
 * runs on that thread's memory until it execs, passes through every hook. vfork takes it off
 * again in the parent as the system call returns there. */
#define LG_VFORK_BUSY 0x10000

/* The one check every hook makes before doing guard work. */
static inline bool lg_active(void)
{
	return LG_LIKELY(atomic_load_explicit(&lg_state_var, memory_order_relaxed) == LG_READY) &&
	       lg_tls.busy == 0;
}

/* Inside the guard's own work on this thread (not merely a vfork child's pass-through). */
static inline bool lg_own_call(void) { return (lg_tls.busy % LG_VFORK_BUSY) != 0; }

static inline void lg_enter(void) { lg_tls.busy++; }
static inline void lg_leave(void) { lg_tls.busy--; }

static inline bool lg_enforcing(void) { return lg_policy.mode == LG_MODE_ENFORCE; }

/* Boot the runtime (idempotent; the constructor calls it). policy_path NULL = $GUARD_POLICY or
 * the default. Returns 0, or -errno (policy errors return -EINVAL and leave the runtime DISABLED,
 * or exit with status 2 under GUARD_STRICT=1). */
int lg_init(const char *policy_path);

/* Monotonic and realtime nanoseconds from the real clock (never the clock hooks, never an
 * injected step). Safe before init and in signal handlers. */
uint64_t lg_now_ns(void);
uint64_t lg_unix_ms(void);
uint64_t lg_started_unix_ms(void);
uint64_t lg_started_ns(void);

const char *lg_exe_path(void);       /* /proc/self/exe at init */
const char *lg_exe_name(void);       /* program name for %e */
const char *lg_policy_source(void);  /* the policy path, or "default" */

/* Move one of the guard's own descriptors above the numbers programs pick by hand (a shell's
 * `exec 3>file` is dup2(x, 3): had fd 3 been the guardian's eventfd or libunwind's pipe, the
 * guard would write into the program's file). Returns the new fd (the old one is closed), or fd
 * unchanged if it cannot be moved. Raw syscalls only. */
int lg_fd_move_high(int fd);

/* 64-bit xorshift on this thread's state; seeded on first use. */
uint64_t lg_random(void);

/* ---------------------------------------------------------------------------------------------
 * log.c: levelled, capped logging; one write(2) per line, prefix "libguard: "
 * ------------------------------------------------------------------------------------------- */

enum lg_log_level { LG_LOG_ERROR = 0, LG_LOG_WARN = 1, LG_LOG_INFO = 2, LG_LOG_DEBUG = 3 };

/* Level from GUARD_LOG (error|warn|info|debug), default warn. */
void lg_log_init(void);
void lg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define lg_error(...) lg_log(LG_LOG_ERROR, __VA_ARGS__)
#define lg_warn(...) lg_log(LG_LOG_WARN, __VA_ARGS__)
#define lg_info(...) lg_log(LG_LOG_INFO, __VA_ARGS__)
#define lg_debug(...) lg_log(LG_LOG_DEBUG, __VA_ARGS__)

/* ---------------------------------------------------------------------------------------------
 * mem.c: the guard's own memory, kept out of the application's heap
 * ------------------------------------------------------------------------------------------- */

/* A private jemalloc arena without tcache (jemalloc's default arena if it cannot be made).
 * Safe to call from any thread and before init (it boots itself). Never calls the malloc hooks. */
void *lg_mem_alloc(size_t size);
void *lg_mem_calloc(size_t n, size_t size);
void *lg_mem_realloc(void *p, size_t size);
void lg_mem_free(void *p);
char *lg_mem_strdup(const char *s);
/* The guard's own heap, its arena's metadata, mmap'd tables (resident pages of registered ones). */
uint64_t lg_mem_self_bytes(void);
void lg_mem_account_mmap(int64_t delta);  /* for guards that mmap their own tables */
/* A sparsely touched mmap'd table: self_bytes counts its resident pages. */
void lg_mem_register_table(void *base, size_t len);
#define LG_PAGE 4096u
/* present[i] & 1: page i of [base, base + len) is resident (ever written, for private anonymous
 * memory). If the kernel cannot say, every page is marked present and false is returned. */
bool lg_mem_pages_present(const void *base, size_t len, unsigned char *present);
/* The arena's address range (its extents come from one reserved, size-aligned range): the heap
 * guard's sampled blocks are exactly the program's blocks inside it. Before the arena exists, and
 * without a range, mask 0 and base 1 match no pointer. */
struct lg_heap_region {
	uintptr_t mask, base;
};
extern struct lg_heap_region lg_heap_region;
/* mallocx flags for a block in the range (arena, no tcache chosen), or -1 if there is none. */
int lg_mem_sample_flags(void);
bool lg_mem_region_full(void);   /* an extent did not fit in the range */
size_t lg_mem_region_bytes(void);

/* The application's allocator (hooks/alloc.c forwards here). */
enum lg_backend { LG_BACKEND_JEMALLOC = 0, LG_BACKEND_SYSTEM = 1 };
struct lg_allocator {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t, size_t);
	size_t (*usable_size)(void *);
};
extern struct lg_allocator lg_alloc;
enum lg_backend lg_alloc_backend(void);
const char *lg_alloc_backend_name(void);
/* Pick the backend (GUARD_ALLOCATOR) on the first allocation; called by alloc hooks. */
void lg_alloc_boot(void);
/* Once the loader is done: switch to jemalloc's own malloc/free entry points (faster). */
void lg_alloc_fast_entry(void);
/* The heap guard is off for good: the loaded objects' PLT calls to malloc, free, calloc and
 * realloc go straight to the allocator (rebind.c). */
void lg_alloc_rebind(void);
/* Whether LD_PRELOAD names the file at path, as ld.so reads it (entries separated by spaces or
 * colons; one with a slash is that file, compared as a file, not as a string; one without is a
 * file name, as a DT_NEEDED name is searched for). runtime.c. */
bool lg_preload_names(const char *path);
/* jemalloc's "stats.allocated" (refreshing the epoch), or 0 with the system backend. */
uint64_t lg_alloc_allocated_bytes(void);

/* ---------------------------------------------------------------------------------------------
 * real.c: the real functions behind the hooks, resolved with dlsym(RTLD_NEXT)
 * ------------------------------------------------------------------------------------------- */

#include "libguard/real.h"

/* ---------------------------------------------------------------------------------------------
 * guardian.c: the one background thread
 * ------------------------------------------------------------------------------------------- */

typedef void (*lg_task_fn)(uint64_t now_ns);

/* Run fn every period_ms on the guardian thread. Call during init (or later); starts nothing. */
int lg_guardian_every(const char *name, uint32_t period_ms, lg_task_fn fn);
/* Start the thread if anything needs it (tasks, interval or signal reports). */
int lg_guardian_start(void);
void lg_guardian_stop(void);
/* Async-signal-safe: ask the guardian for a report with this reason ("signal", "interval"). */
void lg_guardian_request_report(void);
void lg_guardian_wake(void);
/* Run this task at the next turn rather than at its period (async-signal-safe). */
void lg_guardian_soon(lg_task_fn fn);
bool lg_guardian_is_self(void);
/* The guard's own descriptors (not the program's: never counted, never closed for it). */
bool lg_guardian_owns_fd(int fd);
/* The program dup2()s onto the guardian's wake fd: move ours to another number first. */
void lg_guardian_yield_fd(int fd);
/* fork: the child has no guardian thread; start a new one (or defer it). */
void lg_guardian_after_fork_child(void);
/* The thread is needed now (the program makes its first thread, a listener is held): start it
 * if it is deferred. Not from a signal handler. */
void lg_guardian_need_thread(void);

/* Deferred mode (see guardian.c): a single-threaded program has no guardian thread yet, and its
 * fd, socket and epoll calls run the periodic tasks. OFF: the thread runs, or nothing needs it;
 * IDLE: poll every 16th call; NOW: a report was asked for, start the thread at the next call. */
enum { LG_DEFERRED_OFF = 0, LG_DEFERRED_IDLE = 1, LG_DEFERRED_NOW = 2 };
extern _Atomic int lg_guardian_deferred;
void lg_guardian_poll_slow(void);

/* In hooks that make a syscall anyway, after the real call; not in hooks that signal handlers
 * use a lot (clock reads). One relaxed load when the thread runs; in a deferred single-threaded
 * program, a clock read every 16th call (every call for calls that block: epoll_wait). */
static inline void lg_guardian_poll_every(unsigned mask)
{
	int d = atomic_load_explicit(&lg_guardian_deferred, memory_order_relaxed);

	if (LG_UNLIKELY(d != LG_DEFERRED_OFF) &&
	    (d == LG_DEFERRED_NOW || (++lg_tls.poll_calls & mask) == 0))
		lg_guardian_poll_slow();
}
#define lg_guardian_poll() lg_guardian_poll_every(15)

/* Around calls that wait (hooks/wait.c, epoll_wait): every call is a turn, errno kept. */
static inline void lg_guardian_turn(void)
{
	if (lg_active()) {
		int err = errno;
		lg_guardian_poll_every(0);
		errno = err;
	}
}

/* ---------------------------------------------------------------------------------------------
 * stack.c: capture and interning; symbol.c: symbolization at report time
 * ------------------------------------------------------------------------------------------- */

#define LG_STACK_MAX_DEPTH 128

void lg_stack_init(uint32_t max_depth);
/* Capture the caller's stack, skipping `skip` innermost frames of the guard, and intern it.
 * Returns a stack id > 0, or 0 when no stack could be had. Takes no lock while unwinding. */
uint32_t lg_stack_capture(unsigned skip);

/* lg_stack_capture in two halves, for a slow path that inlines the capture: every capture
 * unwinds each frame it crosses (~8 ns each, more when cold), and inlined it has no frame of its
 * own. lg_stack_want: how many frames to unwind for skip (0: no capture now);
 * lg_stack_intern_from: the frames above the return address ret, less skip more, interned. */
#define LG_STACK_BUF (LG_STACK_MAX_DEPTH + 20)
int unw_backtrace(void **frames, int max);   /* libunwind.h, without its other declarations */
int lg_stack_want(unsigned skip);
void lg_stack_disable(void);
uint32_t lg_stack_intern_from(void *const *frames, int n, const void *ret, unsigned skip);

/* The capture itself, inlined: the stack recorded starts at the frame that ret returns to,
 * skip frames further out. A hook passes its own return address (__builtin_return_address(0)),
 * so its caller is the first frame whether the hook reached the slow path by a call or by a
 * tail jump (which leaves one frame fewer to unwind). */
static inline __attribute__((always_inline)) uint32_t lg_stack_capture_at(const void *ret,
									  unsigned skip)
{
	void *frames[LG_STACK_BUF];
	int want = lg_stack_want(skip), n;

	if (want <= 0)
		return 0;
	/* Busy while unwinding: the first unwind on a thread allocates (pthread_setspecific) and
	 * may open files (libunwind reads .eh_frame / .gnu_debugdata); those must pass straight
	 * through our hooks. No lock of ours is held here. */
	lg_enter();
	n = unw_backtrace(frames, want);
	lg_leave();
	return lg_stack_intern_from(frames, n, ret, skip);
}
/* Frames of an interned stack, innermost first. Returns the count (0 for an unknown id). */
uint32_t lg_stack_frames(uint32_t id, const uintptr_t **frames);
uint32_t lg_stack_count(void);
uint64_t lg_stack_self_bytes(void);

struct lg_symbol {
	const char *fn;      /* function name or NULL; owned by the symbolizer until lg_symbol_reset */
	const char *module;  /* path of the object holding addr, or NULL */
	uintptr_t offset;    /* addr minus the module's load base */
	uintptr_t fn_offset; /* addr minus the function's start */
};
/* Name the code at addr: dynamic symbols and, for the main executable and other objects that
 * keep one, the static .symtab. Call only at report time (it reads files, allocates). */
int lg_symbolize(uintptr_t addr, struct lg_symbol *out);
void lg_symbol_reset(void);
/* fork: the child re-initialises the symbolizer's lock (report.c's child handler calls it). */
void lg_symbol_atfork_child(void);

/* ---------------------------------------------------------------------------------------------
 * report.c: snapshots, the report driver, violations
 * ------------------------------------------------------------------------------------------- */

struct lg_snapshot;

/* Record one violation of `kind` ("fd.max", "heap.max", ...) at a stack (0 = none). kind must
 * be a string literal. Lock-free-ish; safe from any hook, not from a signal handler. */
void lg_violation(const char *kind, uint32_t stack);
uint64_t lg_violations_total(void);

/* Write every format the policy asks for; reason "exit", "interval", "signal" or "api".
 * Returns 0 or -errno. Takes the report lock: one report at a time. */
int lg_report_write(const char *reason);
/* The directory reports go to (resolved at init). */
const char *lg_report_dir(void);
int lg_report_init(void);
/* Path of the last JSON report written, "" if none. */
const char *lg_report_last_path(void);
void lg_report_atfork_prepare(void);
void lg_report_atfork_parent(void);
void lg_report_atfork_child(void);
/* Ask every registered guard to fill its section (runtime.c). */
int lg_guards_snapshot(struct lg_snapshot *s);
void lg_guards_report_done(void);   /* after a report, its files written */
/* Arena for snapshot contents: freed with the snapshot. */
void *lg_snapshot_alloc(struct lg_snapshot *s, size_t size);

/* ---------------------------------------------------------------------------------------------
 * The guards. Each is one file: lg_<guard>_init() at boot, lg_<guard>_on_<event>() for hooks,
 * lg_<guard>_snapshot() for reports, lg_<guard>_atfork_child() after fork.
 * ------------------------------------------------------------------------------------------- */

/* Each guard registers itself with LG_GUARD(); the runtime calls the hooks of every registered
 * guard in `order` (lower first), so adding a guard touches no other file. */
struct lg_guard_desc {
	const char *name;
	int order;
	void (*init)(void);                         /* at boot, with the policy loaded */
	void (*atfork_child)(void);                 /* in a forked child, single-threaded */
	int (*snapshot)(struct lg_snapshot *s);     /* fill its section of a report */
	void (*report_done)(void);                  /* the report's files are written */
	void (*at_exit)(void);                      /* before the exit report */
};
#define LG_GUARD(id, ...)                                                                        \
	static const struct lg_guard_desc lg_guard_desc_##id                                     \
		__attribute__((used, section("lg_guards"), aligned(8))) = { .name = #id, __VA_ARGS__ }

/* Figures for guard_stats() (api.c); each guard that keeps one defines it. */
/* The heap guard samples (it is enabled and its range was reserved). */
bool lg_heap_sampling(void);
uint64_t lg_heap_live_bytes(void);
uint64_t lg_fd_open_count(void);
uint64_t lg_threads_live(void);

/* heap.c: sampled allocation profiling, leak reports, growth detection (issue 3).
 *
 * The allocation hooks subtract each request from lg_tls.heap_countdown and call a slow path when
 * it goes below zero; the slow path decides whether the block is sampled, re-arms the countdown
 * and makes the allocation itself: a sampled block in the guard's address range (with a header),
 * any other with the program's allocator, or none when an enforced heap.max_bytes refuses it.
 * free, realloc and malloc_usable_size hand a pointer in that range (lg_heap_in_region) to the
 * heap guard; every other pointer goes straight to the allocator. */
enum lg_heap_op { LG_HEAP_MALLOC = 0, LG_HEAP_CALLOC = 1, LG_HEAP_MEMALIGN = 2 };
/* The countdown went below zero. MALLOC: (0, size); CALLOC: (n, size); MEMALIGN: (align, size).
 * Returns what the allocator returned, errno intact, or NULL + ENOMEM when an enforced
 * heap.max_bytes refuses it. ret: the hook's return address (a sampled block's stack starts at
 * the hook's caller); the hook may jump here as a tail call. */
void *lg_heap_alloc_slow(enum lg_heap_op op, size_t arg, size_t size, const void *ret);
/* realloc(p != NULL) whose countdown went below zero or whose p is in the range. */
void *lg_heap_realloc_slow(void *p, size_t size, const void *ret);
/* free and malloc_usable_size of a p in the range. */
void lg_heap_free(void *p);
size_t lg_heap_usable_size(void *p);
int lg_heap_snapshot(struct lg_snapshot *s);
/* One growth window (the guardian runs it every report.interval_s, else every 10 s). */
void lg_heap_tick(uint64_t now_ns);
/* The sampler's pieces, for tests: an exponential draw with this mean (bytes), and the inverse
 * of the probability that an allocation of size bytes is sampled at mean interval mean. */
int64_t lg_heap_draw_countdown(uint64_t mean);
double lg_heap_weight(uint64_t size, uint64_t mean);
/* The record of a sampled block (tests): true and its size and stack if p is sampled. */
bool lg_heap_record_of(const void *p, uint64_t *size, uint32_t *stack);
/* What sampling costs in memory beyond the program's own blocks: headers, size-class rounding,
 * and the thread caches of dense sampling. */
uint64_t lg_heap_self_bytes(void);

/* heap.c for heap_report.c: the estimates summed over the shards into *n entries indexed by
 * stack id (lg_mem_free them); the sampling mean; samples dropped; headers and rounding only. */
struct lg_heap_site_sum {
	int64_t bytes;
	double objects;
};
struct lg_heap_site_sum *lg_heap_aggregate(uint32_t *n);
uint64_t lg_heap_mean(void);
uint64_t lg_heap_dropped(void);
uint64_t lg_heap_sampled_overhead(void);
/* heap_jemalloc.c: the header and size-class rounding a sampled block of size bytes costs over
 * the program's own block (its pointer at the block's start + 1 << off_log2); a thread cache for
 * sampled blocks (jemalloc's index + 1, 0: none), counted in lg_heap_tcache_bytes while it
 * lives. */
int64_t lg_heap_block_overhead(uint64_t size, unsigned off_log2);
int lg_heap_tcache_create(void);
void lg_heap_tcache_destroy(int tcache);
uint64_t lg_heap_tcache_bytes(void);
/* heap_report.c's growth history across fork: its lock taken before the shards' and released
 * after them; in the child, the lock made anew, then (the guard's atfork_child) the history. */
enum lg_fork_phase { LG_FORK_PREPARE, LG_FORK_PARENT, LG_FORK_CHILD, LG_FORK_CHILD_LATER };
void lg_heap_growth_fork(enum lg_fork_phase phase);

/* Is p a sampled block (in the guard's address range)? No pointer is, before that range exists. */
static inline bool lg_heap_in_region(const void *p)
{
	return ((uintptr_t)p & __atomic_load_n(&lg_heap_region.mask, __ATOMIC_RELAXED)) ==
	       __atomic_load_n(&lg_heap_region.base, __ATOMIC_RELAXED);
}

/* fd.c (issue 4) and net.c (issue 5): fd table, limits, exhaustion, timeouts, idle reaping.
 * Their hook-facing functions are declared here by their author. */

/* Flags of an fd table entry. */
enum {
	LG_FDF_LISTEN = 1u << 0,       /* listen() succeeded on it */
	LG_FDF_ACCEPTED = 1u << 1,     /* returned by accept: counts against net.max_connections */
	LG_FDF_CONNECTED = 1u << 2,
	LG_FDF_CONNECTING = 1u << 3,   /* a non-blocking connect in progress (guardian watches it) */
	LG_FDF_USER_RCVTIMEO = 1u << 4,/* the program set its own SO_RCVTIMEO / SO_SNDTIMEO */
	LG_FDF_USER_SNDTIMEO = 1u << 5,
	LG_FDF_INHERITED = 1u << 6,    /* open before the guard started: no site */
	LG_FDF_IDLE_DONE = 1u << 7,    /* idle shutdown done (or, observe mode, reported) */
};
#define LG_FD_TRACKED (1u << 31)
/* One entry per fd number. info = 0: not tracked; else LG_FD_TRACKED | flags << 8 | kind. */
struct lg_fd_entry {
	_Atomic uint32_t info;
	_Atomic uint32_t stack;        /* creation stack (fd.stacks), 0 = none */
	_Atomic uint64_t created_ns;
	_Atomic uint32_t site2;        /* the connect site of a socket */
	_Atomic uint32_t port;         /* a listener's local port (for limits) */
	_Atomic int32_t ep_fd1;        /* 1 + the last epoll set it was registered in; 0 = none */
	_Atomic uint32_t ep_events;    /* ... with these events and data (to hold it back) */
	_Atomic uint64_t ep_data;
	_Atomic uint64_t held_until_ns;/* 0 = not held back */
	_Atomic uint64_t net_ns;       /* when a non-blocking connect started */
};
enum { LG_HOLD_FD = 0, LG_HOLD_LIMIT = 1 };

extern _Atomic int lg_fd_tracking_var;
extern _Atomic int lg_fd_nheld;
/* The one check fd and socket hooks make after lg_active(). */
static inline bool lg_fd_tracking(void)
{
	return atomic_load_explicit(&lg_fd_tracking_var, memory_order_relaxed) != 0;
}
struct lg_fd_entry *lg_fd_entry(int fd, bool grow);
int lg_fd_high(void);
/* Before creating n fds: 0, or -EMFILE when fd.max refuses (enforce, on_max fail). skip = frames
 * of the guard between the caller and the program (for the violation's stack). */
int lg_fd_admit(unsigned n, unsigned skip);
/* After a creating call, success or not: records fd.max violations (observe / report / EMFILE). */
void lg_fd_after_create(int rc, int err, unsigned skip);
/* True if creating n more fds would go beyond fd.max (reconciles first when it looks so). */
bool lg_fd_would_exceed(unsigned n);
/* The same without reconciling: a load and a compare. */
bool lg_fd_over(unsigned n);
void lg_fd_on_create(int fd, int kind, unsigned flags, unsigned skip);
void lg_fd_on_close(int fd);   /* before the real close */
void lg_fd_on_close_range(unsigned first, unsigned last, int flags);
void lg_fd_on_rlimit(int resource);
unsigned lg_fd_flags(int fd);
void lg_fd_set_flags(int fd, unsigned set, unsigned clear);
uint64_t lg_fd_accepted_count(void);
uint64_t lg_fd_max(void);
void lg_fd_reconcile(void);
void lg_fd_abort(void) __attribute__((noreturn));
bool lg_fd_is_reserve(int fd);
bool lg_fd_reserve_release(void);
void lg_fd_reserve_disown(int fd);
/* The guard's own descriptors (reserve, guardian, those made before the program ran). */
bool lg_fd_guard_owns(int fd);
/* Before the program dup2()s onto fd: give up (or move) any descriptor of ours at that number. */
void lg_fd_guard_yield(int fd);
void lg_fd_reserve_restore(void);
/* net.c: hold a listener's readiness back in epoll until until_ns (or, LG_HOLD_FD, until an fd
 * is closed). 0, or -1 when it is in no epoll set we know of (the caller sheds instead). */
int lg_fd_hold(int fd, uint64_t until_ns, int reason);
void lg_fd_unhold(int fd, bool rearm);
void lg_fd_release_exhausted(void);
uint64_t lg_fd_release_due(uint64_t now);
struct epoll_event;
int lg_fd_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
/* variant 0 epoll_wait, 1 epoll_pwait, 2 epoll_pwait2; timeout_ns < 0 = forever. */
int lg_fd_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int64_t timeout_ns,
		     const sigset_t *sigmask, int variant);
void lg_fd_holds_init(void);
void lg_fd_holds_atfork_child(void);

/* net.c: accept and connect with limits, timeouts and sheds; setsockopt bookkeeping. The hooks
 * call these in place of the real function (they call it themselves). */
int lg_net_accept(int lfd, struct sockaddr *addr, socklen_t *len, int flags);
int lg_net_connect(int fd, const struct sockaddr *addr, socklen_t len);
void lg_net_on_listen(int fd);
void lg_net_on_setsockopt(int fd, int level, int name);
/* net.c: one scan of the fd table for idle accepted connections and overdue non-blocking
 * connects; the guardian runs it every clamp(min(idle, connect timeout)/4, 20, 1000) ms. */
void lg_net_scan(uint64_t now_ns);

/* limiter.c (issue 6): GCRA buckets from policy "limits" (the algorithm is libguard/gcra.h), used
 * by the accept/connect hooks through net.c. The FIRST rule in policy order that matches a call
 * (call, port, addr: for accept the listener's local address, for connect the destination) is the
 * only one asked. Lock-free and allocation-free; an accept rule with an "addr" costs one
 * getsockname(2). A call that waits and asks again is counted limited once. */
struct sockaddr;
enum lg_verdict { LG_PASS = 0, LG_SHED = 1, LG_WAIT = 2, LG_FAIL = 3 };
/* accept: a rule with on_limit "wait" is asked before accept(2), one with "shed" after it (so a
 * shed decision is about a connection that exists). Each takes its token at that one point.
 * lg_limit_before_accept: LG_PASS (a token was taken, no wait rule matched, or observe mode
 * counted a would-be limit) or LG_WAIT: no token for *wait_ns (a blocking accept sleeps that long
 * and asks again; a non-blocking one returns EAGAIN and the listener's readiness is held back in
 * epoll until then). lg_limit_after_accept: LG_PASS or LG_SHED (reset the accepted connection).
 * port is the listener's local port. */
enum lg_verdict lg_limit_before_accept(int lfd, int port, uint64_t *wait_ns, int *rule);
enum lg_verdict lg_limit_after_accept(int lfd, int port, int *rule);
/* Before connect(2) to addr. LG_PASS, LG_WAIT (*wait_ns; the hook sleeps and asks again) or
 * LG_FAIL (the hook fails the connect with ECONNREFUSED). */
enum lg_verdict lg_limit_before_connect(const struct sockaddr *addr, uint32_t addrlen,
					uint64_t *wait_ns, int *rule);
/* *rule is the matching rule's index (-1: none matched, the call is not limited). After a hook
 * slept for a LG_WAIT verdict, it tells the rule how long, for the report's waited_ms. */
void lg_limit_waited(int rule, uint64_t waited_ns);

/* clock.c (issue 7), lock.c and thread.c (issue 8): declared here by their authors. */

/* clock.c (issue 7): jumps, monotonic regressions, clamp, injected steps, realtime readers.
 * Everything here is async-signal-safe (clocks are read from signal handlers). */
enum lg_rt_kind {
	LG_RT_NS = 0,      /* CLOCK_REALTIME, timespec_get(TIME_UTC) */
	LG_RT_US = 1,      /* gettimeofday: truncated to microseconds */
	LG_RT_COARSE = 2,  /* CLOCK_REALTIME_COARSE: lags by up to a tick */
	LG_RT_S = 3,       /* time(): truncated to seconds */
	LG_RT_KINDS = 4
};
/* A realtime reading the program is about to get (raw_ns from the real clock). Returns what it
 * gets instead: raw_ns unless an injected step or clamping changes it. */
int64_t lg_clock_on_realtime(int64_t raw_ns, enum lg_rt_kind kind);
/* A CLOCK_MONOTONIC reading; last_ns is lg_tls.mono_last_ns read before the clock was. */
void lg_clock_on_monotonic(uint64_t last_ns, uint64_t now_ns);
/* (Re)configure from lg_policy.clock, resetting every figure; the runtime calls it at boot. */
void lg_clock_init(void);
/* The guardian's periodic check (timerfd, offset, due injections); public for unit tests. */
void lg_clock_poll(uint64_t now_ns);
int lg_clock_snapshot(struct lg_snapshot *s);
/* The guard's own timerfd (TFD_TIMER_CANCEL_ON_SET), not the program's. */
bool lg_clock_owns_fd(int fd);

/* lock.c (issue 8): contention profile. The lock hooks call the real trylock first; only on
 * EBUSY do they call lg_lock_wait_begin() (true = track this wait), then the real blocking lock,
 * then lg_lock_wait_end() with its result. lg_lock_wait_begin must be called from a helper that
 * the exported hook calls (not as a tail call): the stack capture skips exactly these frames.
 * caller is the hook's return address. */
struct lg_lock_wait {
	uint64_t start_ns;
	uint32_t stack;    /* 0: not recorded with a stack */
	uint32_t weight;   /* 0: not sampled; else locks.sample (the de-biasing factor) */
};
bool lg_lock_wait_begin(struct lg_lock_wait *w, const void *caller);
void lg_lock_wait_end(const struct lg_lock_wait *w, int rc);
/* Sampled waits that got no slot in the table or no stack (e.g. jemalloc's own locks). */
uint64_t lg_lock_dropped(void);

/* thread.c (issue 8): pthread_create goes through lg_thread_create() (called directly from the
 * hook: it captures the creation stack skipping itself and the hook); a successful join,
 * tryjoin, timedjoin or detach calls lg_thread_released(); pthread_exit calls
 * lg_thread_on_exit() before the real one. */
int lg_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
		     void *arg);
void lg_thread_released(pthread_t t);
void lg_thread_on_exit(void);

#endif
