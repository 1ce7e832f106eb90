/* The Prometheus writer (libguard/report/prom.c): synthetic snapshots in, every line checked
 * against the text exposition grammar, then the values read back. */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "report_helpers.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void snapshot_build(struct lg_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->guard = (struct lg_snap_guard){ .version = "0.1.0", .pid = 4242,
					   .exe = "/opt/app/bin/my\"app", .reason = "exit",
					   .policy = "/etc/guard/p\\q.json", .mode = "enforce",
					   .started_unix_ms = 1700000000000ull,
					   .written_unix_ms = 1700000001234ull, .self_bytes = 65536 };
	s->heap.present = true;
	s->heap.allocated_bytes = 10000000;
	s->heap.sample_bytes = 524288;
	s->heap.nlive = 2;
	s->heap.live = lg_snapshot_alloc(s, 2 * sizeof(*s->heap.live));
	s->heap.live[0] = (struct lg_snap_heap_site){ .stack = 1, .bytes = 1000, .objects = 2 };
	s->heap.live[1] = (struct lg_snap_heap_site){ .stack = 2, .bytes = 24, .objects = 1 };

	s->fd.present = true;
	s->fd = (struct lg_snap_fd){ .present = true, .max = 1024, .open = 7, .peak = 9, .untracked = 3 };
	s->fd.nsites = 1;
	s->fd.sites = lg_snapshot_alloc(s, sizeof(*s->fd.sites));
	s->fd.sites[0].count = 4;
	s->fd.sites[0].kinds[LG_FD_SOCKET] = 3;
	s->fd.sites[0].kinds[LG_FD_PIPE] = 1;

	s->limits.present = true;
	s->limits.n = 1;
	s->limits.items = lg_snapshot_alloc(s, sizeof(*s->limits.items));
	s->limits.items[0] = (struct lg_snap_limit){ .name = "in\"bound\\\nx", .call = "accept",
						     .allowed = 100, .limited = 5, .waited_ms = 2500 };

	s->locks.present = true;
	s->locks.n = 2;
	s->locks.contended = lg_snapshot_alloc(s, 2 * sizeof(*s->locks.contended));
	s->locks.contended[0] = (struct lg_snap_lock_site){ .stack = 1, .count = 3, .wait_ns = 1000000000,
							    .max_wait_ns = 700000000 };
	s->locks.contended[1] = (struct lg_snap_lock_site){ .stack = 2, .count = 1, .wait_ns = 500000001,
							    .max_wait_ns = 500000001 };

	s->nviolations = 3;
	s->violations = lg_snapshot_alloc(s, 3 * sizeof(*s->violations));
	s->violations[0] = (struct lg_snap_violation){ .kind = "fd.max", .count = 2, .stack = 1 };
	s->violations[1] = (struct lg_snap_violation){ .kind = "heap.max", .count = 1, .stack = 2 };
	s->violations[2] = (struct lg_snap_violation){ .kind = "fd.max", .count = 5, .stack = 2 };
}

static char *run_writer(const struct lg_snapshot *s)
{
	static struct lg_out out;
	int fd = report_memfd(&out, "prom");

	assert_int_equal(lg_write_prom(s, &out), 0);
	return report_read_back(&out, fd, NULL);
}

/* The text exposition format, version 0.0.4, as regular expressions (POSIX ERE). */
#define NAME "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL "[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
#define VALUE "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)"
static const char *const help_re = "^# HELP (" NAME ") [^\n]*$";
static const char *const type_re = "^# TYPE (" NAME ") (counter|gauge|histogram|summary|untyped)$";
static const char *const sample_re = "^(" NAME ")(\\{(" LABEL "(," LABEL ")*)?\\})? " VALUE "$";

/* Every line matches the grammar; a family's HELP and TYPE come once, before its samples, and a
 * counter's samples end in _total. Returns the number of sample lines. */
static int check_grammar(char *text)
{
	regex_t help, type, sample;
	regmatch_t m[3];
	char families[64][128], types[64][16];
	int nfam = 0, nsamples = 0;

	assert_int_equal(regcomp(&help, help_re, REG_EXTENDED), 0);
	assert_int_equal(regcomp(&type, type_re, REG_EXTENDED), 0);
	assert_int_equal(regcomp(&sample, sample_re, REG_EXTENDED), 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char name[128];
		if (regexec(&help, line, 2, m, 0) == 0)
			continue;
		if (regexec(&type, line, 3, m, 0) == 0) {
			snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
			for (int i = 0; i < nfam; i++)
				assert_string_not_equal(families[i], name);   /* TYPE once per family */
			assert_true(nfam < 64);
			snprintf(families[nfam], sizeof(families[0]), "%s", name);
			snprintf(types[nfam], sizeof(types[0]), "%.*s", (int)(m[2].rm_eo - m[2].rm_so),
				 line + m[2].rm_so);
			nfam++;
			continue;
		}
		if (regexec(&sample, line, 2, m, 0) != 0)
			fail_msg("not exposition format: %s", line);
		snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
		/* Samples belong to the family declared last (families are not interleaved). */
		assert_true(nfam > 0);
		assert_string_equal(families[nfam - 1], name);
		if (strcmp(types[nfam - 1], "counter") == 0)
			assert_non_null(strstr(name, "_total"));
		nsamples++;
	}
	regfree(&help);
	regfree(&type);
	regfree(&sample);
	return nsamples;
}

static void test_prom_every_line_is_exposition_format(void **state)
{
	struct lg_snapshot s;

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s);
	assert_true(check_grammar(text) > 20);
	free(text);
}

/* The value of the one line that starts with `prefix`, as text. */
static void value_of(const char *text, const char *prefix, char *out, size_t outlen)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, prefix, strlen(prefix)) != 0)
			continue;
		const char *end = strchr(p, '\n');
		const char *space = end;
		while (space > p && space[-1] != ' ')
			space--;
		snprintf(out, outlen, "%.*s", (int)(end - space), space);
		return;
	}
	fail_msg("no line starts with %s", prefix);
}

#define COMMON "{program=\"my\\\"app\",pid=\"4242\""

static void test_prom_values_and_units(void **state)
{
	struct lg_snapshot s;
	char v[64];

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s);
	value_of(text, "libguard_fds_open" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "7");
	value_of(text, "libguard_fds_limit" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "1024");
	value_of(text, "libguard_fds_open_by_kind" COMMON ",kind=\"socket\"}", v, sizeof(v));
	assert_string_equal(v, "3");
	value_of(text, "libguard_heap_allocated_bytes" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "10000000");
	value_of(text, "libguard_heap_sampled_live_bytes" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "1024");
	value_of(text, "libguard_lock_wait_seconds_total" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "1.500000001");
	value_of(text, "libguard_lock_max_wait_seconds" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "0.700000000");
	value_of(text, "libguard_lock_contentions_total" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "4");
	value_of(text, "libguard_report_time_seconds" COMMON "}", v, sizeof(v));
	assert_string_equal(v, "1700000001.234");
	/* A kind seen at two sites is one series, summed. */
	value_of(text, "libguard_violations_total" COMMON ",kind=\"fd.max\"}", v, sizeof(v));
	assert_string_equal(v, "7");
	value_of(text, "libguard_violations_total" COMMON ",kind=\"heap.max\"}", v, sizeof(v));
	assert_string_equal(v, "1");
	assert_int_equal(strstr(strstr(text, "kind=\"fd.max\"") + 1, "kind=\"fd.max\""), NULL);
	free(text);
}

static void test_prom_label_values_are_escaped(void **state)
{
	struct lg_snapshot s;
	char v[64];

	(void)state;
	snapshot_build(&s);
	char *text = run_writer(&s);
	/* name in"bound\<newline>x: quote, backslash and newline escaped. */
	value_of(text, "libguard_limiter_allowed_total" COMMON ",limiter=\"in\\\"bound\\\\\\nx\",call=\"accept\"}",
		 v, sizeof(v));
	assert_string_equal(v, "100");
	value_of(text, "libguard_limiter_waited_seconds_total" COMMON ",limiter=", v, sizeof(v));
	assert_string_equal(v, "2.500");
	assert_non_null(strstr(text, "policy=\"/etc/guard/p\\\\q.json\""));
	free(text);
}

static void test_prom_absent_sections_have_no_families(void **state)
{
	struct lg_snapshot s;

	(void)state;
	snapshot_build(&s);
	s.heap.present = false;
	s.locks.present = false;
	s.guard.exe = "/bin/\xff\xfe" "bad";   /* not UTF-8: replaced, the file still parses */
	char *text = run_writer(&s);
	assert_null(strstr(text, "libguard_heap_"));
	assert_null(strstr(text, "libguard_lock_"));
	assert_null(strstr(text, "libguard_clock_"));
	assert_null(strstr(text, "libguard_threads_"));
	assert_non_null(strstr(text, "libguard_fds_open{"));
	assert_non_null(strstr(text, "program=\"??bad\""));
	check_grammar(text);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prom_every_line_is_exposition_format),
		cmocka_unit_test(test_prom_values_and_units),
		cmocka_unit_test(test_prom_label_values_are_escaped),
		cmocka_unit_test(test_prom_absent_sections_have_no_families),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
