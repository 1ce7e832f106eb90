/* The JSON report (schema version 1, DESIGN.md section 5), and the buffered writer every format
 * uses. Written by hand rather than through cJSON: cJSON would build the whole tree in memory
 * (from the host's allocator, or through a global cJSON_InitHooks that a host using cJSON would
 * feel), while this streams into a fixed buffer.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *const lg_fd_kind_names[LG_FD_KIND_COUNT] = {
	"other", "file", "socket", "pipe", "epoll", "eventfd", "timerfd", "signalfd", "inotify",
	"memfd",
};

/* ---- lg_out ---- */

void lg_out_init(struct lg_out *o, int fd)
{
	o->fd = fd;
	o->err = 0;
	o->len = 0;
}

int lg_out_flush(struct lg_out *o)
{
	size_t off = 0;

	while (off < o->len && o->err == 0) {
		ssize_t n = write(o->fd, o->buf + off, o->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			o->err = n < 0 ? -errno : -EIO;
		else
			off += (size_t)n;
	}
	o->len = 0;
	return o->err;
}

void lg_out_write(struct lg_out *o, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0 && o->err == 0) {
		if (o->len == sizeof(o->buf))
			lg_out_flush(o);
		size_t k = sizeof(o->buf) - o->len;
		if (k > n)
			k = n;
		memcpy(o->buf + o->len, p, k);
		o->len += k;
		p += k;
		n -= k;
	}
}

void lg_out_puts(struct lg_out *o, const char *s)
{
	lg_out_write(o, s, strlen(s));
}

void lg_out_printf(struct lg_out *o, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	lg_out_write(o, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* ---- JSON primitives ---- */

/* Length of a valid UTF-8 sequence at p (1..4), or 0 if the bytes are not valid UTF-8. */
static size_t utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef)
		return (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 ? 3 : 0;
	if (p[0] >= 0xf0 && p[0] <= 0xf4)
		return (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
	return 0;
}

/* A string value; NULL is null. Invalid UTF-8 (a path can hold any byte) becomes U+FFFD so the
 * report always parses. */
void lg_json_string(struct lg_out *o, const char *s)
{
	if (!s) {
		lg_out_puts(o, "null");
		return;
	}
	lg_out_write(o, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		if (n == 0) {
			lg_out_puts(o, "\\ufffd");
			p++;
		} else if (*p == '"' || *p == '\\') {
			lg_out_write(o, "\\", 1);
			lg_out_write(o, p++, 1);
		} else if (*p < 0x20) {
			lg_out_printf(o, "\\u%04x", *p++);
		} else {
			lg_out_write(o, p, n);
			p += n;
		}
	}
	lg_out_write(o, "\"", 1);
}

static void key(struct lg_out *o, bool *first, const char *k)
{
	if (!*first)
		lg_out_write(o, ",", 1);
	*first = false;
	lg_json_string(o, k);
	lg_out_write(o, ":", 1);
}

static void kv_u64(struct lg_out *o, bool *first, const char *k, uint64_t v)
{
	key(o, first, k);
	lg_out_printf(o, "%" PRIu64, v);
}

static void kv_i64(struct lg_out *o, bool *first, const char *k, int64_t v)
{
	key(o, first, k);
	lg_out_printf(o, "%" PRId64, v);
}

static void kv_str(struct lg_out *o, bool *first, const char *k, const char *v)
{
	key(o, first, k);
	lg_json_string(o, v);
}

static void kv_hex(struct lg_out *o, bool *first, const char *k, uintptr_t v)
{
	key(o, first, k);
	lg_out_printf(o, "\"0x%" PRIxPTR "\"", v);
}

static void sep(struct lg_out *o, size_t i)
{
	if (i)
		lg_out_write(o, ",", 1);
}

/* ---- sections ---- */

static void write_guard(struct lg_out *o, const struct lg_snap_guard *g)
{
	bool f = true;

	lg_out_puts(o, "\"guard\":{");
	kv_str(o, &f, "version", g->version);
	kv_i64(o, &f, "pid", g->pid);
	kv_str(o, &f, "exe", g->exe);
	kv_str(o, &f, "reason", g->reason);
	kv_str(o, &f, "policy", g->policy);
	kv_str(o, &f, "mode", g->mode);
	kv_u64(o, &f, "started_unix_ms", g->started_unix_ms);
	kv_u64(o, &f, "written_unix_ms", g->written_unix_ms);
	kv_u64(o, &f, "self_bytes", g->self_bytes);
	lg_out_puts(o, "}");
}

static void write_stacks(struct lg_out *o, const struct lg_snapshot *s)
{
	lg_out_puts(o, ",\n\"stacks\":[");
	for (size_t i = 0; i < s->nstacks; i++) {
		const struct lg_snap_stack *st = &s->stacks[i];
		sep(o, i);
		lg_out_printf(o, "\n{\"id\":%" PRIu32 ",\"frames\":[", st->id);
		for (uint32_t k = 0; k < st->nframes; k++) {
			const struct lg_snap_frame *fr = &st->frames[k];
			bool f = true;
			sep(o, k);
			lg_out_puts(o, "{");
			kv_hex(o, &f, "addr", fr->addr);
			kv_str(o, &f, "fn", fr->fn);
			kv_str(o, &f, "module", fr->module);
			kv_hex(o, &f, "offset", fr->offset);
			lg_out_puts(o, "}");
		}
		lg_out_puts(o, "]}");
	}
	lg_out_puts(o, "]");
}

static void write_heap(struct lg_out *o, const struct lg_snap_heap *h)
{
	bool f = true;

	lg_out_puts(o, ",\n\"heap\":{");
	kv_str(o, &f, "backend", h->backend);
	kv_u64(o, &f, "sample_bytes", h->sample_bytes);
	kv_u64(o, &f, "allocated_bytes", h->allocated_bytes);
	kv_u64(o, &f, "dropped_samples", h->dropped_samples);
	key(o, &f, "live");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < h->nlive; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "\n{");
		kv_u64(o, &g, "stack", h->live[i].stack);
		kv_u64(o, &g, "bytes", h->live[i].bytes);
		kv_u64(o, &g, "objects", h->live[i].objects);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]");
	key(o, &f, "suspects");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < h->nsuspects; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_u64(o, &g, "stack", h->suspects[i].stack);
		kv_u64(o, &g, "bytes", h->suspects[i].bytes);
		kv_u64(o, &g, "windows", h->suspects[i].windows);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]}");
}

static void write_fd(struct lg_out *o, const struct lg_snap_fd *d)
{
	bool f = true;

	lg_out_puts(o, ",\n\"fd\":{");
	kv_u64(o, &f, "max", d->max);
	kv_u64(o, &f, "open", d->open);
	kv_u64(o, &f, "peak", d->peak);
	kv_u64(o, &f, "untracked", d->untracked);
	key(o, &f, "by_site");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < d->nsites; i++) {
		const struct lg_snap_fd_site *site = &d->sites[i];
		bool g = true, k1 = true;
		sep(o, i);
		lg_out_puts(o, "\n{");
		kv_u64(o, &g, "stack", site->stack);
		kv_u64(o, &g, "count", site->count);
		key(o, &g, "kinds");
		lg_out_puts(o, "{");
		for (int k = 0; k < LG_FD_KIND_COUNT; k++) {
			if (site->kinds[k])
				kv_u64(o, &k1, lg_fd_kind_names[k], site->kinds[k]);
		}
		lg_out_puts(o, "}");
		kv_u64(o, &g, "oldest_ms", site->oldest_ms);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]}");
}

static void write_net(struct lg_out *o, const struct lg_snap_net *n)
{
	bool f = true;

	lg_out_puts(o, ",\n\"net\":{");
	kv_u64(o, &f, "connect_timeouts", n->connect_timeouts);
	kv_u64(o, &f, "idle_shutdowns", n->idle_shutdowns);
	kv_u64(o, &f, "shed", n->shed);
	key(o, &f, "by_site");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < n->nsites; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_u64(o, &g, "stack", n->sites[i].stack);
		kv_str(o, &g, "event", n->sites[i].event);
		kv_u64(o, &g, "count", n->sites[i].count);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]}");
}

static void write_limits(struct lg_out *o, const struct lg_snap_limits *l)
{
	lg_out_puts(o, ",\n\"limits\":[");
	for (size_t i = 0; i < l->n; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_str(o, &g, "name", l->items[i].name);
		kv_str(o, &g, "call", l->items[i].call);
		kv_u64(o, &g, "allowed", l->items[i].allowed);
		kv_u64(o, &g, "limited", l->items[i].limited);
		kv_u64(o, &g, "waited_ms", l->items[i].waited_ms);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]");
}

static void write_clock(struct lg_out *o, const struct lg_snap_clock *c)
{
	bool f = true;

	lg_out_puts(o, ",\n\"clock\":{");
	key(o, &f, "jumps");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < c->njumps; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_str(o, &g, "clock", c->jumps[i].clock);
		kv_i64(o, &g, "delta_ms", c->jumps[i].delta_ms);
		kv_u64(o, &g, "unix_ms", c->jumps[i].unix_ms);
		kv_u64(o, &g, "stack", c->jumps[i].stack);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]");
	key(o, &f, "realtime_readers");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < c->nreaders; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_u64(o, &g, "stack", c->readers[i].stack);
		kv_u64(o, &g, "calls", c->readers[i].calls);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]");
	kv_u64(o, &f, "monotonic_regressions", c->monotonic_regressions);
	kv_u64(o, &f, "clamped_ms", c->clamped_ms);
	lg_out_puts(o, "}");
}

static void write_locks(struct lg_out *o, const struct lg_snap_locks *l)
{
	lg_out_puts(o, ",\n\"locks\":{\"contended\":[");
	for (size_t i = 0; i < l->n; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_u64(o, &g, "stack", l->contended[i].stack);
		kv_u64(o, &g, "count", l->contended[i].count);
		kv_u64(o, &g, "wait_ns", l->contended[i].wait_ns);
		kv_u64(o, &g, "max_wait_ns", l->contended[i].max_wait_ns);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]}");
}

static void write_threads(struct lg_out *o, const struct lg_snap_threads *t)
{
	bool f = true;

	lg_out_puts(o, ",\n\"threads\":{");
	kv_u64(o, &f, "live", t->live);
	kv_u64(o, &f, "peak", t->peak);
	key(o, &f, "unjoined");
	lg_out_puts(o, "[");
	for (size_t i = 0; i < t->n; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_u64(o, &g, "stack", t->unjoined[i].stack);
		kv_u64(o, &g, "count", t->unjoined[i].count);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]}");
}

static void write_violations(struct lg_out *o, const struct lg_snapshot *s)
{
	lg_out_puts(o, ",\n\"violations\":[");
	for (size_t i = 0; i < s->nviolations; i++) {
		bool g = true;
		sep(o, i);
		lg_out_puts(o, "{");
		kv_str(o, &g, "kind", s->violations[i].kind);
		kv_u64(o, &g, "count", s->violations[i].count);
		kv_u64(o, &g, "stack", s->violations[i].stack);
		lg_out_puts(o, "}");
	}
	lg_out_puts(o, "]");
}

int lg_write_json(const struct lg_snapshot *s, struct lg_out *o)
{
	lg_out_puts(o, "{");
	write_guard(o, &s->guard);
	write_stacks(o, s);
	if (s->heap.present)
		write_heap(o, &s->heap);
	if (s->fd.present)
		write_fd(o, &s->fd);
	if (s->net.present)
		write_net(o, &s->net);
	if (s->limits.present)
		write_limits(o, &s->limits);
	if (s->clock.present)
		write_clock(o, &s->clock);
	if (s->locks.present)
		write_locks(o, &s->locks);
	if (s->threads.present)
		write_threads(o, &s->threads);
	write_violations(o, s);
	lg_out_puts(o, "}\n");
	return o->err;
}
