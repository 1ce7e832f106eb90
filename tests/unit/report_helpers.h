/* Synthetic snapshots and reading a writer's output back, for the report writers' unit tests
 * (test_folded.c, test_pprof.c, test_prom.c).
 */
#ifndef LG_TESTS_REPORT_HELPERS_H
#define LG_TESTS_REPORT_HELPERS_H

#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

struct frame_spec { const char *fn, *module; uintptr_t addr, offset; };

/* Add a stack (frames innermost first, as the snapshot keeps them); ids must come in order. */
static inline void add_stack(struct lg_snapshot *s, uint32_t id, const struct frame_spec *fr,
			     uint32_t n)
{
	if (!s->stacks)
		s->stacks = lg_snapshot_alloc(s, 16 * sizeof(*s->stacks));
	struct lg_snap_stack *st = &s->stacks[s->nstacks++];
	st->id = id;
	st->nframes = n;
	st->frames = lg_snapshot_alloc(s, n * sizeof(*st->frames));
	for (uint32_t i = 0; i < n; i++)
		st->frames[i] = (struct lg_snap_frame){ .fn = fr[i].fn, .module = fr[i].module,
							.addr = fr[i].addr, .offset = fr[i].offset };
}

/* A writer's output goes to an in-memory file: open it behind out. */
static inline int report_memfd(struct lg_out *out, const char *name)
{
	int fd = memfd_create(name, 0);

	assert_true(fd >= 0);
	lg_out_init(out, fd);
	return fd;
}

/* Flush out and return everything written to fd (NUL-terminated, to free()); closes fd. */
static inline char *report_read_back(struct lg_out *out, int fd, size_t *len_out)
{
	assert_int_equal(lg_out_flush(out), 0);
	off_t len = lseek(fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(pread(fd, text, (size_t)len, 0), len);
	close(fd);
	if (len_out)
		*len_out = (size_t)len;
	return text;
}

#endif
