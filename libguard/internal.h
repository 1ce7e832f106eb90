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
};

extern LG_TLS struct lg_thread lg_tls;
extern _Atomic int lg_state_var;
extern struct lg_policy lg_policy;   /* valid from BOOTING on; never changes while READY */

static inline int lg_state(void)
{
	return atomic_load_explicit(&lg_state_var, memory_order_acquire);
}

/* The one check every hook makes before doing guard work. */
static inline bool lg_active(void)
{
	return LG_LIKELY(atomic_load_explicit(&lg_state_var, memory_order_relaxed) == LG_READY) &&
	       lg_tls.busy == 0;
}

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

/* A private jemalloc arena without tcache; falls back to mmap pages if the arena cannot be made.
 * Safe to call from any thread and before init (it boots itself). Never calls the malloc hooks. */
void *lg_mem_alloc(size_t size);
void *lg_mem_calloc(size_t n, size_t size);
void *lg_mem_realloc(void *p, size_t size);
void lg_mem_free(void *p);
char *lg_mem_strdup(const char *s);
uint64_t lg_mem_self_bytes(void);    /* guard.self_bytes: own heap plus registered mmap regions */
void lg_mem_account_mmap(int64_t delta);  /* for guards that mmap their own tables */

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
bool lg_guardian_is_self(void);
/* The guard's own descriptors (not the program's: never counted, never closed for it). */
bool lg_guardian_owns_fd(int fd);
/* fork: the child has no guardian thread; start a new one. */
void lg_guardian_after_fork_child(void);

/* ---------------------------------------------------------------------------------------------
 * stack.c: capture and interning; symbol.c: symbolization at report time
 * ------------------------------------------------------------------------------------------- */

#define LG_STACK_MAX_DEPTH 128

void lg_stack_init(uint32_t max_depth);
/* Capture the caller's stack, skipping `skip` innermost frames of the guard, and intern it.
 * Returns a stack id > 0, or 0 when no stack could be had. Takes no lock while unwinding. */
uint32_t lg_stack_capture(unsigned skip);
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
	void (*at_exit)(void);                      /* before the exit report */
};
#define LG_GUARD(id, ...)                                                                        \
	static const struct lg_guard_desc lg_guard_desc_##id                                     \
		__attribute__((used, section("lg_guards"), aligned(8))) = { .name = #id, __VA_ARGS__ }

/* Figures for guard_stats() (api.c); each guard that keeps one defines it. */
uint64_t lg_heap_live_bytes(void);
uint64_t lg_fd_open_count(void);
uint64_t lg_threads_live(void);

/* heap.c */
void lg_heap_init(void);
void lg_heap_atfork_child(void);
/* Slow path of every allocation hook: the countdown went below zero. Samples (or re-arms the
 * countdown) and returns p unchanged. */
void *lg_heap_on_alloc_slow(void *p, size_t size);
/* Pre-filter for free: true if p may be a sampled block (false = certainly not). */
bool lg_heap_maybe_sampled(const void *p);
void lg_heap_on_free(void *p);
/* Before an allocation in enforce mode: false = refuse (ENOMEM). Called only on the slow path. */
bool lg_heap_admit(size_t size);
int lg_heap_snapshot(struct lg_snapshot *s);

#endif
