/* Names of policy values, for messages and reports. The parser reads signal names through
 * lg_policy_signal_name() too, so a name it accepts is always a name a report can print. */
#include "policy/policy.h"

#include <signal.h>

const char *lg_policy_mode_name(enum lg_mode m)
{
	switch (m) {
	case LG_MODE_OBSERVE:
		return "observe";
	case LG_MODE_ENFORCE:
		return "enforce";
	}
	return "unknown";
}

/* The standard Linux signals by number. Real-time signals have no fixed name (glibc reserves the
 * first few for itself and moves SIGRTMIN at run time), so they are not offered. */
static const char *const signal_names[] = {
	[SIGHUP] = "SIGHUP",
	[SIGINT] = "SIGINT",
	[SIGQUIT] = "SIGQUIT",
	[SIGILL] = "SIGILL",
	[SIGTRAP] = "SIGTRAP",
	[SIGABRT] = "SIGABRT",
	[SIGBUS] = "SIGBUS",
	[SIGFPE] = "SIGFPE",
	[SIGKILL] = "SIGKILL",
	[SIGUSR1] = "SIGUSR1",
	[SIGSEGV] = "SIGSEGV",
	[SIGUSR2] = "SIGUSR2",
	[SIGPIPE] = "SIGPIPE",
	[SIGALRM] = "SIGALRM",
	[SIGTERM] = "SIGTERM",
#ifdef SIGSTKFLT
	[SIGSTKFLT] = "SIGSTKFLT",
#endif
	[SIGCHLD] = "SIGCHLD",
	[SIGCONT] = "SIGCONT",
	[SIGSTOP] = "SIGSTOP",
	[SIGTSTP] = "SIGTSTP",
	[SIGTTIN] = "SIGTTIN",
	[SIGTTOU] = "SIGTTOU",
	[SIGURG] = "SIGURG",
	[SIGXCPU] = "SIGXCPU",
	[SIGXFSZ] = "SIGXFSZ",
	[SIGVTALRM] = "SIGVTALRM",
	[SIGPROF] = "SIGPROF",
	[SIGWINCH] = "SIGWINCH",
	[SIGIO] = "SIGIO",
#ifdef SIGPWR
	[SIGPWR] = "SIGPWR",
#endif
	[SIGSYS] = "SIGSYS",
};

const char *lg_policy_signal_name(int signo)
{
	if (signo <= 0 || (unsigned)signo >= sizeof(signal_names) / sizeof(signal_names[0]))
		return NULL;
	return signal_names[signo];
}
