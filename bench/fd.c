/* socket() + close() in a loop: what the fd guard adds to the calls that make and drop fds.
 * Run plainly and under libguard with fd.stacks on and off by bench/fd.sh; prints
 * "socket_close ns_per_pair" and "open_close ns_per_pair". Each figure is the best of a few
 * rounds: the machine is shared.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A distinct call chain, as a program's fd-creating code would have. */
__attribute__((noinline)) static int make_socket(void)
{
	return socket(AF_INET, SOCK_STREAM, 0);
}

static double bench_socket(long n)
{
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		close(make_socket());
	return (now_ns() - t0) / (double)n;
}

static double bench_open(long n)
{
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		close(open("/dev/null", O_RDONLY));
	return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	double s = 1e18, o = 1e18;

	for (int round = 0; round < 3; round++) {
		double x = bench_socket(n), y = bench_open(n);
		s = x < s ? x : s;
		o = y < o ? y : o;
	}
	printf("libguard_loaded %d\n", dlsym(RTLD_DEFAULT, "guard_start") != NULL);
	printf("socket_close %.1f\n", s);
	printf("open_close %.1f\n", o);
	return 0;
}
