/* The typed policy (schema version 1) and its parser.
 *
 * policy/ knows nothing of the runtime: it turns JSON text into a struct lg_policy with every field
 * filled (defaults for what the text leaves out) or into one error line "SOURCE:LINE:COL: message".
 * The struct holds no pointers, so the runtime can copy it into its own memory and the parser's
 * temporary allocations never outlive the call.
 */
#ifndef LG_POLICY_H
#define LG_POLICY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LG_POLICY_VERSION 1
#define LG_POLICY_MAX_LIMITS 32
#define LG_POLICY_MAX_INJECT 16
#define LG_POLICY_NAME_MAX 64
#define LG_POLICY_PATH_MAX 1024

enum lg_mode { LG_MODE_OBSERVE = 0, LG_MODE_ENFORCE = 1 };

/* What a guard does when its ceiling is reached (in enforce mode). */
enum lg_on_max { LG_ON_MAX_REPORT = 0, LG_ON_MAX_FAIL = 1, LG_ON_MAX_ABORT = 2 };

enum lg_limit_call { LG_LIMIT_ACCEPT = 0, LG_LIMIT_CONNECT = 1 };

/* accept: shed | wait; connect: fail | wait. */
enum lg_on_limit { LG_ON_LIMIT_SHED = 0, LG_ON_LIMIT_WAIT = 1, LG_ON_LIMIT_FAIL = 2 };

enum lg_clock_realtime { LG_REALTIME_PASS = 0, LG_REALTIME_CLAMP = 1 };

/* Which clock an injected step applies to. Only realtime steps are meaningful for now. */
enum lg_clock_id { LG_CLOCK_REALTIME = 0, LG_CLOCK_MONOTONIC = 1 };

/* report.formats is a bit set. */
enum lg_format {
	LG_FORMAT_JSON = 1u << 0,
	LG_FORMAT_FOLDED = 1u << 1,
	LG_FORMAT_PPROF = 1u << 2,
	LG_FORMAT_PROM = 1u << 3,
};

/* An address prefix; family 0 means "any address" (the key was absent). */
struct lg_cidr {
	int family;        /* 0, AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network byte order; 4 bytes used for AF_INET */
	uint8_t prefix;    /* 0..32 or 0..128 */
};

struct lg_limit_rule {
	char name[LG_POLICY_NAME_MAX];
	enum lg_limit_call call;
	double rate;               /* tokens per second, > 0 */
	double burst;              /* how many may pass at once, >= 1 */
	int port;                  /* 0 = any port */
	struct lg_cidr addr;       /* family 0 = any address */
	enum lg_on_limit on_limit;
};

struct lg_clock_inject {
	int64_t at_ms;             /* after process start, >= 0 */
	enum lg_clock_id clock;
	int64_t step_ms;           /* either sign, non-zero */
};

struct lg_policy {
	int version;
	enum lg_mode mode;

	struct {
		char dir[LG_POLICY_PATH_MAX];   /* "" = not given: $GUARD_REPORT_DIR, else cwd if writable, else /tmp */
		char name[256];                 /* template: %e program, %p pid, %t unix seconds, %% */
		unsigned formats;               /* enum lg_format bits, never 0 */
		bool at_exit;
		uint32_t interval_s;            /* 0 = off */
		int signal;                     /* signal number; 0 = none (null in JSON) */
		int violation_exit_code;        /* 0..255; 0 = off */
	} report;

	struct {
		uint32_t max_depth;             /* 1..128 */
	} stacks;

	struct {
		bool enabled;
		uint64_t sample_bytes;          /* >= 1 */
		uint64_t max_bytes;             /* 0 = none */
		enum lg_on_max on_max;          /* report | fail | abort */
		uint32_t growth_windows;        /* >= 1 */
	} heap;

	struct {
		bool enabled;
		uint64_t max;                   /* 0 = RLIMIT_NOFILE soft limit */
		double warn_ratio;              /* (0, 1] */
		enum lg_on_max on_max;          /* fail | report | abort */
		bool stacks;
	} fd;

	struct {
		uint32_t connect_timeout_ms;    /* 0 = off, for every field here */
		uint32_t read_timeout_ms;
		uint32_t write_timeout_ms;
		uint32_t idle_timeout_ms;
		uint32_t max_connections;
	} net;

	struct lg_limit_rule limits[LG_POLICY_MAX_LIMITS];
	uint32_t nlimits;

	struct {
		bool enabled;
		uint32_t jump_ms;               /* >= 1 */
		enum lg_clock_realtime realtime;
		struct lg_clock_inject inject[LG_POLICY_MAX_INJECT];
		uint32_t ninject;
	} clock;

	struct {
		bool enabled;
		uint32_t sample;                /* >= 1: every Nth contended acquisition records a stack */
	} locks;

	struct {
		bool enabled;
		uint32_t max;                   /* 0 = none */
	} threads;
};

/* Fill *p with the defaults of schema version 1 (the same values as the embedded default policy). */
void lg_policy_defaults(struct lg_policy *p);

/* Parse and validate policy text. source names the text in messages (a path, or "default").
 * Returns 0, or -EINVAL with err holding "SOURCE:LINE:COL: message" (no prefix, no newline).
 * On error *out is left in an unspecified state. */
int lg_policy_parse(const char *text, size_t len, const char *source, struct lg_policy *out,
		    char *err, size_t errlen);

/* Read and parse a policy file. Returns 0, -EINVAL (bad policy) or -errno (cannot read: err
 * holds "PATH: strerror"). */
int lg_policy_load_file(const char *path, struct lg_policy *out, char *err, size_t errlen);

/* The embedded default policy (policy/default.json), NUL-terminated. */
extern const char lg_policy_default_json[];
extern const size_t lg_policy_default_json_len;

/* Names used in messages and reports. */
const char *lg_policy_mode_name(enum lg_mode m);
const char *lg_policy_signal_name(int signo);   /* "SIGUSR2", or NULL for 0 */

#endif
