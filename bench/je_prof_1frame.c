/* Preloaded beside jemalloc for bench/malloc.sh's je-prof-1frame: jemalloc's own heap profiler
 * with its stack capture replaced by one constant frame (experimental.hooks.prof_backtrace, in
 * jemalloc 5.3.0). What is left is jemalloc's sampling and bookkeeping alone: the cost a guard
 * built on jemalloc's profiler would start from, before any unwinding. */
#include <jemalloc/jemalloc.h>
#include <stdio.h>

static void one_frame(void **vec, unsigned *len, unsigned max_len)
{
	if (max_len == 0) {
		*len = 0;
		return;
	}
	vec[0] = (void *)one_frame;
	*len = 1;
}

__attribute__((constructor)) static void install(void)
{
	void (*hook)(void **, unsigned *, unsigned) = one_frame;

	if (mallctl("experimental.hooks.prof_backtrace", NULL, NULL, &hook, sizeof hook) != 0)
		fprintf(stderr, "je_prof_1frame: experimental.hooks.prof_backtrace is not available\n");
}
