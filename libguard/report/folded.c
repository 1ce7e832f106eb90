/* Folded stacks (the input format of Brendan Gregg's flamegraph.pl, inferno, speedscope): one
 * file per profile, NAME.<profile>.folded, one line per sampled stack:
 *
 *   main;serve;handle_request;leak_here 1048576
 *
 * frames root first (the snapshot keeps them innermost first), separated by ';', then one space
 * and the value: heap live bytes, open fds, lock wait ns, realtime reader calls, unjoined threads.
 *
 * Files are written for every profile whose guard is enabled, empty when it has no samples: a
 * report written again under the same name (periodic reports, a %e-only name) then replaces the
 * old profile instead of leaving a stale one next to a fresh JSON report. A disabled guard's
 * profile gets no file at all.
 *
 * This file also holds the profile enumeration the pprof writer shares.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const struct lg_profile_info lg_profiles[LG_PROFILE_COUNT] = {
	[LG_PROFILE_HEAP] = { "heap", 2, { "inuse_space", "inuse_objects" }, { "bytes", "count" } },
	[LG_PROFILE_FDS] = { "fds", 1, { "fds" }, { "count" } },
	[LG_PROFILE_LOCKS] = { "locks", 2, { "delay", "contentions" }, { "nanoseconds", "count" } },
	[LG_PROFILE_CLOCK] = { "clock", 1, { "realtime_calls" }, { "count" } },
	[LG_PROFILE_THREADS] = { "threads", 1, { "unjoined_threads" }, { "count" } },
};

bool lg_profile_present(const struct lg_snapshot *s, enum lg_profile p)
{
	switch (p) {
	case LG_PROFILE_HEAP: return s->heap.present;
	case LG_PROFILE_FDS: return s->fd.present;
	case LG_PROFILE_LOCKS: return s->locks.present;
	case LG_PROFILE_CLOCK: return s->clock.present;
	case LG_PROFILE_THREADS: return s->threads.present;
	default: return false;
	}
}

size_t lg_profile_nsamples(const struct lg_snapshot *s, enum lg_profile p)
{
	if (!lg_profile_present(s, p))
		return 0;
	switch (p) {
	case LG_PROFILE_HEAP: return s->heap.live ? s->heap.nlive : 0;
	case LG_PROFILE_FDS: return s->fd.sites ? s->fd.nsites : 0;
	case LG_PROFILE_LOCKS: return s->locks.contended ? s->locks.n : 0;
	case LG_PROFILE_CLOCK: return s->clock.readers ? s->clock.nreaders : 0;
	case LG_PROFILE_THREADS: return s->threads.unjoined ? s->threads.n : 0;
	default: return 0;
	}
}

void lg_profile_sample(const struct lg_snapshot *s, enum lg_profile p, size_t i, uint32_t *stack,
		       uint64_t value[2])
{
	value[0] = value[1] = 0;
	*stack = 0;
	switch (p) {
	case LG_PROFILE_HEAP:
		*stack = s->heap.live[i].stack;
		value[0] = s->heap.live[i].bytes;
		value[1] = s->heap.live[i].objects;
		break;
	case LG_PROFILE_FDS:
		*stack = s->fd.sites[i].stack;
		value[0] = s->fd.sites[i].count;
		break;
	case LG_PROFILE_LOCKS:
		*stack = s->locks.contended[i].stack;
		value[0] = s->locks.contended[i].wait_ns;
		value[1] = s->locks.contended[i].count;
		break;
	case LG_PROFILE_CLOCK:
		*stack = s->clock.readers[i].stack;
		value[0] = s->clock.readers[i].calls;
		break;
	case LG_PROFILE_THREADS:
		*stack = s->threads.unjoined[i].stack;
		value[0] = s->threads.unjoined[i].count;
		break;
	default:
		break;
	}
}

void lg_frame_name(const struct lg_snap_frame *fr, char *out, size_t outlen)
{
	if (fr->fn && fr->fn[0]) {
		snprintf(out, outlen, "%s", fr->fn);
	} else if (fr->module && fr->module[0]) {
		const char *slash = strrchr(fr->module, '/');
		snprintf(out, outlen, "%s+0x%" PRIxPTR, slash && slash[1] ? slash + 1 : fr->module,
			 fr->offset);
	} else {
		snprintf(out, outlen, "0x%" PRIxPTR, fr->addr);
	}
	/* ';' separates frames and a newline separates stacks: neither may appear in a name (C++
	 * and Rust names never hold them, but a module path can). */
	for (char *c = out; *c; c++) {
		if (*c == ';')
			*c = ':';
		else if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	}
}

int lg_write_folded_profile(const struct lg_snapshot *s, enum lg_profile p, struct lg_out *o)
{
	size_t n = lg_profile_nsamples(s, p);
	char name[512];

	for (size_t i = 0; i < n; i++) {
		uint32_t id;
		uint64_t v[2];

		lg_profile_sample(s, p, i, &id, v);
		if (v[0] == 0)
			continue;   /* a zero-width line draws nothing and confuses some tools */
		const struct lg_snap_stack *st = id ? lg_snapshot_stack(s, id) : NULL;
		if (!st || st->nframes == 0) {
			/* The sample still counts: it appears as one "[unknown]" frame, as in perf. */
			lg_out_puts(o, "[unknown]");
		} else {
			for (uint32_t k = st->nframes; k-- > 0;) {
				lg_frame_name(&st->frames[k], name, sizeof(name));
				lg_out_puts(o, name);
				if (k)
					lg_out_write(o, ";", 1);
			}
		}
		lg_out_printf(o, " %" PRIu64 "\n", v[0]);
	}
	return o->err;
}

int lg_report_write_profiles(const struct lg_snapshot *s, const char *base, const char *ext,
			     lg_file_writer write)
{
	int rc = 0;

	for (int p = 0; p < LG_PROFILE_COUNT; p++) {
		char suffix[32];

		if (!lg_profile_present(s, p))
			continue;
		snprintf(suffix, sizeof(suffix), ".%s%s", lg_profiles[p].name, ext);
		int frc = lg_report_file_write(s, base, suffix, write, p);
		if (frc != 0 && rc == 0)
			rc = frc;
	}
	return rc;
}

static int folded_contents(const struct lg_snapshot *s, int profile, struct lg_out *o)
{
	return lg_write_folded_profile(s, (enum lg_profile)profile, o);
}

static int write_folded_files(const struct lg_snapshot *s, const char *base)
{
	return lg_report_write_profiles(s, base, ".folded", folded_contents);
}
LG_REPORT_FORMAT(folded, LG_FORMAT_FOLDED, write_folded_files);
