/* The guardian: the one background thread of the guard.
 *
 * It runs periodic tasks (interval reports, idle reaping, fd reconciliation, growth windows) and
 * writes the reports that a signal asks for, since a signal handler may only wake it: it polls
 * an eventfd that the handler writes to (write(2) is async-signal-safe). All signals are blocked
 * in it, so the host's signals are never delivered to a thread it does not know.
 */
#include "libguard/internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_TASKS 16

struct task {
	const char *name;
	uint64_t period_ns;
	uint64_t next_ns;
	lg_task_fn fn;
};

static struct task tasks[MAX_TASKS];
static _Atomic int ntasks;
static int wake_fd = -1;
static _Atomic int running;
static _Atomic int stopping;
static _Atomic int report_requested;
static pthread_t guardian_thread;

int lg_guardian_every(const char *name, uint32_t period_ms, lg_task_fn fn)
{
	int i = atomic_load(&ntasks);

	if (i >= MAX_TASKS || period_ms == 0)
		return -ENOSPC;
	tasks[i] = (struct task){ .name = name, .period_ns = (uint64_t)period_ms * 1000000ull,
				  .next_ns = lg_now_ns() + (uint64_t)period_ms * 1000000ull,
				  .fn = fn };
	atomic_store(&ntasks, i + 1);
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
	lg_guardian_wake();
}

bool lg_guardian_owns_fd(int fd)
{
	return fd >= 0 && fd == wake_fd;
}

bool lg_guardian_is_self(void)
{
	return atomic_load(&running) && pthread_equal(pthread_self(), guardian_thread);
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
		uint64_t next = now + 60000000000ull;
		int n = atomic_load(&ntasks);

		for (int i = 0; i < n; i++) {
			if (tasks[i].next_ns <= now) {
				tasks[i].fn(now);
				tasks[i].next_ns = now + tasks[i].period_ns;
			}
			if (tasks[i].next_ns < next)
				next = tasks[i].next_ns;
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

int lg_guardian_start(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int expected = 0;

	if (!needed() || !atomic_compare_exchange_strong(&running, &expected, 1))
		return 0;
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
		lg_warn("cannot start the guardian thread: %s; periodic work is off", strerror(rc));
	}
	lg_leave();
	return -rc;
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
	lg_guardian_start();
}
