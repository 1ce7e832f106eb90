/* The snapshot model: what one report holds, copied out of the guards at one moment.
 *
 * Guards fill their section in lg_<guard>_snapshot(); writers (json.c, folded.c, pprof.c,
 * prom.c) read only this model, never a guard's internals. All memory comes from
 * lg_snapshot_alloc() and is released with the snapshot. A section with present == false is
 * omitted (its guard is disabled or not built).
 */
#ifndef LG_SNAPSHOT_H
#define LG_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct lg_snapshot;
struct lg_out;
/* Writes one file's contents (see lg_report_file_write). */
typedef int (*lg_file_writer)(const struct lg_snapshot *s, int profile, struct lg_out *o);

struct lg_snap_guard {
	const char *version;
	pid_t pid;
	const char *exe;
	const char *reason;          /* exit | interval | signal | api */
	const char *policy;          /* path or "default" */
	const char *mode;            /* observe | enforce */
	uint64_t started_unix_ms;
	uint64_t written_unix_ms;
	uint64_t self_bytes;
};

struct lg_snap_frame {
	uintptr_t addr;
	const char *fn;              /* NULL when unknown */
	const char *module;          /* NULL when unknown */
	uintptr_t offset;            /* addr - module base */
};

struct lg_snap_stack {
	uint32_t id;
	uint32_t nframes;
	struct lg_snap_frame *frames;   /* innermost first */
};

struct lg_snap_heap_site { uint32_t stack; uint64_t bytes; uint64_t objects; };
struct lg_snap_heap_suspect { uint32_t stack; uint64_t bytes; uint32_t windows; };
struct lg_snap_heap {
	bool present;
	const char *backend;         /* jemalloc | system */
	uint64_t sample_bytes;
	uint64_t allocated_bytes;
	uint64_t dropped_samples;    /* sampled allocations that could not be kept (made unsampled) */
	size_t nlive;
	struct lg_snap_heap_site *live;
	size_t nsuspects;
	struct lg_snap_heap_suspect *suspects;
};

/* Kinds of descriptor, in the order of the "kinds" object. */
enum lg_fd_kind {
	LG_FD_OTHER = 0, LG_FD_FILE, LG_FD_SOCKET, LG_FD_PIPE, LG_FD_EPOLL, LG_FD_EVENTFD,
	LG_FD_TIMERFD, LG_FD_SIGNALFD, LG_FD_INOTIFY, LG_FD_MEMFD, LG_FD_KIND_COUNT
};
extern const char *const lg_fd_kind_names[LG_FD_KIND_COUNT];

struct lg_snap_fd_site {
	uint32_t stack;
	uint64_t count;
	uint64_t kinds[LG_FD_KIND_COUNT];
	uint64_t oldest_ms;          /* age of the oldest open fd from this site */
};
struct lg_snap_fd {
	bool present;
	uint64_t max, open, peak, untracked;
	size_t nsites;
	struct lg_snap_fd_site *sites;
};

struct lg_snap_net_site { uint32_t stack; const char *event; uint64_t count; };
struct lg_snap_net {
	bool present;
	uint64_t connect_timeouts, idle_shutdowns, shed;
	size_t nsites;
	struct lg_snap_net_site *sites;
};

struct lg_snap_limit {
	const char *name;
	const char *call;            /* accept | connect */
	uint64_t allowed, limited, waited_ms;
};
struct lg_snap_limits {
	bool present;
	size_t n;
	struct lg_snap_limit *items;
};

struct lg_snap_clock_jump { const char *clock; int64_t delta_ms; uint64_t unix_ms; uint32_t stack; };
struct lg_snap_clock_reader { uint32_t stack; uint64_t calls; };
struct lg_snap_clock {
	bool present;
	size_t njumps;
	struct lg_snap_clock_jump *jumps;
	size_t nreaders;
	struct lg_snap_clock_reader *readers;
	uint64_t monotonic_regressions;
	uint64_t clamped_ms;
};

struct lg_snap_lock_site { uint32_t stack; uint64_t count, wait_ns, max_wait_ns; };
struct lg_snap_locks {
	bool present;
	size_t n;
	struct lg_snap_lock_site *contended;
};

struct lg_snap_thread_site { uint32_t stack; uint64_t count; };
struct lg_snap_threads {
	bool present;
	uint64_t live, peak;
	size_t n;
	struct lg_snap_thread_site *unjoined;
};

struct lg_snap_violation { const char *kind; uint64_t count; uint32_t stack; };

struct lg_snapshot {
	struct lg_snap_guard guard;
	struct lg_snap_heap heap;
	struct lg_snap_fd fd;
	struct lg_snap_net net;
	struct lg_snap_limits limits;
	struct lg_snap_clock clock;
	struct lg_snap_locks locks;
	struct lg_snap_threads threads;
	size_t nviolations;
	struct lg_snap_violation *violations;
	size_t nstacks;
	struct lg_snap_stack *stacks;   /* every stack id referenced above, symbolized */
	struct lg_snap_chunk *chunks;   /* arena behind lg_snapshot_alloc */
};

/* Find a symbolized stack by id (NULL if absent). */
const struct lg_snap_stack *lg_snapshot_stack(const struct lg_snapshot *s, uint32_t id);

/* ---- output ---- */

/* A buffered writer over a file descriptor; errors are sticky in err (negative errno). */
struct lg_out {
	int fd;
	int err;
	size_t len;
	char buf[16384];
};
void lg_out_init(struct lg_out *o, int fd);
void lg_out_write(struct lg_out *o, const void *data, size_t n);
void lg_out_puts(struct lg_out *o, const char *s);
void lg_out_printf(struct lg_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lg_out_flush(struct lg_out *o);

/* A JSON string value (NULL writes null); invalid UTF-8 becomes U+FFFD. */
void lg_json_string(struct lg_out *o, const char *s);

/* Writers: each writes one file's contents to an lg_out. */
int lg_write_json(const struct lg_snapshot *s, struct lg_out *o);

/* ---- profiles (folded.c): the per-stack series the folded and pprof writers draw ----
 *
 * A profile exists when its section is present (its guard is enabled), even with no samples:
 * its files are then written empty, so a periodic report never leaves a stale profile behind. */
enum lg_profile {
	LG_PROFILE_HEAP = 0,   /* heap.live: bytes, objects */
	LG_PROFILE_FDS,        /* fd.by_site: open fds */
	LG_PROFILE_LOCKS,      /* locks.contended: wait ns, contentions */
	LG_PROFILE_CLOCK,      /* clock.realtime_readers: calls */
	LG_PROFILE_THREADS,    /* threads.unjoined: threads */
	LG_PROFILE_COUNT
};
struct lg_profile_info {
	const char *name;      /* file infix: NAME.<name>.folded, NAME.<name>.pb.gz */
	unsigned nvalues;      /* 1 or 2; value[0] is the one the folded file and flame graph show */
	const char *type[2];   /* pprof sample types */
	const char *unit[2];
};
extern const struct lg_profile_info lg_profiles[LG_PROFILE_COUNT];
bool lg_profile_present(const struct lg_snapshot *s, enum lg_profile p);
size_t lg_profile_nsamples(const struct lg_snapshot *s, enum lg_profile p);
/* Sample i of profile p: its stack id and values (value[1] is 0 for one-value profiles). */
void lg_profile_sample(const struct lg_snapshot *s, enum lg_profile p, size_t i, uint32_t *stack,
		       uint64_t value[2]);
/* A frame's name in flame graphs and pprof: the function, else module basename+0xoffset, else
 * the address. Never contains ';', a newline or a NUL-less surprise. */
void lg_frame_name(const struct lg_snap_frame *fr, char *out, size_t outlen);

/* One folded file: `root;...;leaf value` per sample. */
int lg_write_folded_profile(const struct lg_snapshot *s, enum lg_profile p, struct lg_out *o);
/* One file per present profile: base.<profile><ext>, contents from write (folded.c). */
int lg_report_write_profiles(const struct lg_snapshot *s, const char *base, const char *ext,
			     lg_file_writer write);
/* One pprof profile (profile.proto), gzip-compressed. */
int lg_write_pprof_profile(const struct lg_snapshot *s, enum lg_profile p, struct lg_out *o);
/* The Prometheus text exposition (metric names documented in prom.c). */
int lg_write_prom(const struct lg_snapshot *s, struct lg_out *o);

/* A report file written atomically: a temp file in the same dir (O_EXCL|O_NOFOLLOW, 0600),
 * renamed into place by commit (status 0) or removed (status != 0). */
struct lg_report_file {
	int fd;
	char tmp[1400];
	char final[1400];
};
int lg_report_file_open(struct lg_report_file *f, const char *base, const char *suffix);
int lg_report_file_commit(struct lg_report_file *f, int status);
/* Write base+suffix atomically with its contents from write(s, profile, out) (profile is -1 for
 * a format with one file). Returns 0 or -errno. */
int lg_report_file_write(const struct lg_snapshot *s, const char *base, const char *suffix,
			 lg_file_writer write, int profile);

/* Each format registers itself: write every file of the format for base (dir/name, no
 * extension). Returns 0 or -errno. */
struct lg_report_format {
	const char *name;
	unsigned bit;   /* enum lg_format */
	int (*write)(const struct lg_snapshot *s, const char *base);
};
#define LG_REPORT_FORMAT(id, fmtbit, fn)                                                           \
	static const struct lg_report_format lg_format_desc_##id                                  \
		__attribute__((used, section("lg_formats"), aligned(8))) = { #id, fmtbit, fn }

#endif
