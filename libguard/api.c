/* The public API (guard.h) beyond the limiter (limiter.c). */
#include "libguard/guard.h"
#include "libguard/internal.h"

#include <errno.h>
#include <string.h>

LG_EXPORT int guard_start(const char *policy_path)
{
	int st = lg_state();

	if (st == LG_READY)
		return 0;
	if (st == LG_DISABLED)
		return -ECANCELED;
	return lg_init(policy_path);
}

LG_EXPORT int guard_report(const char *reason)
{
	(void)reason;   /* the contract names the reason "api" whatever the caller says */
	if (lg_state() != LG_READY)
		return -EAGAIN;
	return lg_report_write("api");
}

/* Filled by the guards that keep the figure; zero otherwise. */
__attribute__((weak)) uint64_t lg_heap_live_bytes(void) { return 0; }
__attribute__((weak)) uint64_t lg_fd_open_count(void) { return 0; }
__attribute__((weak)) uint64_t lg_threads_live(void) { return 0; }

LG_EXPORT void guard_stats(struct guard_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (lg_state() != LG_READY && lg_state() != LG_EXITING)
		return;
	out->heap_live_bytes = lg_heap_live_bytes();
	out->fds_open = lg_fd_open_count();
	out->threads_live = lg_threads_live();
	out->violations = lg_violations_total();
}
