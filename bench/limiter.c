/* The limiter decision (guard_limiter_take: the clock read plus one CAS), against a token bucket
 * behind a pthread mutex, measured in the same run, 1 and 2 threads on one shared bucket.
 *
 * Linked against libguard.so (not preloaded: the runtime does not start; the limiter is a plain
 * object). The baselines call glibc's own pthread_mutex_lock/unlock and clock_gettime, fetched from
 * libc.so.6's handle, so that libguard's hooks (exported by the linked library) stay out of them.
 *
 * Times are each thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per decision, so that time spent
 * preempted by other work on the machine is not counted.
 *
 * Usage: limiter [REPEATS] [OPS_PER_THREAD]. Prints medians of REPEATS runs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libguard/guard.h"

static int (*libc_clock_gettime)(clockid_t, struct timespec *);
static int (*libc_mutex_lock)(pthread_mutex_t *);
static int (*libc_mutex_unlock)(pthread_mutex_t *);

static uint64_t now_ns(void)
{
	struct timespec ts;

	libc_clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The baseline: the textbook token bucket (tokens as a double, refilled from the elapsed time),
 * its state behind a mutex. Same clock, same answer (0 or ns to wait). */
struct mutex_bucket {
	pthread_mutex_t mu;
	double tokens, rate, burst;
	uint64_t last_ns;
} __attribute__((aligned(64)));

static int64_t mutex_take(struct mutex_bucket *b, uint32_t n)
{
	uint64_t now = now_ns();
	int64_t wait = 0;

	libc_mutex_lock(&b->mu);
	if (now > b->last_ns) {
		b->tokens += (double)(now - b->last_ns) * b->rate / 1e9;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last_ns = now;
	}
	if (b->tokens >= n)
		b->tokens -= n;
	else
		wait = (int64_t)(((double)n - b->tokens) * 1e9 / b->rate) + 1;
	libc_mutex_unlock(&b->mu);
	return wait;
}

enum kind { CLOCK_ONLY, GCRA, MUTEX };

struct run {
	enum kind kind;
	guard_limiter *l;
	struct mutex_bucket *mb;
	uint64_t ops;
	uint64_t admitted;
	pthread_barrier_t *go;
	uint64_t ns;
};

static volatile uint64_t sink;

/* CPU time of the calling thread: on a loaded machine (2 cores shared with other work), wall time
 * would count the time the thread spent preempted. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker(void *p)
{
	struct run *r = p;
	uint64_t admitted = 0, acc = 0;

	pthread_barrier_wait(r->go);
	uint64_t t0 = thread_cpu_ns();
	switch (r->kind) {
	case CLOCK_ONLY:
		for (uint64_t i = 0; i < r->ops; i++)
			acc += now_ns();
		break;
	case GCRA:
		for (uint64_t i = 0; i < r->ops; i++)
			admitted += guard_limiter_take(r->l, 1) == 0;
		break;
	case MUTEX:
		for (uint64_t i = 0; i < r->ops; i++)
			admitted += mutex_take(r->mb, 1) == 0;
		break;
	}
	r->ns = thread_cpu_ns() - t0;
	r->admitted = admitted;
	sink += acc;
	return NULL;
}

/* CPU ns per decision as each thread sees it (mean over threads), for nthreads sharing one bucket. */
static double measure(enum kind kind, int nthreads, uint64_t ops, double rate, double burst,
		      double *admit_ratio)
{
	struct run runs[2];
	pthread_t tids[2];
	pthread_barrier_t go;
	struct mutex_bucket *mb = aligned_alloc(64, sizeof(*mb));
	guard_limiter *l = guard_limiter_new(rate, burst);

	if (!mb || !l) {
		fprintf(stderr, "limiter bench: cannot allocate a bucket\n");
		exit(1);
	}
	memset(mb, 0, sizeof(*mb));
	pthread_mutex_init(&mb->mu, NULL);
	mb->rate = rate;
	mb->burst = mb->tokens = burst;
	mb->last_ns = now_ns();
	pthread_barrier_init(&go, NULL, (unsigned)nthreads);
	for (int i = 0; i < nthreads; i++) {
		runs[i] = (struct run){ .kind = kind, .l = l, .mb = mb, .ops = ops, .go = &go };
		pthread_create(&tids[i], NULL, worker, &runs[i]);
	}
	double ns = 0, admitted = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(tids[i], NULL);
		ns += (double)runs[i].ns / (double)ops;
		admitted += (double)runs[i].admitted;
	}
	if (admit_ratio)
		*admit_ratio = admitted / ((double)ops * nthreads);
	pthread_barrier_destroy(&go);
	pthread_mutex_destroy(&mb->mu);
	free(mb);
	guard_limiter_free(l);
	return ns / nthreads;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAXREP 31

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 7;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
	void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);

	if (reps < 1 || reps > MAXREP)
		reps = 7;
	if (!libc || !(libc_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(libc, "clock_gettime")) ||
	    !(libc_mutex_lock = (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_lock")) ||
	    !(libc_mutex_unlock = (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_unlock"))) {
		fprintf(stderr, "limiter bench: cannot find glibc's own functions: %s\n", dlerror());
		return 1;
	}

	/* Two regimes: "open" (rate far above the call rate: every decision admits, so every one is
	 * a successful CAS) and "at limit" (1000/s: nearly every decision is refused: a load, no
	 * store). Rounds interleave the implementations so that machine noise hits them alike. */
	static const struct { const char *name; double rate, burst; } regimes[] = {
		{ "open", 1e12, 1e6 },
		{ "at limit", 1000, 20 },
	};
	double clk[MAXREP], g[2][2][MAXREP], m[2][2][MAXREP], admit[2][2];
	for (int r = 0; r < reps; r++) {
		clk[r] = measure(CLOCK_ONLY, 1, ops, 1, 1, NULL);
		for (int k = 0; k < 2; k++) {
			for (int t = 0; t < 2; t++) {
				g[k][t][r] = measure(GCRA, t + 1, ops, regimes[k].rate, regimes[k].burst,
						     &admit[k][t]);
				m[k][t][r] = measure(MUTEX, t + 1, ops, regimes[k].rate, regimes[k].burst,
						     NULL);
			}
		}
	}
	double c = median(clk, reps);
	printf("limiter decision (guard_limiter_take, clock read included): thread CPU ns per decision, "
	       "medians of %d runs of %llu decisions per thread, 1 and 2 threads on one shared bucket\n",
	       reps, (unsigned long long)ops);
	printf("  clock_gettime(CLOCK_MONOTONIC) alone:           %6.1f ns\n", c);
	for (int k = 0; k < 2; k++) {
		for (int t = 0; t < 2; t++) {
			double gm = median(g[k][t], reps), mm = median(m[k][t], reps);
			printf("  %-8s %d thread%s: gcra %6.1f ns/op, mutex bucket %6.1f ns/op, "
			       "gcra/mutex = %.2fx  (gcra admitted %.1f%%)\n",
			       regimes[k].name, t + 1, t ? "s" : " ", gm, mm, gm / mm,
			       100 * admit[k][t]);
		}
	}
	double single = median(g[0][0], reps);
	printf("  budget: single-threaded decision <= 40 ns: %.1f ns (%s); over the clock read: +%.1f ns\n",
	       single, single <= 40 ? "within" : "OVER", single - c);
	return 0;
}
