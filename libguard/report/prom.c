/* Prometheus metrics: NAME.prom in the text exposition format (version 0.0.4), ready for
 * node_exporter's textfile collector (--collector.textfile.directory): the file is written to a
 * temp name and renamed, there are no timestamps (the collector rejects them), each family's
 * HELP and TYPE come once, before its samples.
 *
 * Every sample carries program="<exe basename>" and pid="<pid>": the default report name holds
 * the pid, so several guarded processes can drop files in one directory, and the collector
 * refuses two files that expose the same series.
 *
 * Metric names (a family appears only when its guard is enabled):
 *
 *   libguard_info{version,mode,policy,reason}          gauge    1
 *   libguard_start_time_seconds                        gauge    unix time the guard started
 *   libguard_report_time_seconds                       gauge    unix time of this report
 *   libguard_self_bytes                                gauge    the guard's own memory
 *   libguard_heap_allocated_bytes                      gauge    allocator's allocated bytes
 *   libguard_heap_sampled_live_bytes                   gauge    live heap estimated from samples
 *   libguard_heap_sampled_live_objects                 gauge    live objects estimated from samples
 *   libguard_heap_sample_period_bytes                  gauge    mean bytes between samples
 *   libguard_heap_leak_suspects                        gauge    sites growing for N windows
 *   libguard_heap_leak_suspect_bytes                   gauge    their live bytes
 *   libguard_fds_open                                  gauge    open descriptors
 *   libguard_fds_peak                                  gauge    most open at once
 *   libguard_fds_limit                                 gauge    the fd limit in force
 *   libguard_fds_untracked                             gauge    open fds with no recorded site
 *   libguard_fds_open_by_kind{kind}                    gauge    tracked open fds by kind
 *   libguard_net_connect_timeouts_total                counter  connects failed with ETIMEDOUT
 *   libguard_net_idle_shutdowns_total                  counter  idle connections shut down
 *   libguard_net_shed_total                            counter  connections shed
 *   libguard_limiter_allowed_total{limiter,call}       counter  calls a limiter let through
 *   libguard_limiter_limited_total{limiter,call}       counter  calls it shed, failed or delayed
 *   libguard_limiter_waited_seconds_total{limiter,call} counter time spent waiting for tokens
 *   libguard_clock_jumps_total                         counter  realtime jumps seen
 *   libguard_clock_monotonic_regressions_total         counter  CLOCK_MONOTONIC going backwards
 *   libguard_clock_clamped_seconds_total               counter  realtime steps hidden by clamping
 *   libguard_clock_realtime_calls_total                counter  recorded wall-clock reads
 *   libguard_lock_contentions_total                    counter  contended acquisitions recorded
 *   libguard_lock_wait_seconds_total                   counter  time waited on contended locks
 *   libguard_lock_max_wait_seconds                     gauge    longest single wait
 *   libguard_threads_live                              gauge    threads alive
 *   libguard_threads_peak                              gauge    most alive at once
 *   libguard_threads_unjoined                          gauge    finished threads never joined
 *   libguard_violations_total{kind}                    counter  policy violations by kind
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct prom {
	struct lg_out *o;
	char common[512];   /* program="...",pid="..." */
};

/* A label value: backslash, double quote and newline escaped, as the exposition format asks;
 * bytes that are not UTF-8 (a path may hold any) become '?' so the file always parses. */
static void label_value(char *out, size_t outlen, const char *s)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && n + 3 < outlen; p++) {
		if (*p == '\\' || *p == '"') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else if (*p >= 0x80) {
			/* Copy a whole valid sequence or one '?'. */
			size_t len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
			size_t k = 1;
			while (len && k < len && (p[k] & 0xc0) == 0x80)
				k++;
			if (len && k == len && *p <= 0xf4 && n + len + 1 < outlen) {
				memcpy(out + n, p, len);
				n += len;
				p += len - 1;
			} else {
				out[n++] = '?';
			}
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = '\0';
}

static void family(struct prom *m, const char *name, const char *type, const char *help)
{
	lg_out_printf(m->o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{common[,labels]} value */
static void sample(struct prom *m, const char *name, const char *labels, const char *value)
{
	/* Piece by piece: lg_out_printf stops at 1 KiB and a label (a policy path) can be longer. */
	lg_out_puts(m->o, name);
	lg_out_puts(m->o, "{");
	lg_out_puts(m->o, m->common);
	if (labels) {
		lg_out_puts(m->o, ",");
		lg_out_puts(m->o, labels);
	}
	lg_out_puts(m->o, "} ");
	lg_out_puts(m->o, value);
	lg_out_puts(m->o, "\n");
}

static void sample_u64(struct prom *m, const char *name, const char *labels, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	sample(m, name, labels, buf);
}

/* Seconds from an integer count of 10^-digits seconds, exactly (no float rounding). */
static void sample_fixed(struct prom *m, const char *name, const char *labels, uint64_t v,
			 uint64_t per_second, int digits)
{
	char buf[48];

	snprintf(buf, sizeof(buf), "%" PRIu64 ".%0*" PRIu64, v / per_second, digits, v % per_second);
	sample(m, name, labels, buf);
}

static void gauge(struct prom *m, const char *name, const char *help, uint64_t v)
{
	family(m, name, "gauge", help);
	sample_u64(m, name, NULL, v);
}

static void counter(struct prom *m, const char *name, const char *help, uint64_t v)
{
	family(m, name, "counter", help);
	sample_u64(m, name, NULL, v);
}

static void write_guard(struct prom *m, const struct lg_snapshot *s)
{
	char version[64], mode[64], policy[1100], reason[64], labels[1400];

	label_value(version, sizeof(version), s->guard.version);
	label_value(mode, sizeof(mode), s->guard.mode);
	label_value(policy, sizeof(policy), s->guard.policy);
	label_value(reason, sizeof(reason), s->guard.reason);
	snprintf(labels, sizeof(labels), "version=\"%s\",mode=\"%s\",policy=\"%s\",reason=\"%s\"",
		 version, mode, policy, reason);
	family(m, "libguard_info", "gauge", "libguard version, mode, policy and report reason");
	sample(m, "libguard_info", labels, "1");
	family(m, "libguard_start_time_seconds", "gauge", "Unix time the guard started");
	sample_fixed(m, "libguard_start_time_seconds", NULL, s->guard.started_unix_ms, 1000, 3);
	family(m, "libguard_report_time_seconds", "gauge", "Unix time this report was written");
	sample_fixed(m, "libguard_report_time_seconds", NULL, s->guard.written_unix_ms, 1000, 3);
	gauge(m, "libguard_self_bytes", "Memory the guard uses for itself", s->guard.self_bytes);
}

static void write_heap(struct prom *m, const struct lg_snap_heap *h)
{
	uint64_t bytes = 0, objects = 0, suspect_bytes = 0;

	for (size_t i = 0; h->live && i < h->nlive; i++) {
		bytes += h->live[i].bytes;
		objects += h->live[i].objects;
	}
	for (size_t i = 0; h->suspects && i < h->nsuspects; i++)
		suspect_bytes += h->suspects[i].bytes;
	gauge(m, "libguard_heap_allocated_bytes", "Bytes the allocator reports allocated",
	      h->allocated_bytes);
	gauge(m, "libguard_heap_sampled_live_bytes", "Live heap bytes estimated from samples", bytes);
	gauge(m, "libguard_heap_sampled_live_objects", "Live heap objects estimated from samples",
	      objects);
	gauge(m, "libguard_heap_sample_period_bytes", "Mean bytes allocated between samples",
	      h->sample_bytes);
	gauge(m, "libguard_heap_leak_suspects", "Allocation sites whose live bytes keep growing",
	      h->suspects ? h->nsuspects : 0);
	gauge(m, "libguard_heap_leak_suspect_bytes", "Live bytes of the leak suspects",
	      suspect_bytes);
}

static void write_fd(struct prom *m, const struct lg_snap_fd *d)
{
	uint64_t kinds[LG_FD_KIND_COUNT] = { 0 };
	char labels[64];

	gauge(m, "libguard_fds_open", "Open file descriptors", d->open);
	gauge(m, "libguard_fds_peak", "Most file descriptors open at once", d->peak);
	gauge(m, "libguard_fds_limit", "File descriptor limit in force", d->max);
	gauge(m, "libguard_fds_untracked", "Open file descriptors with no recorded site",
	      d->untracked);
	for (size_t i = 0; d->sites && i < d->nsites; i++)
		for (int k = 0; k < LG_FD_KIND_COUNT; k++)
			kinds[k] += d->sites[i].kinds[k];
	family(m, "libguard_fds_open_by_kind", "gauge", "Tracked open file descriptors by kind");
	for (int k = 0; k < LG_FD_KIND_COUNT; k++) {
		snprintf(labels, sizeof(labels), "kind=\"%s\"", lg_fd_kind_names[k]);
		sample_u64(m, "libguard_fds_open_by_kind", labels, kinds[k]);
	}
}

static void write_net(struct prom *m, const struct lg_snap_net *n)
{
	counter(m, "libguard_net_connect_timeouts_total", "Connects failed by the connect timeout",
		n->connect_timeouts);
	counter(m, "libguard_net_idle_shutdowns_total", "Idle connections shut down",
		n->idle_shutdowns);
	counter(m, "libguard_net_shed_total", "Connections shed by a limit", n->shed);
}

static void write_limits(struct prom *m, const struct lg_snap_limits *l)
{
	static const char *const names[3] = { "libguard_limiter_allowed_total",
					       "libguard_limiter_limited_total",
					       "libguard_limiter_waited_seconds_total" };
	static const char *const helps[3] = { "Calls a rate limiter let through",
					      "Calls a rate limiter shed, failed or delayed",
					      "Seconds spent waiting for rate limiter tokens" };
	char name[256], call[64], labels[400];

	for (int f = 0; f < 3; f++) {
		family(m, names[f], "counter", helps[f]);
		for (size_t i = 0; l->items && i < l->n; i++) {
			const struct lg_snap_limit *it = &l->items[i];
			label_value(name, sizeof(name), it->name);
			label_value(call, sizeof(call), it->call);
			snprintf(labels, sizeof(labels), "limiter=\"%s\",call=\"%s\"", name, call);
			if (f == 0)
				sample_u64(m, names[f], labels, it->allowed);
			else if (f == 1)
				sample_u64(m, names[f], labels, it->limited);
			else
				sample_fixed(m, names[f], labels, it->waited_ms, 1000, 3);
		}
	}
}

static void write_clock(struct prom *m, const struct lg_snap_clock *c)
{
	uint64_t calls = 0;

	for (size_t i = 0; c->readers && i < c->nreaders; i++)
		calls += c->readers[i].calls;
	counter(m, "libguard_clock_jumps_total", "Realtime clock jumps against monotonic",
		c->jumps ? c->njumps : 0);
	counter(m, "libguard_clock_monotonic_regressions_total",
		"Times CLOCK_MONOTONIC went backwards", c->monotonic_regressions);
	family(m, "libguard_clock_clamped_seconds_total", "counter",
	       "Seconds of realtime steps backwards hidden by clamping");
	sample_fixed(m, "libguard_clock_clamped_seconds_total", NULL, c->clamped_ms, 1000, 3);
	counter(m, "libguard_clock_realtime_calls_total", "Recorded wall-clock reads", calls);
}

static void write_locks(struct prom *m, const struct lg_snap_locks *l)
{
	uint64_t count = 0, wait_ns = 0, max_ns = 0;

	for (size_t i = 0; l->contended && i < l->n; i++) {
		count += l->contended[i].count;
		wait_ns += l->contended[i].wait_ns;
		if (l->contended[i].max_wait_ns > max_ns)
			max_ns = l->contended[i].max_wait_ns;
	}
	counter(m, "libguard_lock_contentions_total", "Contended lock acquisitions recorded", count);
	family(m, "libguard_lock_wait_seconds_total", "counter", "Seconds waited on contended locks");
	sample_fixed(m, "libguard_lock_wait_seconds_total", NULL, wait_ns, 1000000000, 9);
	family(m, "libguard_lock_max_wait_seconds", "gauge", "Longest single wait on a lock");
	sample_fixed(m, "libguard_lock_max_wait_seconds", NULL, max_ns, 1000000000, 9);
}

static void write_threads(struct prom *m, const struct lg_snap_threads *t)
{
	uint64_t unjoined = 0;

	for (size_t i = 0; t->unjoined && i < t->n; i++)
		unjoined += t->unjoined[i].count;
	gauge(m, "libguard_threads_live", "Threads alive", t->live);
	gauge(m, "libguard_threads_peak", "Most threads alive at once", t->peak);
	gauge(m, "libguard_threads_unjoined", "Finished threads never joined or detached", unjoined);
}

/* One series per kind: a kind recorded at several sites is summed. */
static void write_violations(struct prom *m, const struct lg_snapshot *s)
{
	char kind[128], labels[160];

	family(m, "libguard_violations_total", "counter", "Policy violations by kind");
	for (size_t i = 0; s->violations && i < s->nviolations; i++) {
		const char *k = s->violations[i].kind ? s->violations[i].kind : "unknown";
		bool seen = false;
		uint64_t sum = 0;
		for (size_t j = 0; j < s->nviolations; j++) {
			const char *kj = s->violations[j].kind ? s->violations[j].kind : "unknown";
			if (strcmp(k, kj) != 0)
				continue;
			if (j < i) {
				seen = true;
				break;
			}
			sum += s->violations[j].count;
		}
		if (seen)
			continue;
		label_value(kind, sizeof(kind), k);
		snprintf(labels, sizeof(labels), "kind=\"%s\"", kind);
		sample_u64(m, "libguard_violations_total", labels, sum);
	}
}

int lg_write_prom(const struct lg_snapshot *s, struct lg_out *o)
{
	struct prom m = { .o = o };
	char program[256];
	const char *exe = s->guard.exe ? s->guard.exe : "";

	label_value(program, sizeof(program), lg_base_name(exe));
	snprintf(m.common, sizeof(m.common), "program=\"%s\",pid=\"%d\"", program, (int)s->guard.pid);
	write_guard(&m, s);
	if (s->heap.present)
		write_heap(&m, &s->heap);
	if (s->fd.present)
		write_fd(&m, &s->fd);
	if (s->net.present)
		write_net(&m, &s->net);
	if (s->limits.present)
		write_limits(&m, &s->limits);
	if (s->clock.present)
		write_clock(&m, &s->clock);
	if (s->locks.present)
		write_locks(&m, &s->locks);
	if (s->threads.present)
		write_threads(&m, &s->threads);
	write_violations(&m, s);
	return o->err;
}

static int prom_contents(const struct lg_snapshot *s, int profile, struct lg_out *o)
{
	(void)profile;
	return lg_write_prom(s, o);
}

static int write_prom_file(const struct lg_snapshot *s, const char *base)
{
	return lg_report_file_write(s, base, ".prom", prom_contents, -1);
}
LG_REPORT_FORMAT(prom, LG_FORMAT_PROM, write_prom_file);
