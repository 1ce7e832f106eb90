/* Mixed malloc benchmark: THREADS threads, each replacing blocks at random in its own table of
 * SLOTS, sizes 16..4096 bytes (log-uniform: small blocks dominate, as in real programs), with
 * malloc, calloc, realloc and free. Prints the mean nanoseconds per operation over all threads,
 * measured inside the program (so a profiler's start-up and post-processing are not counted).
 *
 * TOUCH: "1" (default) writes one byte of each new block, so the allocator is nearly all the
 * work; "full" fills each block from malloc or realloc, as a program that uses what it
 * allocates does (calloc's blocks are already written by calloc).
 *
 * usage: malloc [OPS_PER_THREAD] [SLOTS] [TOUCH]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 2

static long ops = 2000000;
static unsigned slots = 8192;
static int touch_full;

static inline uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static _Atomic uint64_t cpu_ns;

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
	void **table = calloc(slots, sizeof(void *));
	uint64_t start = thread_cpu_ns();

	for (long i = 0; i < ops; i++) {
		uint64_t r = next(&seed);
		unsigned k = (unsigned)(r % slots);
		size_t size = ((size_t)16 << ((r >> 20) % 9)) + ((r >> 32) & 15);
		if (size > 4096)
			size = 4096;
		unsigned op = (unsigned)((r >> 40) % 100);
		void *p;
		if (op < 60) {
			free(table[k]);
			p = malloc(size);
		} else if (op < 75) {
			free(table[k]);
			p = calloc(1, size);
		} else if (op < 95) {
			p = realloc(table[k], size);
			if (!p)
				p = table[k];
		} else {
			free(table[k]);
			p = NULL;
		}
		if (p && touch_full && (op < 60 || op >= 75))
			memset(p, (int)i, size);   /* calloc's (60..74) are written already */
		else if (p)
			*(volatile char *)p = 1;
		table[k] = p;
	}
	cpu_ns += thread_cpu_ns() - start;
	for (unsigned k = 0; k < slots; k++)
		free(table[k]);
	free(table);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[THREADS];

	if (argc > 1)
		ops = atol(argv[1]);
	if (argc > 2)
		slots = (unsigned)atol(argv[2]);
	if (argc > 3)
		touch_full = strcmp(argv[3], "full") == 0;
	for (uintptr_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	printf("%.2f\n", (double)cpu_ns / (double)(ops * THREADS));
	return 0;
}
