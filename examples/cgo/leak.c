/* The C half of the cgo example: a cache that is filled and never emptied. Its allocations go
 * through malloc, which libguard (linked into this program) interposes, so the guard's report
 * names leak_request_cache as the site of the live bytes. The Go heap is invisible to it. */
#include "leak.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BLOCKS 64

static void *cache[MAX_BLOCKS];   /* reachable, never freed: what a leak looks like to a guard */
static int cached;

__attribute__((noinline)) size_t leak_request_cache(int blocks, size_t block_bytes)
{
	size_t leaked = 0;

	for (int i = 0; i < blocks && cached < MAX_BLOCKS; i++) {
		void *p = malloc(block_bytes);
		if (!p)
			break;
		memset(p, 0x5a, block_bytes);
		cache[cached++] = p;
		leaked += block_bytes;
	}
	return leaked;
}
