/* fork + exit of a child, as a service that forks helpers (or a shell) does it: the parent forks
 * N children one after another, each exits at once with exit(0) (so a guarded child writes its
 * exit report), and the parent waits. Prints the median microseconds per fork+exit+wait over
 * rounds of 20.
 *
 * usage: fork [N] [--threaded]   (--threaded: the parent has a second thread, as services do)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	double rounds[64];
	int nr = 0;

	if (argc > 2 && strcmp(argv[2], "--threaded") == 0) {
		pthread_t t;
		pthread_create(&t, NULL, idle, NULL);
	}
	for (int done = 0; done < n && nr < 64; nr++) {
		double t0 = now_us();
		int k;
		for (k = 0; k < 20 && done < n; k++, done++) {
			pid_t pid = fork();
			if (pid == 0)
				exit(0);
			waitpid(pid, NULL, 0);
		}
		rounds[nr] = (now_us() - t0) / k;
	}
	qsort(rounds, nr, sizeof(rounds[0]), cmp);
	printf("%.0f\n", rounds[nr / 2]);
	return 0;
}
