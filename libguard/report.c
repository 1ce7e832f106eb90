/* The report driver: where reports go, what they are named, the snapshot, the atomic write, and
 * the violations every guard records.
 *
 * A report is written by one thread at a time (the report lock), never from a signal handler,
 * always to a temporary file that is renamed into place (O_NOFOLLOW, 0600), so a reader never
 * sees half a report and a symlink planted in the report dir is never followed. A report that
 * cannot be written is one warning; the program runs on.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char report_dir[LG_POLICY_PATH_MAX];
static char last_path[LG_POLICY_PATH_MAX + 300];
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int write_warned;

/* ---- violations ---- */

#define MAX_VIOLATION_SITES 512

struct violation_site {
	const char *kind;
	uint32_t stack;
	_Atomic uint64_t count;
};

static struct violation_site violation_sites[MAX_VIOLATION_SITES];
static _Atomic int nviolation_sites;
static _Atomic int violation_lock;
static _Atomic uint64_t violations_total;

void lg_violation(const char *kind, uint32_t stack)
{
	atomic_fetch_add_explicit(&violations_total, 1, memory_order_relaxed);
	int n = atomic_load_explicit(&nviolation_sites, memory_order_acquire);
	for (int i = 0; i < n; i++) {
		if (violation_sites[i].stack == stack && strcmp(violation_sites[i].kind, kind) == 0) {
			atomic_fetch_add_explicit(&violation_sites[i].count, 1, memory_order_relaxed);
			return;
		}
	}
	/* New site: a short spin lock (no pthread lock: this runs inside hooks). */
	while (atomic_exchange_explicit(&violation_lock, 1, memory_order_acquire))
		;
	n = atomic_load_explicit(&nviolation_sites, memory_order_relaxed);
	int i;
	for (i = 0; i < n; i++) {
		if (violation_sites[i].stack == stack && strcmp(violation_sites[i].kind, kind) == 0)
			break;
	}
	if (i == n && n < MAX_VIOLATION_SITES) {
		violation_sites[i].kind = kind;
		violation_sites[i].stack = stack;
		atomic_store_explicit(&violation_sites[i].count, 0, memory_order_relaxed);
		atomic_store_explicit(&nviolation_sites, n + 1, memory_order_release);
	} else if (i == n) {
		i = n - 1;   /* table full: count against the last site rather than lose the count */
	}
	atomic_fetch_add_explicit(&violation_sites[i].count, 1, memory_order_relaxed);
	atomic_store_explicit(&violation_lock, 0, memory_order_release);
}

uint64_t lg_violations_total(void)
{
	return atomic_load_explicit(&violations_total, memory_order_relaxed);
}

static void violations_reset(void)
{
	atomic_store(&nviolation_sites, 0);
	atomic_store(&violations_total, 0);
	atomic_store(&violation_lock, 0);
}

/* ---- where reports go ---- */

static bool dir_writable(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && access(dir, W_OK | X_OK) == 0;
}

static void absolutize(const char *dir, char *out, size_t outlen)
{
	char cwd[PATH_MAX];

	if (dir[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(out, outlen, "%s", dir);
	else if (strcmp(dir, ".") == 0)
		snprintf(out, outlen, "%s", cwd);
	else
		snprintf(out, outlen, "%s/%s", cwd, dir);
}

int lg_report_init(void)
{
	const char *env = getenv("GUARD_REPORT_DIR");
	const char *asked = env && *env ? env : (lg_policy.report.dir[0] ? lg_policy.report.dir : NULL);
	char cwd[PATH_MAX];

	if (asked) {
		absolutize(asked, report_dir, sizeof(report_dir));
		if (dir_writable(report_dir))
			return 0;
		int err = errno;
		const char *fallback = getcwd(cwd, sizeof(cwd)) && dir_writable(cwd) ? cwd : "/tmp";
		/* Lose nothing: say where the reports go instead, and go on. */
		lg_warn("report dir %s cannot be written (%s); reports go to %s", report_dir,
			access(report_dir, F_OK) != 0 ? strerror(err) : "not a writable directory",
			fallback);
		snprintf(report_dir, sizeof(report_dir), "%s", fallback);
		return -err;
	}
	if (getcwd(cwd, sizeof(cwd)) && dir_writable(cwd))
		snprintf(report_dir, sizeof(report_dir), "%s", cwd);
	else
		snprintf(report_dir, sizeof(report_dir), "/tmp");
	return 0;
}

const char *lg_report_dir(void) { return report_dir; }
const char *lg_report_last_path(void) { return last_path; }

/* Expand the name template: %e program, %p pid, %t unix seconds, %% a percent sign. */
static void expand_name(char *out, size_t outlen, const char *tmpl)
{
	size_t n = 0;

	for (const char *p = tmpl; *p && n + 1 < outlen; p++) {
		int k = 0;
		if (*p != '%' || !p[1]) {
			out[n++] = *p;
			continue;
		}
		switch (*++p) {
		case 'e': k = snprintf(out + n, outlen - n, "%s", lg_exe_name()); break;
		case 'p': k = snprintf(out + n, outlen - n, "%d", (int)getpid()); break;
		case 't': k = snprintf(out + n, outlen - n, "%llu",
				       (unsigned long long)(lg_unix_ms() / 1000)); break;
		default: out[n++] = *p; break;
		}
		if (k > 0)
			n += (size_t)k < outlen - n ? (size_t)k : outlen - n - 1;
	}
	out[n] = '\0';
}

/* ---- atomic files ---- */

int lg_report_file_open(struct lg_report_file *f, const char *base, const char *suffix)
{
	snprintf(f->final, sizeof(f->final), "%s%s", base, suffix);
	const char *slash = strrchr(f->final, '/');
	size_t dirlen = slash ? (size_t)(slash - f->final) : 0;
	/* A dot file in the same directory, so rename(2) is atomic and never crosses filesystems. */
	snprintf(f->tmp, sizeof(f->tmp), "%.*s/.%s.%d.tmp", (int)dirlen, f->final,
		 slash ? slash + 1 : f->final, (int)getpid());
	unlink(f->tmp);
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return f->fd < 0 ? -errno : 0;
}

int lg_report_file_commit(struct lg_report_file *f, int status)
{
	if (f->fd >= 0 && close(f->fd) != 0 && status == 0)
		status = -errno;
	f->fd = -1;
	if (status == 0 && rename(f->tmp, f->final) != 0)
		status = -errno;
	if (status != 0)
		unlink(f->tmp);
	return status;
}

/* ---- formats ---- */

extern const struct lg_report_format __start_lg_formats[] __attribute__((weak, visibility("hidden")));
extern const struct lg_report_format __stop_lg_formats[] __attribute__((weak, visibility("hidden")));

int lg_report_file_write(const struct lg_snapshot *s, const char *base, const char *suffix,
			 lg_file_writer write, int profile)
{
	struct lg_report_file f;
	struct lg_out out;
	int rc = lg_report_file_open(&f, base, suffix);

	if (rc != 0)
		return rc;
	lg_out_init(&out, f.fd);
	rc = write(s, profile, &out);
	int flush = lg_out_flush(&out);
	rc = lg_report_file_commit(&f, rc ? rc : flush);
	if (rc == 0 && strcmp(suffix, ".json") == 0)
		snprintf(last_path, sizeof(last_path), "%s", f.final);
	return rc;
}

static int json_contents(const struct lg_snapshot *s, int profile, struct lg_out *o)
{
	(void)profile;
	return lg_write_json(s, o);
}

static int write_json_file(const struct lg_snapshot *s, const char *base)
{
	return lg_report_file_write(s, base, ".json", json_contents, -1);
}
LG_REPORT_FORMAT(json, LG_FORMAT_JSON, write_json_file);

/* ---- the snapshot ---- */

struct lg_snap_chunk {
	struct lg_snap_chunk *next;
	size_t used, size;
	max_align_t data[];
};

void *lg_snapshot_alloc(struct lg_snapshot *s, size_t size)
{
	struct lg_snap_chunk *c = s->chunks;

	size = (size + 15) & ~(size_t)15;
	if (!c || c->size - c->used < size) {
		/* 4 KiB first, doubling up to 64 KiB: a small program's report stays small (and so
		 * does the self_bytes it reports, which counts this memory). */
		size_t want = c ? (c->size < 65536 ? c->size * 2 : 65536) : 4096 - sizeof(*c);
		if (want < size)
			want = size;
		c = lg_mem_alloc(sizeof(*c) + want);
		if (!c)
			return NULL;
		c->size = want;
		c->used = 0;
		c->next = s->chunks;
		s->chunks = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

static void snapshot_free(struct lg_snapshot *s)
{
	for (struct lg_snap_chunk *c = s->chunks, *next; c; c = next) {
		next = c->next;
		lg_mem_free(c);
	}
	s->chunks = NULL;
}

const struct lg_snap_stack *lg_snapshot_stack(const struct lg_snapshot *s, uint32_t id)
{
	size_t lo = 0, hi = s->nstacks;

	while (lo < hi) {   /* stacks are sorted by id */
		size_t mid = (lo + hi) / 2;
		if (s->stacks[mid].id == id)
			return &s->stacks[mid];
		if (s->stacks[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void snapshot_violations(struct lg_snapshot *s)
{
	int n = atomic_load_explicit(&nviolation_sites, memory_order_acquire);

	s->violations = lg_snapshot_alloc(s, sizeof(*s->violations) * (size_t)(n ? n : 1));
	if (!s->violations)
		return;
	for (int i = 0; i < n; i++) {
		s->violations[s->nviolations++] = (struct lg_snap_violation){
			.kind = violation_sites[i].kind,
			.count = atomic_load_explicit(&violation_sites[i].count, memory_order_relaxed),
			.stack = violation_sites[i].stack,
		};
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Every stack id the sections refer to, sorted and unique, symbolized. */
static void snapshot_stacks(struct lg_snapshot *s)
{
	size_t cap = 64, n = 0;
	uint32_t *ids = lg_mem_alloc(cap * sizeof(*ids));

#define ADD_ID(v)                                                                                 \
	do {                                                                                      \
		uint32_t id_ = (v);                                                               \
		if (!id_ || !ids)                                                                 \
			break;                                                                    \
		if (n == cap) {                                                                   \
			uint32_t *grown = lg_mem_realloc(ids, cap * 2 * sizeof(*ids));            \
			if (!grown)                                                               \
				break;                                                            \
			ids = grown;                                                              \
			cap *= 2;                                                                 \
		}                                                                                 \
		ids[n++] = id_;                                                                   \
	} while (0)
	for (size_t i = 0; i < s->heap.nlive; i++) ADD_ID(s->heap.live[i].stack);
	for (size_t i = 0; i < s->heap.nsuspects; i++) ADD_ID(s->heap.suspects[i].stack);
	for (size_t i = 0; i < s->fd.nsites; i++) ADD_ID(s->fd.sites[i].stack);
	for (size_t i = 0; i < s->net.nsites; i++) ADD_ID(s->net.sites[i].stack);
	for (size_t i = 0; i < s->clock.njumps; i++) ADD_ID(s->clock.jumps[i].stack);
	for (size_t i = 0; i < s->clock.nreaders; i++) ADD_ID(s->clock.readers[i].stack);
	for (size_t i = 0; i < s->locks.n; i++) ADD_ID(s->locks.contended[i].stack);
	for (size_t i = 0; i < s->threads.n; i++) ADD_ID(s->threads.unjoined[i].stack);
	for (size_t i = 0; i < s->nviolations; i++) ADD_ID(s->violations[i].stack);
#undef ADD_ID
	if (!ids)
		return;
	qsort(ids, n, sizeof(*ids), cmp_u32);
	size_t uniq = 0;
	for (size_t i = 0; i < n; i++) {
		if (uniq == 0 || ids[uniq - 1] != ids[i])
			ids[uniq++] = ids[i];
	}
	s->stacks = lg_snapshot_alloc(s, sizeof(*s->stacks) * (uniq ? uniq : 1));
	for (size_t i = 0; s->stacks && i < uniq; i++) {
		const uintptr_t *frames;
		uint32_t nf = lg_stack_frames(ids[i], &frames);
		struct lg_snap_stack *st = &s->stacks[s->nstacks];
		st->id = ids[i];
		st->frames = lg_snapshot_alloc(s, sizeof(*st->frames) * (nf ? nf : 1));
		if (!st->frames)
			break;
		for (uint32_t k = 0; k < nf; k++) {
			struct lg_symbol sym = { 0 };
			struct lg_snap_frame *fr = &st->frames[st->nframes++];
			fr->addr = frames[k];
			if (lg_symbolize(frames[k], &sym) == 0) {
				fr->fn = sym.fn;
				fr->module = sym.module;
				fr->offset = sym.offset;
			}
		}
		s->nstacks++;
	}
	lg_mem_free(ids);
}

static void snapshot_guard(struct lg_snapshot *s, const char *reason)
{
	s->guard = (struct lg_snap_guard){
		.version = LG_VERSION,
		.pid = getpid(),
		.exe = lg_exe_path(),
		.reason = reason,
		.policy = lg_policy_source(),
		.mode = lg_policy_mode_name(lg_policy.mode),
		.started_unix_ms = lg_started_unix_ms(),
		.written_unix_ms = lg_unix_ms(),
	};
}

int lg_report_write(const char *reason)
{
	struct lg_snapshot snap;
	char name[256], base[LG_POLICY_PATH_MAX + 260];
	int rc = 0;

	if (lg_state() != LG_READY && lg_state() != LG_EXITING)
		return -EAGAIN;
	lg_enter();
	int saved = errno;
	if (strcmp(reason, "exit") == 0) {
		/* An exiting process must never hang on its guard: if another report is stuck (the
		 * guardian was stopped mid-way, or waits on a lock the exiting thread holds), give up
		 * on the exit report after a bounded wait. */
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 5;
		if (LG_REAL(pthread_mutex_timedlock)(&report_lock, &deadline) != 0) {
			lg_warn("no exit report: another report did not finish within 5 s");
			errno = saved;
			lg_leave();
			return -ETIMEDOUT;
		}
	} else {
		LG_REAL(pthread_mutex_lock)(&report_lock);
	}
	memset(&snap, 0, sizeof(snap));
	snapshot_guard(&snap, reason);
	lg_guards_snapshot(&snap);
	snapshot_violations(&snap);
	snapshot_stacks(&snap);
	/* Last, so that it counts the snapshot's own memory too. */
	snap.guard.self_bytes = lg_mem_self_bytes() + lg_heap_self_bytes();

	expand_name(name, sizeof(name), lg_policy.report.name);
	snprintf(base, sizeof(base), "%s/%s", report_dir, name);
	for (const struct lg_report_format *f = __start_lg_formats; f && f < __stop_lg_formats; f++) {
		if (!(lg_policy.report.formats & f->bit))
			continue;
		int frc = f->write(&snap, base);
		if (frc != 0 && rc == 0)
			rc = frc;
	}
	if (rc != 0 && !atomic_exchange(&write_warned, 1))
		lg_warn("cannot write report %s: %s (further failures are not reported)", base,
			strerror(-rc));
	snapshot_free(&snap);
	lg_symbol_reset();
	lg_guards_report_done();
	LG_REAL(pthread_mutex_unlock)(&report_lock);
	errno = saved;
	lg_leave();
	return rc;
}

/* ---- fork ---- */

void lg_report_atfork_prepare(void)
{
	/* A fork in the middle of a report waits for it: the child must not inherit a held lock. */
	if (lg_state() == LG_READY)
		LG_REAL(pthread_mutex_lock)(&report_lock);
}

void lg_report_atfork_parent(void)
{
	if (lg_state() == LG_READY)
		LG_REAL(pthread_mutex_unlock)(&report_lock);
}

void lg_report_atfork_child(void)
{
	pthread_mutex_init(&report_lock, NULL);
	lg_symbol_atfork_child();
	/* The child reports its own violations, under its own pid. */
	violations_reset();
	last_path[0] = '\0';
	atomic_store(&write_warned, 0);
}
