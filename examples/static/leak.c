/* A C program that links libguard statically, from the installed package, and drives it through
 * <guard.h>: it starts the guard with its own policy, rate-limits with a guard_limiter, leaks
 * memory at one function, and asks for a report.
 *
 *   make install PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
 *   cc -O2 -g -o leak examples/static/leak.c $(pkg-config --static --cflags --libs libguard)
 *   GUARD_REPORT_DIR=/tmp ./leak examples/static/every-alloc.json
 *
 * The report (/tmp/leak-PID.json, reason "api") holds LEAK_BYTES live bytes at
 * leak_session_buffers: the policy samples every allocation, so the figures are exact.
 * Prints its figures on stdout; exits 1 when an API call does not do what guard.h says.
 */
#include <guard.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEAK_BLOCKS 7
#define LEAK_BLOCK_BYTES 1000   /* not a size class: the report must hold the bytes asked for */
#define LEAK_BYTES (LEAK_BLOCKS * LEAK_BLOCK_BYTES)

/* Kept reachable so that the compiler cannot drop the allocations; the guard reports live bytes
 * by allocation site, and these are never freed. */
static void *session_buffers[LEAK_BLOCKS];
static void *early_block;

/* Allocated before guard_start(): a linked guard is not running yet, so this is not seen. */
__attribute__((noinline)) static void allocate_before_start(void)
{
	early_block = malloc(5000);
	if (early_block)
		memset(early_block, 1, 5000);
}

/* The leak: LEAK_BLOCKS blocks from one call site, never freed. */
__attribute__((noinline)) static void leak_session_buffers(void)
{
	for (int i = 0; i < LEAK_BLOCKS; i++) {
		session_buffers[i] = malloc(LEAK_BLOCK_BYTES);
		if (session_buffers[i])
			memset(session_buffers[i], i, LEAK_BLOCK_BYTES);
	}
}

int main(int argc, char **argv)
{
	int ok = 1;

	allocate_before_start();

	/* NULL would mean $GUARD_POLICY, else the embedded default (which samples every 512 KiB). */
	int rc = guard_start(argc > 1 ? argv[1] : NULL);
	printf("guard_start: %d\n", rc);
	if (rc != 0) {
		fprintf(stderr, "leak: guard_start: %s\n", strerror(-rc));
		return 1;
	}

	/* 100 tokens a second, burst 5: five at once are allowed, the sixth is due one interval
	 * (10 ms) after them. */
	guard_limiter *l = guard_limiter_new(100, 5);
	if (!l) {
		fprintf(stderr, "leak: guard_limiter_new: %s\n", strerror(errno));
		return 1;
	}
	int64_t first = guard_limiter_take(l, 5);
	int64_t sixth = guard_limiter_take(l, 1);
	printf("limiter: take5=%" PRId64 " take1_wait_ns=%" PRId64 "\n", first, sixth);
	ok &= first == 0 && sixth > 0 && sixth <= 10000000;
	guard_limiter_free(l);

	leak_session_buffers();

	struct guard_stats st;
	guard_stats(&st);
	printf("stats: heap_live_bytes=%" PRIu64 " fds_open=%" PRIu64 " threads_live=%" PRIu64
	       " violations=%" PRIu64 "\n", st.heap_live_bytes, st.fds_open, st.threads_live,
	       st.violations);
	ok &= st.heap_live_bytes >= LEAK_BYTES;

	rc = guard_report("api");
	printf("guard_report: %d\n", rc);
	ok &= rc == 0;
	printf("leaked: %d bytes at leak_session_buffers\n", LEAK_BYTES);
	return ok ? 0 : 1;
}
