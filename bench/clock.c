/* Per-call cost of the clock calls a program makes most: clock_gettime(CLOCK_MONOTONIC),
 * clock_gettime(CLOCK_REALTIME) and gettimeofday. Run plainly, under libguard and under
 * libfaketime by bench/clock.sh; prints "name ns_per_call" lines.
 *
 * The loop times itself with the raw system call, so the measured library never sees the
 * bracketing reads. Each figure is the best of a few rounds: the machine is shared.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile long sink;

static double bench_clock(clockid_t id, long n)
{
	struct timespec ts;
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		clock_gettime(id, &ts);
		sink += ts.tv_nsec;
	}
	return (now_ns() - t0) / (double)n;
}

static double bench_gettimeofday(long n)
{
	struct timeval tv;
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		gettimeofday(&tv, NULL);
		sink += tv.tv_usec;
	}
	return (now_ns() - t0) / (double)n;
}

static double best(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000000;
	double mono = 1e18, real = 1e18, gtod = 1e18;

	for (int round = 0; round < 3; round++) {
		mono = best(mono, bench_clock(CLOCK_MONOTONIC, n));
		real = best(real, bench_clock(CLOCK_REALTIME, n));
		gtod = best(gtod, bench_gettimeofday(n));
	}
	/* The script checks that the library it measures really was preloaded. */
	printf("libguard_loaded %d\n", dlsym(RTLD_DEFAULT, "guard_start") != NULL);
	printf("clock_gettime_monotonic %.2f\n", mono);
	printf("clock_gettime_realtime %.2f\n", real);
	printf("gettimeofday %.2f\n", gtod);
	return 0;
}
