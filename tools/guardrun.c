/* guardrun: run a program under libguard.
 *
 *   guardrun [--policy FILE] [--strict] [--report-dir DIR] [--quiet] -- PROGRAM [ARGS...]
 *   guardrun --check FILE
 *
 * It validates the policy before starting anything, preloads libguard.so (found next to itself,
 * in ../lib, or in the install prefix), passes the program's exit status through (a program
 * killed by a signal makes guardrun die of the same signal), and tells on stderr where the
 * report went. It is never loaded into the program itself.
 */
#include "policy/policy.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LG_PREFIX
#define LG_PREFIX "/usr/local"
#endif

static pid_t child_pid;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: guardrun [--policy FILE] [--strict] [--report-dir DIR] [--quiet] -- PROGRAM [ARGS...]\n"
		"       guardrun --check FILE\n"
		"Runs PROGRAM under libguard (LD_PRELOAD) and prints where the report went.\n"
		"  --policy FILE      the policy (default: $GUARD_POLICY, else the embedded default)\n"
		"  --strict           an invalid policy stops the program (GUARD_STRICT=1)\n"
		"  --report-dir DIR   where reports go (GUARD_REPORT_DIR)\n"
		"  --quiet            do not print the report location\n"
		"  --check FILE       only validate a policy; exit 0 if valid, 2 if not\n");
}

static int find_library(char *out, size_t outlen)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(out, outlen, "%s/libguard.so", self);
		if (access(out, R_OK) == 0)
			return 0;
		snprintf(out, outlen, "%s/../lib/libguard.so", self);
		if (access(out, R_OK) == 0 && realpath(out, self))
			return snprintf(out, outlen, "%s", self), 0;
	}
	snprintf(out, outlen, "%s/lib/libguard.so", LG_PREFIX);
	return access(out, R_OK) == 0 ? 0 : -ENOENT;
}

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static void absolute(const char *path, char *out, size_t outlen)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(out, outlen, "%s", path);
	else
		snprintf(out, outlen, "%s/%s", cwd, path);
}

static bool writable_dir(const char *dir)
{
	struct stat st;
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && access(dir, W_OK | X_OK) == 0;
}

/* The glob that matches this pid's reports: %p is known, %e and %t are not (a script's %e is its
 * interpreter's name), so they match anything. */
static void report_glob(char *out, size_t outlen, const char *dir, const char *tmpl, pid_t pid)
{
	size_t n = (size_t)snprintf(out, outlen, "%s/", dir);

	for (const char *p = tmpl; *p && n + 16 < outlen; p++) {
		if (*p == '%' && p[1]) {
			p++;
			if (*p == 'p')
				n += (size_t)snprintf(out + n, outlen - n, "%d", (int)pid);
			else if (*p == '%')
				out[n++] = '%';
			else
				out[n++] = '*';
		} else if (*p == '*' || *p == '?' || *p == '[') {
			out[n++] = '\\';
			out[n++] = *p;
		} else {
			out[n++] = *p;
		}
	}
	snprintf(out + n, outlen - n, ".json");
}

int main(int argc, char **argv)
{
	const char *policy_path = NULL, *report_dir = NULL, *check = NULL;
	bool strict = false, quiet = false;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--policy") == 0 && i + 1 < argc) {
			policy_path = argv[++i];
		} else if (strcmp(a, "--report-dir") == 0 && i + 1 < argc) {
			report_dir = argv[++i];
		} else if (strcmp(a, "--check") == 0 && i + 1 < argc) {
			check = argv[++i];
		} else if (strcmp(a, "--strict") == 0) {
			strict = true;
		} else if (strcmp(a, "--quiet") == 0) {
			quiet = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (a[0] == '-') {
			fprintf(stderr, "guardrun: error: unknown option %s\n", a);
			usage(stderr);
			return 2;
		} else {
			break;   /* the program, without a "--" */
		}
	}

	struct lg_policy policy;
	char err[600];
	if (check) {
		if (lg_policy_load_file(check, &policy, err, sizeof(err)) != 0) {
			fprintf(stderr, "guardrun: error: %s\n", err);
			return 2;
		}
		printf("%s: valid policy (mode %s)\n", check, lg_policy_mode_name(policy.mode));
		return 0;
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}

	if (!policy_path)
		policy_path = getenv("GUARD_POLICY");
	char policy_abs[PATH_MAX] = "";
	int rc = policy_path && *policy_path
			 ? lg_policy_load_file(policy_path, &policy, err, sizeof(err))
			 : lg_policy_parse(lg_policy_default_json, lg_policy_default_json_len, "default",
					   &policy, err, sizeof(err));
	if (rc != 0) {
		/* Say it before the program starts; --strict makes it final, as GUARD_STRICT would. */
		fprintf(stderr, "guardrun: error: %s\n", err);
		if (strict)
			return 2;
		fprintf(stderr, "guardrun: warning: running the program unguarded\n");
	}
	if (policy_path && *policy_path)
		absolute(policy_path, policy_abs, sizeof(policy_abs));

	/* Where reports go, decided here so that this process knows where to look. */
	char dir[PATH_MAX];
	const char *asked = report_dir ? report_dir : getenv("GUARD_REPORT_DIR");
	if ((!asked || !*asked) && rc == 0 && policy.report.dir[0])
		asked = policy.report.dir;
	if (asked && *asked) {
		absolute(asked, dir, sizeof(dir));
	} else if (!getcwd(dir, sizeof(dir)) || !writable_dir(dir)) {
		snprintf(dir, sizeof(dir), "/tmp");
	}

	char lib[PATH_MAX];
	if (find_library(lib, sizeof(lib)) != 0) {
		fprintf(stderr, "guardrun: error: libguard.so not found next to guardrun or in %s/lib\n",
			LG_PREFIX);
		return 2;
	}

	char preload[2 * PATH_MAX];
	const char *old = getenv("LD_PRELOAD");
	snprintf(preload, sizeof(preload), "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
	setenv("LD_PRELOAD", preload, 1);
	if (policy_abs[0])
		setenv("GUARD_POLICY", policy_abs, 1);
	setenv("GUARD_REPORT_DIR", dir, 1);
	if (strict)
		setenv("GUARD_STRICT", "1", 1);

	struct sigaction sa = { .sa_handler = forward_signal };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
	for (size_t k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++)
		sigaction(forwarded[k], &sa, NULL);

	child_pid = fork();
	if (child_pid < 0) {
		fprintf(stderr, "guardrun: error: fork: %s\n", strerror(errno));
		return 2;
	}
	if (child_pid == 0) {
		execvp(argv[i], argv + i);
		fprintf(stderr, "guardrun: error: cannot run %s: %s\n", argv[i], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	int status;
	while (waitpid(child_pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "guardrun: error: waitpid: %s\n", strerror(errno));
			return 2;
		}
	}

	if (!quiet && rc == 0) {
		char pattern[PATH_MAX + 300];
		glob_t g;
		report_glob(pattern, sizeof(pattern), dir, policy.report.name, child_pid);
		if (glob(pattern, 0, NULL, &g) == 0) {
			for (size_t k = 0; k < g.gl_pathc; k++)
				fprintf(stderr, "guardrun: report: %s\n", g.gl_pathv[k]);
			globfree(&g);
		} else if (policy.report.at_exit && (policy.report.formats & LG_FORMAT_JSON)) {
			fprintf(stderr, "guardrun: no report in %s (a program that ends with _exit or a "
					"signal writes none at exit)\n", dir);
		}
	}

	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		raise(sig);
		return 128 + sig;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}
