/* The folded-stacks writer (libguard/report/folded.c), fed synthetic snapshots and read back. */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "report_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- a synthetic snapshot ---- */

static void snapshot_build(struct lg_snapshot *s)
{
	static const struct frame_spec leak[] = {
		{ "leak_here", "/opt/app/bin/app", 0x555555401234, 0x1234 },
		{ "serve", "/opt/app/bin/app", 0x555555401500, 0x1500 },
		{ "main", "/opt/app/bin/app", 0x555555401600, 0x1600 },
	};
	static const struct frame_spec other[] = {
		{ NULL, "/usr/lib/x86_64-linux-gnu/libfoo.so.1", 0x7f0000003456, 0x3456 },
		{ "a;b\nc", "/opt/app/bin/app", 0x555555401700, 0x1700 },
		{ NULL, NULL, 0xdeadbeef, 0 },
	};

	memset(s, 0, sizeof(*s));
	s->guard.exe = "/opt/app/bin/app";
	s->guard.pid = 42;
	add_stack(s, 3, leak, 3);
	add_stack(s, 7, other, 3);

	s->heap.present = true;
	s->heap.nlive = 4;
	s->heap.live = lg_snapshot_alloc(s, 4 * sizeof(*s->heap.live));
	s->heap.live[0] = (struct lg_snap_heap_site){ .stack = 3, .bytes = 1048576, .objects = 16 };
	s->heap.live[1] = (struct lg_snap_heap_site){ .stack = 7, .bytes = 4096, .objects = 1 };
	s->heap.live[2] = (struct lg_snap_heap_site){ .stack = 3, .bytes = 0, .objects = 0 };
	s->heap.live[3] = (struct lg_snap_heap_site){ .stack = 99, .bytes = 512, .objects = 2 };

	s->locks.present = true;
	s->locks.n = 1;
	s->locks.contended = lg_snapshot_alloc(s, sizeof(*s->locks.contended));
	s->locks.contended[0] = (struct lg_snap_lock_site){ .stack = 3, .count = 5, .wait_ns = 123456,
							    .max_wait_ns = 100000 };

	s->clock.present = true;   /* present, no samples: an empty file */
}

/* ---- reading back ---- */

static char *run_writer(const struct lg_snapshot *s, enum lg_profile p)
{
	static struct lg_out out;
	int fd = report_memfd(&out, "folded");

	assert_int_equal(lg_write_folded_profile(s, p, &out), 0);
	return report_read_back(&out, fd, NULL);
}

/* Split "frames value" lines; returns the number of lines, checking each has the grammar. */
static int parse_lines(char *text, char *stacks[], unsigned long long values[], int max)
{
	int n = 0;

	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *space = strrchr(line, ' ');
		assert_non_null(space);
		char *end;
		values[n] = strtoull(space + 1, &end, 10);
		assert_true(*end == '\0' && end > space + 1);
		*space = '\0';
		assert_true(strlen(line) > 0);
		stacks[n] = line;
		assert_true(++n <= max);
	}
	return n;
}

static void test_folded_heap_lines_are_root_first(void **state)
{
	struct lg_snapshot s;
	char *stacks[8];
	unsigned long long values[8];

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s, LG_PROFILE_HEAP);
	assert_int_equal(text[strlen(text) - 1], '\n');
	int n = parse_lines(text, stacks, values, 8);
	/* The zero-byte sample is left out; the sample without a known stack stays. */
	assert_int_equal(n, 3);
	assert_string_equal(stacks[0], "main;serve;leak_here");
	assert_int_equal(values[0], 1048576);
	assert_int_equal(values[1], 4096);
	assert_string_equal(stacks[2], "[unknown]");
	assert_int_equal(values[2], 512);
	free(text);
}

static void test_folded_unknown_frames_named_by_module_offset(void **state)
{
	struct lg_snapshot s;
	char *stacks[8];
	unsigned long long values[8];

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s, LG_PROFILE_HEAP);
	int n = parse_lines(text, stacks, values, 8);
	assert_true(n >= 2);
	/* Root first: the address-only frame, the function whose ';' and newline were replaced,
	 * then the library frame named by its basename and offset. */
	assert_string_equal(stacks[1], "0xdeadbeef;a:b?c;libfoo.so.1+0x3456");
	free(text);
}

static void test_folded_lock_profile_is_wait_ns(void **state)
{
	struct lg_snapshot s;
	char *stacks[8];
	unsigned long long values[8];

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s, LG_PROFILE_LOCKS);
	assert_int_equal(parse_lines(text, stacks, values, 8), 1);
	assert_string_equal(stacks[0], "main;serve;leak_here");
	assert_int_equal(values[0], 123456);
	free(text);
}

static void test_folded_absent_profile_writes_nothing(void **state)
{
	struct lg_snapshot s;

	(void)state;
	snapshot_build(&s);
	assert_false(lg_profile_present(&s, LG_PROFILE_FDS));
	assert_int_equal(lg_profile_nsamples(&s, LG_PROFILE_FDS), 0);
	char *text = run_writer(&s, LG_PROFILE_FDS);
	assert_string_equal(text, "");
	free(text);
}

/* The registered format: one file per present profile (empty when it has no samples), none for
 * an absent one, no temp file left behind. */
extern const struct lg_report_format __start_lg_formats[] __attribute__((weak));
extern const struct lg_report_format __stop_lg_formats[] __attribute__((weak));

static void test_folded_format_writes_one_file_per_present_profile(void **state)
{
	struct lg_snapshot s;
	char dir[] = "/tmp/lg-folded-XXXXXX", base[64], path[128];
	const struct lg_report_format *fmt = NULL;
	struct stat st;

	(void)state;
	snapshot_build(&s);
	assert_non_null(mkdtemp(dir));
	for (const struct lg_report_format *f = __start_lg_formats; f && f < __stop_lg_formats; f++)
		if (strcmp(f->name, "folded") == 0)
			fmt = f;
	assert_non_null(fmt);
	assert_int_equal(fmt->bit, LG_FORMAT_FOLDED);
	snprintf(base, sizeof(base), "%s/r", dir);
	assert_int_equal(fmt->write(&s, base), 0);

	snprintf(path, sizeof(path), "%s.heap.folded", base);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	unlink(path);
	snprintf(path, sizeof(path), "%s.locks.folded", base);
	assert_int_equal(stat(path, &st), 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s.clock.folded", base);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s.fds.folded", base);
	assert_int_not_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s.threads.folded", base);
	assert_int_not_equal(stat(path, &st), 0);
	/* Nothing else (no temp file) is left in the directory. */
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folded_heap_lines_are_root_first),
		cmocka_unit_test(test_folded_unknown_frames_named_by_module_offset),
		cmocka_unit_test(test_folded_lock_profile_is_wait_ns),
		cmocka_unit_test(test_folded_absent_profile_writes_nothing),
		cmocka_unit_test(test_folded_format_writes_one_file_per_present_profile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
