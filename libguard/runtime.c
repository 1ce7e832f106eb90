/* The runtime: init state machine, constructor and destructor, fork handling, per-thread state.
 *
 * Init runs in the library's constructor when the library is preloaded. When it is linked into a
 * program instead (static archive, cgo), nothing is guarded until the program calls
 * guard_start(), so that the program chooses its policy. Hooks before READY pass through.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <link.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

LG_TLS struct lg_thread lg_tls;
_Atomic int lg_state_var = LG_UNINIT;
struct lg_policy lg_policy;

static pthread_t init_thread;           /* who is booting (jemalloc's malloc_init_state idea) */
static uint64_t started_unix_ms, started_ns;
static char exe_path[LG_POLICY_PATH_MAX];
static char exe_name[256];
static char policy_source[LG_POLICY_PATH_MAX] = "default";

/* ---- clocks for the guard's own use ---- */

static void raw_clock(clockid_t id, struct timespec *ts)
{
	int (*fn)(clockid_t, struct timespec *) = NULL;

	if (atomic_load_explicit(&lg_real_ready, memory_order_acquire))
		fn = lg_real.clock_gettime;
	if (!fn || fn(id, ts) != 0)
		syscall(SYS_clock_gettime, id, ts);
}

uint64_t lg_now_ns(void)
{
	struct timespec ts;

	raw_clock(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t lg_unix_ms(void)
{
	struct timespec ts;

	raw_clock(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

uint64_t lg_started_unix_ms(void) { return started_unix_ms; }
uint64_t lg_started_ns(void) { return started_ns; }
const char *lg_exe_path(void) { return exe_path; }
const char *lg_exe_name(void) { return exe_name; }
const char *lg_policy_source(void) { return policy_source; }

int lg_fd_move_high(int fd)
{
	struct rlimit rl;

	if (fd < 0 || syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) != 0)
		return fd;
	/* Just under min(soft limit, 1024): above what shells and daemons name by hand (bash keeps
	 * its own at 10 and 255), and never growing the kernel's fd table past 1024 entries. */
	long top = rl.rlim_cur < 1024 ? (long)rl.rlim_cur : 1024;
	/* A small limit: the upper half, still out of the way of the lowest free numbers. */
	long base = top > 128 ? top - 64 : top / 2;
	if (base <= fd)
		return fd;
	int saved = errno;
	int high = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, base);
	if (high >= 0)
		syscall(SYS_close, fd);
	errno = saved;
	return high >= 0 ? high : fd;
}

uint64_t lg_random(void)
{
	uint64_t x = lg_tls.rng;

	if (LG_UNLIKELY(x == 0)) {
		/* Seed from the thread's stack address and the clock: distinct per thread. */
		x = lg_now_ns() ^ ((uint64_t)(uintptr_t)&x * 0x9e3779b97f4a7c15ull);
		if (x == 0)
			x = 0x2545f4914f6cdd1dull;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	lg_tls.rng = x;
	return x;
}

/* ---- the registered guards ---- */

extern const struct lg_guard_desc __start_lg_guards[] __attribute__((weak, visibility("hidden")));
extern const struct lg_guard_desc __stop_lg_guards[] __attribute__((weak, visibility("hidden")));

#define MAX_GUARDS 16
static const struct lg_guard_desc *guards[MAX_GUARDS];
static int nguards;

static void collect_guards(void)
{
	nguards = 0;
	for (const struct lg_guard_desc *g = __start_lg_guards; g && g < __stop_lg_guards; g++) {
		if (nguards == MAX_GUARDS)
			break;
		int i = nguards++;
		/* Insertion sort by order: a handful of entries. */
		while (i > 0 && guards[i - 1]->order > g->order) {
			guards[i] = guards[i - 1];
			i--;
		}
		guards[i] = g;
	}
}

int lg_guards_snapshot(struct lg_snapshot *s)
{
	for (int i = 0; i < nguards; i++) {
		if (guards[i]->snapshot)
			guards[i]->snapshot(s);
	}
	return 0;
}

void lg_guards_report_done(void)
{
	for (int i = 0; i < nguards; i++) {
		if (guards[i]->report_done)
			guards[i]->report_done();
	}
}

/* ---- identity ---- */

static void read_identity(void)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);

	exe_path[n > 0 ? n : 0] = '\0';
	/* %e is the name the program was started as (argv[0]'s basename), as `ps` shows it; for an
	 * interpreter that is "python3" rather than "python3.11". */
	extern char *program_invocation_short_name;
	const char *name = program_invocation_short_name;
	if (!name || !*name)
		name = lg_base_name(exe_path);
	snprintf(exe_name, sizeof(exe_name), "%s", *name ? name : "unknown");
}

/* ---- policy ---- */

static bool env_true(const char *name)
{
	const char *v = getenv(name);
	return v && *v && strcmp(v, "0") != 0;
}

static int load_policy(const char *path)
{
	char err[512];
	int rc;

	if (!path || !*path)
		path = getenv("GUARD_POLICY");
	if (path && *path) {
		rc = lg_policy_load_file(path, &lg_policy, err, sizeof(err));
		/* Keep the path as given: it is what the user typed, and what they will look for. */
		snprintf(policy_source, sizeof(policy_source), "%s", path);
	} else {
		rc = lg_policy_parse(lg_policy_default_json, lg_policy_default_json_len, "default",
				     &lg_policy, err, sizeof(err));
		snprintf(policy_source, sizeof(policy_source), "default");
	}
	if (rc == 0)
		return 0;
	if (env_true("GUARD_STRICT")) {
		lg_error("%s", err);
		/* Strict mode asks for this: the program must not start unguarded. Before main. */
		_exit(2);
	}
	lg_error("%s (running unguarded; GUARD_STRICT=1 makes this fatal)", err);
	return rc;
}

/* ---- fork ---- */

static void atfork_prepare(void)
{
	lg_report_atfork_prepare();
}

static void atfork_parent(void)
{
	lg_report_atfork_parent();
}

static void atfork_child(void)
{
	lg_report_atfork_child();
	if (lg_state() != LG_READY)
		return;
	lg_enter();
	for (int i = 0; i < nguards; i++) {
		if (guards[i]->atfork_child)
			guards[i]->atfork_child();
	}
	lg_guardian_after_fork_child();
	lg_leave();
}

/* ---- signals ---- */

static void on_report_signal(int signo)
{
	(void)signo;
	/* Only wake the guardian: writing a report is not async-signal-safe. */
	lg_guardian_request_report();
}

static void install_signal(void)
{
	struct sigaction sa;

	if (!lg_policy.report.signal)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_report_signal;
	/* SA_ONSTACK: the Go runtime requires it of handlers installed by C code (os/signal docs);
	 * elsewhere it changes nothing unless the thread has an alternate stack. */
	sa.sa_flags = SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(lg_policy.report.signal, &sa, NULL) != 0)
		lg_warn("cannot install the report signal handler: %s", strerror(errno));
}

/* ---- init ---- */

int lg_init(const char *policy_path)
{
	int expected = LG_UNINIT;

	if (!atomic_compare_exchange_strong(&lg_state_var, &expected, LG_BOOTING))
		return expected == LG_READY ? 0 : -EALREADY;
	init_thread = pthread_self();
	lg_enter();
	started_ns = lg_now_ns();
	started_unix_ms = lg_unix_ms();
	lg_log_init();
	if (lg_real_init() != 0)
		lg_warn("some libc functions could not be found; their hooks pass through");
	lg_alloc_fast_entry();
	read_identity();

	int rc = load_policy(policy_path);
	if (rc != 0) {
		atomic_store(&lg_state_var, LG_DISABLED);
		lg_leave();
		return rc;
	}
	lg_stack_init(lg_policy.stacks.max_depth);
	lg_report_init();
	collect_guards();
	for (int i = 0; i < nguards; i++) {
		if (guards[i]->init)
			guards[i]->init();
	}
	static bool atfork_done;
	if (!atfork_done) {
		pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
		atfork_done = true;
	}
	install_signal();
	if (!lg_heap_sampling())
		lg_alloc_rebind();
	atomic_store_explicit(&lg_state_var, LG_READY, memory_order_release);
	/* The guardian starts after READY: its first task may already run guard code. */
	lg_guardian_start();
	lg_leave();
	lg_debug("ready: policy %s, mode %s, %d guards", policy_source,
		 lg_policy_mode_name(lg_policy.mode), nguards);
	return 0;
}

bool lg_preload_names(const char *path)
{
	const char *preload = getenv("LD_PRELOAD");
	struct stat self, st;

	if (!preload || !*preload || !path || !path[0] || stat(path, &self) != 0)
		return false;
	const char *base = lg_base_name(path);
	for (const char *p = preload; *p;) {
		size_t n = strcspn(p, " :");
		char entry[LG_POLICY_PATH_MAX];
		if (n > 0 && n < sizeof(entry)) {
			memcpy(entry, p, n);
			entry[n] = '\0';
			if (strchr(entry, '/') ? stat(entry, &st) == 0 && st.st_dev == self.st_dev &&
						 st.st_ino == self.st_ino
					       : strcmp(entry, base) == 0)
				return true;
		}
		p += n;
		p += strspn(p, " :");
	}
	return false;
}

/* Preloaded, or linked into the program? Linked programs start the guard with guard_start().
 * Preloaded means: the object holding this code is not the executable (a static link puts it
 * there; glibc gives the executable's link_map an empty name) and LD_PRELOAD names that very
 * file. dladdr() reports the executable as argv[0], which cannot be compared with
 * /proc/self/exe. */
static bool preloaded(void)
{
	struct link_map *map = NULL;
	Dl_info info;

	if (!dladdr1((void *)preloaded, &info, (void **)&map, RTLD_DL_LINKMAP) || !map)
		return false;
	return lg_preload_names(map->l_name);
}

__attribute__((constructor(101))) static void lg_constructor(void)
{
	lg_enter();
	lg_real_init();
	readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
	bool disable = env_true("GUARD_DISABLE");
	bool pre = preloaded();
	lg_leave();
	if (disable) {
		atomic_store(&lg_state_var, LG_DISABLED);
		/* Disabled still forwards every allocation: through jemalloc's fast entry points,
		 * called straight from the program's PLT where that can be done. */
		lg_alloc_fast_entry();
		lg_alloc_rebind();
		return;
	}
	if (pre)
		lg_init(NULL);
	else
		lg_alloc_fast_entry();
}

__attribute__((destructor(101))) static void lg_destructor(void)
{
	int expected = LG_READY;

	/* exit() in a vfork child (its exec failed) runs this on the parent's memory: leave the
	 * parent's guard running, and write no report for the child. */
	if (lg_tls.busy >= LG_VFORK_BUSY)
		return;
	if (!atomic_compare_exchange_strong(&lg_state_var, &expected, LG_EXITING))
		return;
	lg_enter();
	for (int i = 0; i < nguards; i++) {
		if (guards[i]->at_exit)
			guards[i]->at_exit();
	}
	lg_guardian_stop();
	if (lg_policy.report.at_exit)
		lg_report_write("exit");
	lg_leave();
	if (lg_policy.report.violation_exit_code && lg_violations_total() > 0) {
		/* exit() has run the program's atexit handlers but not yet flushed stdio. */
		fflush(NULL);
		_exit(lg_policy.report.violation_exit_code);
	}
}
