/* Mutex benchmark: the cost of an uncontended lock+unlock pair, and the throughput of two
 * threads fighting over one mutex. Run by bench/mutex.sh plain, under libguard and under a
 * mutrace-style hook that reads the clock around every lock (bench/mutex_timed_hook.c).
 *
 *   mutex uncontended [--threaded]   prints ns per lock+unlock pair (best of 3 rounds); with
 *                                    --threaded an idle second thread exists, so glibc cannot
 *                                    take its single-threaded shortcuts
 *   mutex contended                  prints lock+unlock pairs per second, 2 threads
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long shared_counter;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *idle(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

static double uncontended(long iters)
{
	double best = 1e9;

	for (int round = 0; round < 3; round++) {
		double t0 = now_s();
		for (long i = 0; i < iters; i++) {
			pthread_mutex_lock(&mu);
			shared_counter++;
			pthread_mutex_unlock(&mu);
		}
		double ns = (now_s() - t0) * 1e9 / (double)iters;
		if (ns < best)
			best = ns;
	}
	return best;
}

/* Most of the time inside the lock and a little outside: the other thread usually finds it
 * held, so a good share of the acquisitions are contended (the report says how many). */
static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

static long contended_iters;

static void *fight(void *arg)
{
	(void)arg;
	for (long i = 0; i < contended_iters; i++) {
		pthread_mutex_lock(&mu);
		shared_counter++;
		spin(100);
		pthread_mutex_unlock(&mu);
		spin(10);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "uncontended") == 0) {
		pthread_t t;
		if (argc > 2 && strcmp(argv[2], "--threaded") == 0)
			pthread_create(&t, NULL, idle, NULL);
		printf("%.3f\n", uncontended(5000000));
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "contended") == 0) {
		pthread_t t[2];
		contended_iters = 200000;
		double t0 = now_s();
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, fight, NULL);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		printf("%.0f\n", 2.0 * (double)contended_iters / (now_s() - t0));
		return 0;
	}
	fprintf(stderr, "usage: mutex uncontended [--threaded] | contended\n");
	return 2;
}
