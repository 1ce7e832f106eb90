/* Start-up cost of the library: spawn a short program many times, plain and under variants,
 * interleaved in rounds so that machine noise hits every variant alike; report the median
 * per-spawn time and the ratio to plain.
 *
 * usage: startup LIBGUARD_SO JEMALLOC_SO REPORT_DIR [ROUNDS] [SPAWNS_PER_ROUND] -- PROGRAM ARGS...
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct variant {
	const char *name;
	const char *env[4];
	double samples[64];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double run(char **argv, const char *const *extra, int spawns)
{
	char *envp[256];
	int n = 0;

	for (char **e = environ; *e && n < 240; e++) {
		if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "GUARD_", 6))
			envp[n++] = *e;
	}
	for (int i = 0; extra[i]; i++)
		envp[n++] = (char *)extra[i];
	envp[n] = NULL;
	double t0 = now_s();
	for (int i = 0; i < spawns; i++) {
		pid_t pid;
		int status;
		if (posix_spawn(&pid, argv[0], NULL, NULL, argv, envp) != 0) {
			perror("posix_spawn");
			exit(1);
		}
		waitpid(pid, &status, 0);
	}
	return (now_s() - t0) / spawns;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: startup LIBGUARD_SO JEMALLOC_SO REPORT_DIR [ROUNDS] [SPAWNS] -- PROGRAM ARGS...\n");
		return 2;
	}
	int rounds = 9, spawns = 40, i = 4;
	if (strcmp(argv[i], "--") != 0)
		rounds = atoi(argv[i++]);
	if (strcmp(argv[i], "--") != 0)
		spawns = atoi(argv[i++]);
	i++;
	if (rounds > 64)
		rounds = 64;
	static char pre_guard[4200], pre_je[4200], dir[4200];
	snprintf(pre_guard, sizeof(pre_guard), "LD_PRELOAD=%s", argv[1]);
	snprintf(pre_je, sizeof(pre_je), "LD_PRELOAD=%s", argv[2]);
	snprintf(dir, sizeof(dir), "GUARD_REPORT_DIR=%s", argv[3]);
	struct variant v[] = {
		{ "plain", { NULL } },
		{ "jemalloc alone", { pre_je, NULL } },
		{ "libguard, GUARD_DISABLE=1", { pre_guard, "GUARD_DISABLE=1", NULL } },
		{ "libguard, default policy", { pre_guard, dir, NULL } },
	};
	int nv = sizeof(v) / sizeof(v[0]);
	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < nv; k++)
			v[k].samples[r] = run(argv + i, v[k].env, spawns);
	double base = 0;
	printf("start-up of `%s` (%d rounds x %d spawns, median per spawn):\n", argv[i], rounds, spawns);
	for (int k = 0; k < nv; k++) {
		qsort(v[k].samples, (size_t)rounds, sizeof(double), cmp_double);
		double med = v[k].samples[rounds / 2];
		if (k == 0)
			base = med;
		printf("  %-28s %8.0f us   %.2fx plain   (+%.0f us)\n", v[k].name, med * 1e6, med / base,
		       (med - base) * 1e6);
	}
	return 0;
}
