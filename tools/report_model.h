/* guard-report's reading of a libguard JSON report (schema version 1, DESIGN.md section 5),
 * shared by the summary, the flame graph (report_svg.c) and the diff (report_diff.c). */
#ifndef LG_REPORT_MODEL_H
#define LG_REPORT_MODEL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

struct rp_report {
	const char *path;
	cJSON *root;
	const cJSON **stacks;   /* stacks[id]: the stack object with that id, or NULL */
	size_t nstacks;         /* one past the largest id */
};

/* Load and index a report; on failure print one message and return -1. */
int rp_load(struct rp_report *r, const char *path);
void rp_free(struct rp_report *r);

double rp_num(const cJSON *obj, const char *key);
const char *rp_str(const cJSON *obj, const char *key);
/* The "frames" array of stack id (a cJSON number), or NULL. */
const cJSON *rp_frames(const struct rp_report *r, const cJSON *stack_id);

/* Profiles, as in the folded and pprof writers: heap live bytes, fds by site, lock wait ns,
 * realtime reader calls, unjoined threads. */
struct rp_profile {
	const char *name;       /* heap | fds | locks | clock | threads */
	const char *section;    /* the report's section */
	const char *array;      /* its array of sites */
	const char *value;      /* the value key of a site */
	const char *unit;       /* what the value counts, for people */
	const char *title;      /* what the profile shows, for people */
};
extern const struct rp_profile rp_profiles[];
extern const size_t rp_nprofiles;
const struct rp_profile *rp_profile_find(const char *name);
/* The sites array of profile p in the report (NULL when the section is absent). */
const cJSON *rp_profile_sites(const struct rp_report *r, const struct rp_profile *p);

/* A frame's name: the function, else module basename+0xoffset, else the address (the writers'
 * rule, so folded files, pprof and the viewer agree). */
void rp_frame_name(const cJSON *frame, char *out, size_t outlen);
/* True for frames of libguard itself (hooks, capture): a person wants the first frame past them. */
bool rp_frame_is_guard(const cJSON *frame);

/* "file.c:42" for a frame, from addr2line run on the frame's module (one long-lived addr2line per
 * module, fed on a pipe); "" when unknown, when addr2line is missing, or when lines are off. */
void rp_lines_enable(bool on);
const char *rp_frame_line(const cJSON *frame);
void rp_lines_close(void);

/* The frame a person cares about, the first one outside libguard: "fn at file.c:42 (module+0x..)". */
void rp_describe_stack(const struct rp_report *r, const cJSON *stack_id, char *out, size_t outlen);

/* Human units: 1.5 MiB, 3.2 ms, 12 */
void rp_human(double v, const char *unit, char *out, size_t outlen);

/* --svg OUT [--profile P]: returns an exit status. */
int rp_svg(const struct rp_report *r, const char *profile, const char *out_path);
/* --diff OLD NEW [--profile P]: prints growth per site; returns an exit status. */
int rp_diff(const struct rp_report *old, const struct rp_report *new, const char *profile);

#endif
