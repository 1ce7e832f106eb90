/* Levelled, capped logging.
 *
 * Every line is formatted into a stack buffer and written with one write(2) to stderr, so lines
 * from several threads never interleave and nothing allocates. A storm of events (an fd limit
 * hit ten thousand times a second) must not flood the host's stderr: after a burst of lines,
 * further lines are dropped and counted, and the count is told once logging resumes.
 */
#include "libguard/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOG_BURST 20         /* lines allowed at once */
#define LOG_REFILL_NS 100000000ull   /* one more line every 100 ms after the burst */

static int log_level = LG_LOG_WARN;
static _Atomic uint64_t log_tat;       /* GCRA theoretical arrival time, ns */
static _Atomic uint64_t log_dropped;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void lg_log_init(void)
{
	const char *v = getenv("GUARD_LOG");

	if (!v)
		return;
	for (int i = 0; i < (int)LG_ARRAY_SIZE(level_names); i++) {
		if (strcmp(v, level_names[i]) == 0 || (i == LG_LOG_WARN && strcmp(v, "warn") == 0))
			log_level = i;
	}
}

/* The same GCRA the rate limiter uses, on a private word: one CAS, no lock. */
static bool log_admit(void)
{
	uint64_t now = lg_now_ns();
	uint64_t tolerance = LOG_REFILL_NS * (LOG_BURST - 1);
	uint64_t tat = atomic_load_explicit(&log_tat, memory_order_relaxed);

	for (;;) {
		uint64_t base = tat > now ? tat : now;
		if (base - now > tolerance)
			return false;
		if (atomic_compare_exchange_weak_explicit(&log_tat, &tat, base + LOG_REFILL_NS,
							  memory_order_relaxed, memory_order_relaxed))
			return true;
	}
}

void lg_log(int level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno;
	size_t n;
	va_list ap;

	if (level > log_level)
		return;
	/* Errors always get through: there are few, and each one matters. */
	if (level > LG_LOG_ERROR && !log_admit()) {
		atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);
		errno = saved;
		return;
	}
	lg_enter();
	uint64_t dropped = atomic_exchange_explicit(&log_dropped, 0, memory_order_relaxed);
	n = 0;
	if (dropped) {
		int k = snprintf(line, sizeof(line),
				 "libguard: warning: %llu messages were suppressed\n",
				 (unsigned long long)dropped);
		if (k > 0)
			syscall(SYS_write, 2, line, (size_t)k);
	}
	int k = snprintf(line, sizeof(line), "libguard: %s: ", level_names[level]);
	n = k > 0 ? (size_t)k : 0;
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (k > 0)
		n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k : sizeof(line) - n - 2;
	line[n++] = '\n';
	syscall(SYS_write, 2, line, n);
	lg_leave();
	errno = saved;
}
