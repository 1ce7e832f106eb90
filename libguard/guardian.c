/* The guardian: the one background thread of the guard.
 *
 * It runs periodic tasks (interval reports, idle reaping, fd reconciliation, growth windows) and
 * writes the reports that a signal asks for, since a signal handler may only wake it: it polls
 * an eventfd that the handler writes to (write(2) is async-signal-safe). All signals are blocked
 * in it, so the host's signals are never delivered to a thread it does not know.
 *
 * It starts late in a program that has no thread of its own. The first thread makes a process
 * multi-threaded for good: glibc then takes real, atomic locks in every mutex and stdio call that
 * it skips while single-threaded (about 10 ns a lock and unlock here). So while the program is
 * single-threaded the guardian is "deferred": its periodic tasks run inside the program's own
 * calls (lg_guardian_poll in the fd, socket and epoll hooks, and in hooks/wait.c: sleeps, poll,
 * select), at most once a period, and the thread starts only when something needs it: the
 * program's first pthread_create, a report signal (served at the program's next such call), a
 * held listener, or a policy whose work must run while the program sleeps (interval reports,
 * idle reaping, connect timeouts). A task that runs in the program's call runs with the busy
 * flag set, like everything the guard does.
 */
#include "libguard/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_TASKS 16

struct task {
	const char *name;
	uint64_t period_ns;
	_Atomic uint64_t next_ns;   /* lg_guardian_soon() sets it from any thread */
	lg_task_fn fn;
};

static struct task tasks[MAX_TASKS];
static _Atomic int ntasks;
static _Atomic int wake_fd = -1;   /* moved when the program dup2()s onto it */
static _Atomic int running;
static _Atomic int stopping;
static _Atomic int report_requested;
static pthread_t guardian_thread;

/* LG_DEFERRED_*: see internal.h. */
_Atomic int lg_guardian_deferred;
/* Deferred mode: when the next task is due (monotonic ns), and who is running tasks now (the
 * program's threads and, at hand-over, the new guardian thread take turns). */
static _Atomic uint64_t next_due_ns;
static _Atomic int tasks_busy;

static int start_thread(void);

static bool want_thread;

int lg_guardian_every(const char *name, uint32_t period_ms, lg_task_fn fn)
{
	int i = atomic_load(&ntasks);

	if (i >= MAX_TASKS || period_ms == 0)
		return -ENOSPC;
	uint64_t first = lg_now_ns() + (uint64_t)period_ms * 1000000ull;
	tasks[i].name = name;
	tasks[i].period_ns = (uint64_t)period_ms * 1000000ull;
	tasks[i].fn = fn;
	atomic_store_explicit(&tasks[i].next_ns, first, memory_order_relaxed);
	atomic_store(&ntasks, i + 1);
	uint64_t due = atomic_load(&next_due_ns);
	while ((due == 0 || first < due) && !atomic_compare_exchange_weak(&next_due_ns, &due, first))
		;
	lg_guardian_wake();
	return 0;
}

void lg_guardian_wake(void)
{
	uint64_t one = 1;
	int fd = wake_fd;

	if (fd >= 0) {
		int saved = errno;
		/* Raw syscall: callable from a signal handler, and never through a hook. */
		syscall(SYS_write, fd, &one, sizeof(one));
		errno = saved;
	}
}

void lg_guardian_request_report(void)
{
	atomic_store_explicit(&report_requested, 1, memory_order_relaxed);
	/* No thread yet: the program's next descriptor call starts it (a signal handler cannot). */
	int expected = LG_DEFERRED_IDLE;
	atomic_compare_exchange_strong(&lg_guardian_deferred, &expected, LG_DEFERRED_NOW);
	lg_guardian_wake();
}

void lg_guardian_soon(lg_task_fn fn)
{
	int n = atomic_load(&ntasks);

	for (int i = 0; i < n; i++) {
		if (tasks[i].fn == fn)
			atomic_store_explicit(&tasks[i].next_ns, 0, memory_order_relaxed);
	}
	atomic_store(&next_due_ns, 0);
	int expected = LG_DEFERRED_IDLE;
	atomic_compare_exchange_strong(&lg_guardian_deferred, &expected, LG_DEFERRED_NOW);
	lg_guardian_wake();
}

bool lg_guardian_owns_fd(int fd)
{
	return fd >= 0 && fd == wake_fd;
}

void lg_guardian_yield_fd(int fd)
{
	if (fd < 0 || fd != wake_fd)
		return;
	int saved = errno;
	int moved = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, fd + 1);
	/* The program's dup2 closes the old number; the thread polls/reads wake_fd afresh. */
	wake_fd = moved >= 0 ? moved : -1;
	errno = saved;
}

bool lg_guardian_is_self(void)
{
	return atomic_load(&running) && pthread_equal(pthread_self(), guardian_thread);
}

/* Runs the tasks that are due; returns when the next one is. The caller holds tasks_busy. */
static uint64_t run_tasks(uint64_t now)
{
	uint64_t next = now + 60000000000ull;
	int n = atomic_load(&ntasks);

	for (int i = 0; i < n; i++) {
		uint64_t due = atomic_load_explicit(&tasks[i].next_ns, memory_order_relaxed);
		if (due <= now) {
			/* Set before running: a lg_guardian_soon() during the run is not lost. */
			due = now + tasks[i].period_ns;
			atomic_store_explicit(&tasks[i].next_ns, due, memory_order_relaxed);
			tasks[i].fn(now);
			due = atomic_load_explicit(&tasks[i].next_ns, memory_order_relaxed);
		}
		if (due < next)
			next = due;
	}
	return next;
}

static bool tasks_claim(void)
{
	return !atomic_exchange_explicit(&tasks_busy, 1, memory_order_acquire);
}

static void tasks_release(void)
{
	atomic_store_explicit(&tasks_busy, 0, memory_order_release);
}

void lg_guardian_poll_slow(void)
{
	int d = atomic_load(&lg_guardian_deferred);

	if (d == LG_DEFERRED_OFF || !lg_active())
		return;
	int saved = errno;
	if (atomic_load(&report_requested)) {
		start_thread();   /* it writes the report */
		errno = saved;
		return;
	}
	if (d == LG_DEFERRED_NOW) {
		int expected = LG_DEFERRED_NOW;
		atomic_compare_exchange_strong(&lg_guardian_deferred, &expected, LG_DEFERRED_IDLE);
	}
	uint64_t now = lg_now_ns();
	if (now >= atomic_load_explicit(&next_due_ns, memory_order_relaxed) && tasks_claim()) {
		/* The thread may have started since: from then on the tasks are its own. */
		if (atomic_load(&lg_guardian_deferred) == LG_DEFERRED_IDLE) {
			lg_enter();
			atomic_store_explicit(&next_due_ns, run_tasks(now), memory_order_relaxed);
			lg_leave();
		}
		tasks_release();
	}
	errno = saved;
}

static void *guardian_main(void *arg)
{
	(void)arg;
	lg_enter();   /* everything this thread does is the guard's own work */
	prctl(PR_SET_NAME, "lg-guardian", 0, 0, 0);
	uint64_t next_report = 0;
	uint64_t interval_ns = (uint64_t)lg_policy.report.interval_s * 1000000000ull;
	if (interval_ns)
		next_report = lg_now_ns() + interval_ns;

	while (!atomic_load(&stopping)) {
		uint64_t now = lg_now_ns();
		uint64_t next = now + 1000000ull;   /* a program thread is running the tasks: retry */

		if (tasks_claim()) {
			next = run_tasks(now);
			tasks_release();
		}
		if (interval_ns && next_report <= now) {
			lg_report_write("interval");
			next_report = now + interval_ns;
		}
		if (interval_ns && next_report < next)
			next = next_report;
		if (atomic_exchange(&report_requested, 0))
			lg_report_write("signal");

		now = lg_now_ns();
		int timeout_ms = next > now ? (int)((next - now + 999999) / 1000000) : 0;
		struct pollfd pfd = { .fd = wake_fd, .events = POLLIN };
		int rc = (int)syscall(SYS_poll, &pfd, 1, timeout_ms);
		if (rc > 0) {
			uint64_t v;
			syscall(SYS_read, wake_fd, &v, sizeof(v));
		}
	}
	lg_leave();
	return NULL;
}

static bool needed(void)
{
	return atomic_load(&ntasks) > 0 || lg_policy.report.interval_s > 0 ||
	       lg_policy.report.signal != 0;
}

/* Creates the thread. Callers made sure it is needed and not running. */
static int start_thread(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int expected = 0;

	if (!atomic_compare_exchange_strong(&running, &expected, 1))
		return 0;
	/* From here on the program's calls no longer run tasks (one that is running them now
	 * finishes first: the thread waits for tasks_busy). */
	int was = atomic_exchange(&lg_guardian_deferred, LG_DEFERRED_OFF);
	lg_enter();
	if (wake_fd < 0)
		wake_fd = lg_fd_move_high((int)syscall(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK));
	atomic_store(&stopping, 0);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int rc = LG_REAL(pthread_create)(&guardian_thread, &attr, guardian_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		atomic_store(&running, 0);
		/* Keep the periodic work going in the program's calls. */
		atomic_store(&lg_guardian_deferred, was ? LG_DEFERRED_IDLE : LG_DEFERRED_OFF);
		lg_warn("cannot start the guardian thread: %s; periodic work runs in the program's "
			"own calls", strerror(rc));
	}
	lg_leave();
	return -rc;
}

/* single: the process has one thread (glibc's lock fast paths are still on). */
static int start_or_defer(bool single)
{
	if (!needed() || atomic_load(&running))
		return 0;
	/* Work that must happen while the program sleeps needs the thread from the start; so does
	 * a program that already has threads (nothing to save there). */
	if (want_thread || lg_policy.report.interval_s > 0 || !single)
		return start_thread();
	atomic_store(&lg_guardian_deferred,
		     atomic_load(&report_requested) ? LG_DEFERRED_NOW : LG_DEFERRED_IDLE);
	return 0;
}

int lg_guardian_start(void)
{
	/* __libc_single_threaded (glibc 2.32): true until the process first creates a thread. */
	return start_or_defer(__libc_single_threaded);
}

void lg_guardian_need_thread(void)
{
	if (atomic_load_explicit(&lg_guardian_deferred, memory_order_relaxed) != LG_DEFERRED_OFF)
		start_thread();
	else if (lg_state() != LG_READY)
		want_thread = true;   /* at init: lg_guardian_start starts it */
}

void lg_guardian_stop(void)
{
	if (!atomic_load(&running) || lg_guardian_is_self())
		return;
	atomic_store(&stopping, 1);
	lg_guardian_wake();
	lg_enter();
	/* Bounded: an exiting process must never hang on its guard. */
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	if (LG_REAL(pthread_timedjoin_np)(guardian_thread, NULL, &deadline) == 0)
		atomic_store(&running, 0);
	lg_leave();
}

void lg_guardian_after_fork_child(void)
{
	/* The thread did not survive fork. Its eventfd did, but it is shared with the parent: a
	 * wake-up written here could be read by the parent's guardian (and the other way round), so
	 * the child gets an eventfd of its own. */
	if (wake_fd >= 0)
		syscall(SYS_close, wake_fd);
	wake_fd = -1;
	atomic_store(&running, 0);
	atomic_store(&report_requested, 0);
	atomic_store(&tasks_busy, 0);
	atomic_store(&lg_guardian_deferred, LG_DEFERRED_OFF);
	/* The child has one thread, whatever glibc's flag says: deferred, unless its policy needs
	 * the thread from the start. */
	start_or_defer(true);
}
