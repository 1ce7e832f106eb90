/* The public API (guard.h), beyond the limiter, which lives with the limits in limiter.c.
 *
 * These are the entry points of a program that links libguard (libguard.a through pkg-config, or
 * cgo) rather than preloading it: the runtime's constructor leaves such a program unguarded, and
 * guard_start() is what boots it. A preloaded guard is already READY by main, so the same calls
 * work there too.
 */
#include "libguard/guard.h"
#include "libguard/internal.h"

#include <errno.h>
#include <string.h>

LG_EXPORT int guard_start(const char *policy_path)
{
	int st = lg_state();

	if (st == LG_READY) {
		/* Preloaded (or started before) with another policy: the running one stays, since
		 * hooks have been acting on it; say so once rather than pretend to switch. */
		static _Atomic int warned;
		if (policy_path && *policy_path && strcmp(policy_path, lg_policy_source()) != 0 &&
		    !atomic_exchange(&warned, 1))
			lg_warn("guard_start(\"%s\"): already running with policy %s; unset LD_PRELOAD "
				"or GUARD_POLICY to choose the policy from the program", policy_path,
				lg_policy_source());
		return 0;
	}
	if (st == LG_DISABLED)
		return -ECANCELED;
	if (st == LG_EXITING)
		return -ECANCELED;
	return lg_init(policy_path);
}

LG_EXPORT int guard_report(const char *reason)
{
	if (lg_state() != LG_READY)
		return -EAGAIN;
	/* The report schema knows four reasons; a program's own label is for its log only. */
	if (reason && strcmp(reason, "api") != 0)
		lg_debug("report requested by the program: %s", reason);
	return lg_report_write("api");
}

LG_EXPORT void guard_stats(struct guard_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	int st = lg_state();
	if (st != LG_READY && st != LG_EXITING)
		return;
	/* Each figure is one relaxed atomic load in its guard: no lock, callable from a hot loop. */
	out->heap_live_bytes = lg_heap_live_bytes();
	out->fds_open = lg_fd_open_count();
	out->threads_live = lg_threads_live();
	out->violations = lg_violations_total();
}
