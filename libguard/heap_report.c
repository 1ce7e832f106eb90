/* The heap guard's reports: growth windows (suspects, heap.growth violations) and the heap
 * section of a snapshot, both from the per-site sums that heap.c keeps (lg_heap_aggregate).
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Growth windows
 * ------------------------------------------------------------------------------------------- */

struct growth_site {
	int64_t prev;        /* live bytes at the previous window */
	int64_t bytes;       /* at the last window */
	uint32_t streak;     /* consecutive windows of growth */
	uint32_t windows;    /* the longest streak, once a suspect */
	bool seen;
	bool suspect;
};

static pthread_mutex_t growth_lock = PTHREAD_MUTEX_INITIALIZER;
static struct growth_site *growth;
static uint32_t growth_n;

/* Growth beyond sampling noise. A site's estimate moves by at least one sample weight (>= m
 * bytes) whenever a sampled block comes or goes, and its spread is about sqrt(m * bytes) (a
 * Poisson count of samples scaled by m), so a steady site with churn must not count as growing:
 * a window grows when it adds more than m + 2 * sqrt(m * previous). Exact (m = 1): any growth. */
static bool grew(int64_t prev, int64_t cur)
{
	uint64_t mean = lg_heap_mean();

	if (mean <= 1)
		return cur > prev;
	double m = (double)mean;
	return (double)(cur - prev) > m + 2.0 * sqrt(m * (double)(prev > 0 ? prev : 0));
}

void lg_heap_tick(uint64_t now_ns)
{
	uint32_t n;

	(void)now_ns;
	if (!lg_heap_sampling())
		return;
	struct lg_heap_site_sum *sum = lg_heap_aggregate(&n);
	if (!sum)
		return;
	LG_REAL(pthread_mutex_lock)(&growth_lock);
	if (n > growth_n) {
		struct growth_site *g = lg_mem_realloc(growth, n * sizeof(*g));
		if (g) {
			memset(g + growth_n, 0, (n - growth_n) * sizeof(*g));
			growth = g;
			growth_n = n;
		}
	}
	/* Id 0 (no stack) is not a site. */
	for (uint32_t id = 1; id < growth_n; id++) {
		struct growth_site *g = &growth[id];
		int64_t cur = id < n ? sum[id].bytes : 0;

		/* The first window a site is seen in is its baseline, not growth from nothing: a
		 * service warming up is not leaking. */
		if (!g->seen) {
			if (cur > 0) {
				g->seen = true;
				g->prev = g->bytes = cur;
			}
			continue;
		}
		g->streak = grew(g->prev, cur) ? g->streak + 1 : 0;
		g->prev = g->bytes = cur;
		if (g->streak >= lg_policy.heap.growth_windows) {
			if (g->streak > g->windows)
				g->windows = g->streak;
			if (!g->suspect) {
				g->suspect = true;
				lg_violation("heap.growth", id);
			}
		}
	}
	LG_REAL(pthread_mutex_unlock)(&growth_lock);
	lg_mem_free(sum);
}

/* ---------------------------------------------------------------------------------------------
 * Snapshot
 * ------------------------------------------------------------------------------------------- */

static int by_bytes_desc(const void *a, const void *b)
{
	const struct lg_snap_heap_site *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

int lg_heap_snapshot(struct lg_snapshot *s)
{
	struct lg_snap_heap *h = &s->heap;
	uint32_t n, nsites = 0;

	if (!lg_heap_sampling())
		return 0;
	h->present = true;
	h->backend = lg_alloc_backend_name();
	h->sample_bytes = lg_heap_mean();
	/* The program's heap: what jemalloc holds for it, less what sampling added to its blocks. */
	uint64_t all = lg_alloc_allocated_bytes(), extra = lg_heap_sampled_overhead();
	h->allocated_bytes = all > extra ? all - extra : 0;
	h->dropped_samples = lg_heap_dropped();

	struct lg_heap_site_sum *sum = lg_heap_aggregate(&n);
	if (!sum)
		return -ENOMEM;
	for (uint32_t id = 0; id < n; id++)
		nsites += sum[id].objects > 0;
	h->live = lg_snapshot_alloc(s, (nsites ? nsites : 1) * sizeof(*h->live));
	for (uint32_t id = 0; h->live && id < n; id++) {
		if (sum[id].objects <= 0)
			continue;
		h->live[h->nlive++] = (struct lg_snap_heap_site){
			.stack = id,
			.bytes = sum[id].bytes > 0 ? (uint64_t)sum[id].bytes : 0,
			.objects = (uint64_t)llround(sum[id].objects),
		};
	}
	lg_mem_free(sum);
	if (h->live)
		qsort(h->live, h->nlive, sizeof(*h->live), by_bytes_desc);

	LG_REAL(pthread_mutex_lock)(&growth_lock);
	uint32_t nsus = 0;
	for (uint32_t id = 1; id < growth_n; id++)
		nsus += growth[id].suspect;
	h->suspects = lg_snapshot_alloc(s, (nsus ? nsus : 1) * sizeof(*h->suspects));
	for (uint32_t id = 1; h->suspects && id < growth_n; id++) {
		if (!growth[id].suspect)
			continue;
		h->suspects[h->nsuspects++] = (struct lg_snap_heap_suspect){
			.stack = id,
			.bytes = growth[id].bytes > 0 ? (uint64_t)growth[id].bytes : 0,
			.windows = growth[id].windows,
		};
	}
	LG_REAL(pthread_mutex_unlock)(&growth_lock);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Fork
 * ------------------------------------------------------------------------------------------- */

void lg_heap_growth_fork(enum lg_fork_phase phase)
{
	switch (phase) {
	case LG_FORK_PREPARE:
		LG_REAL(pthread_mutex_lock)(&growth_lock);
		break;
	case LG_FORK_PARENT:
		LG_REAL(pthread_mutex_unlock)(&growth_lock);
		break;
	case LG_FORK_CHILD:
		pthread_mutex_init(&growth_lock, NULL);
		break;
	case LG_FORK_CHILD_LATER:
		for (uint32_t id = 0; id < growth_n; id++)
			growth[id] = (struct growth_site){ 0 };
		break;
	}
}
