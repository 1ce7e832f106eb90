/* Heap guard. Sampling, estimates and leak reports arrive with issue 3; until then the
 * allocation hooks only forward, and the countdown is parked so the slow path is never taken
 * again by a thread. */
#include "libguard/internal.h"

void *lg_heap_on_alloc_slow(void *p, size_t size)
{
	(void)size;
	lg_tls.heap_countdown = INT64_MAX / 2;
	return p;
}

bool lg_heap_maybe_sampled(const void *p)
{
	(void)p;
	return false;
}

void lg_heap_on_free(void *p)
{
	(void)p;
}
