/* Reading a libguard JSON report for guard-report: loading, the stack index, profiles, frame
 * names, and file:line through addr2line. */
#include "tools/report_model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const struct rp_profile rp_profiles[] = {
	{ "heap", "heap", "live", "bytes", "bytes", "live heap" },
	{ "fds", "fd", "by_site", "count", "fds", "open file descriptors" },
	{ "locks", "locks", "contended", "wait_ns", "ns", "lock wait" },
	{ "clock", "clock", "realtime_readers", "calls", "calls", "wall-clock reads" },
	{ "threads", "threads", "unjoined", "count", "threads", "unjoined threads" },
};
const size_t rp_nprofiles = sizeof(rp_profiles) / sizeof(rp_profiles[0]);

/* A stack id beyond this is not indexed (a report has at most a few hundred thousand stacks). */
#define MAX_STACK_ID 50000000.0

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n + 65536 > cap) {
			cap = cap ? cap * 2 : 131072;
			char *grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = grown;
		}
		size_t k = fread(buf + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0)
			break;
	}
	int err = ferror(f) ? EIO : 0;
	fclose(f);
	if (err) {
		free(buf);
		errno = err;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

int rp_load(struct rp_report *r, const char *path)
{
	size_t len;
	const cJSON *st;

	memset(r, 0, sizeof(*r));
	r->path = path;
	char *text = read_all(path, &len);
	if (!text) {
		fprintf(stderr, "guard-report: error: %s: %s\n", path, strerror(errno));
		return -1;
	}
	r->root = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsObject(r->root) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->root, "guard"))) {
		fprintf(stderr, "guard-report: error: %s: not a libguard JSON report\n", path);
		cJSON_Delete(r->root);
		r->root = NULL;
		return -1;
	}
	double max = 0;
	cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(r->root, "stacks")) {
		double id = rp_num(st, "id");
		if (id > max && id < MAX_STACK_ID)
			max = id;
	}
	r->nstacks = (size_t)max + 1;
	r->stacks = calloc(r->nstacks, sizeof(*r->stacks));
	if (!r->stacks) {
		fprintf(stderr, "guard-report: error: %s: out of memory\n", path);
		return -1;
	}
	cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(r->root, "stacks")) {
		double id = rp_num(st, "id");
		if (id >= 1 && id < (double)r->nstacks && id == floor(id))
			r->stacks[(size_t)id] = st;
	}
	return 0;
}

void rp_free(struct rp_report *r)
{
	cJSON_Delete(r->root);
	free(r->stacks);
	r->root = NULL;
	r->stacks = NULL;
}

double rp_num(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *rp_str(const cJSON *obj, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

const cJSON *rp_frames(const struct rp_report *r, const cJSON *stack_id)
{
	if (!cJSON_IsNumber(stack_id) || stack_id->valuedouble < 1 ||
	    stack_id->valuedouble >= (double)r->nstacks)
		return NULL;
	const cJSON *st = r->stacks[(size_t)stack_id->valuedouble];
	return st ? cJSON_GetObjectItemCaseSensitive(st, "frames") : NULL;
}

const struct rp_profile *rp_profile_find(const char *name)
{
	for (size_t i = 0; i < rp_nprofiles; i++)
		if (strcmp(rp_profiles[i].name, name) == 0)
			return &rp_profiles[i];
	return NULL;
}

const cJSON *rp_profile_sites(const struct rp_report *r, const struct rp_profile *p)
{
	const cJSON *sec = cJSON_GetObjectItemCaseSensitive(r->root, p->section);
	return sec ? cJSON_GetObjectItemCaseSensitive(sec, p->array) : NULL;
}

static unsigned long long hex_field(const cJSON *frame, const char *key)
{
	const char *s = rp_str(frame, key);
	return s ? strtoull(s, NULL, 16) : 0;
}

void rp_frame_name(const cJSON *frame, char *out, size_t outlen)
{
	const char *fn = rp_str(frame, "fn");
	const char *mod = rp_str(frame, "module");

	if (fn && *fn) {
		snprintf(out, outlen, "%s", fn);
	} else if (mod && *mod) {
		const char *slash = strrchr(mod, '/');
		snprintf(out, outlen, "%s+0x%llx", slash && slash[1] ? slash + 1 : mod,
			 hex_field(frame, "offset"));
	} else {
		snprintf(out, outlen, "0x%llx", hex_field(frame, "addr"));
	}
	for (char *c = out; *c; c++) {
		if (*c == ';')
			*c = ':';
		else if ((unsigned char)*c < 0x20)
			*c = '?';
	}
}

bool rp_frame_is_guard(const cJSON *frame)
{
	const char *mod = rp_str(frame, "module");
	const char *base = mod ? strrchr(mod, '/') : NULL;

	base = base ? base + 1 : mod;
	return base && strncmp(base, "libguard", 8) == 0;
}

void rp_human(double v, const char *unit, char *out, size_t outlen)
{
	static const char *const bytes[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	static const char *const times[] = { "ns", "us", "ms", "s" };
	int i = 0;
	double a = fabs(v);

	if (strcmp(unit, "bytes") == 0) {
		while (a >= 1024 && i < 4) {
			a /= 1024;
			v /= 1024;
			i++;
		}
		snprintf(out, outlen, i ? "%.1f %s" : "%.0f %s", v, bytes[i]);
	} else if (strcmp(unit, "ns") == 0) {
		while (a >= 1000 && i < 3) {
			a /= 1000;
			v /= 1000;
			i++;
		}
		snprintf(out, outlen, i ? "%.1f %s" : "%.0f %s", v, times[i]);
	} else {
		snprintf(out, outlen, "%.0f %s", v, unit);
	}
}

/* ---- file:line through addr2line ---- */

#define MAX_LINE_MODULES 32
#define MAX_LINE_CACHE 4096

struct line_module {
	char *path;
	pid_t pid;
	FILE *to, *from;   /* NULL: this module cannot be resolved */
};

struct line_entry {
	const char *module;
	unsigned long long offset;
	char text[160];
};

static bool lines_on = true;
static struct line_module line_modules[MAX_LINE_MODULES];
static size_t nline_modules;
static struct line_entry line_cache[MAX_LINE_CACHE];
static size_t nline_cache;

void rp_lines_enable(bool on)
{
	lines_on = on;
}

static struct line_module *line_module(const char *path)
{
	for (size_t i = 0; i < nline_modules; i++)
		if (strcmp(line_modules[i].path, path) == 0)
			return &line_modules[i];
	if (nline_modules == MAX_LINE_MODULES)
		return NULL;
	struct line_module *m = &line_modules[nline_modules++];
	*m = (struct line_module){ .path = strdup(path), .pid = -1 };
	if (!m->path) {
		nline_modules--;
		return NULL;
	}
	if (path[0] != '/' || access(path, R_OK) != 0)
		return m;   /* [vdso], a deleted file: no lines */

	/* addr2line answers one address per line read and flushes after each (binutils does so
	 * on purpose, to serve as a child process on a pipe). */
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) != 0)
		return m;
	if (pipe2(out, O_CLOEXEC) != 0) {
		close(in[0]);
		close(in[1]);
		return m;
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 2);
		execlp("addr2line", "addr2line", "-e", path, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (pid < 0) {
		close(in[1]);
		close(out[0]);
		return m;
	}
	m->pid = pid;
	m->to = fdopen(in[1], "w");
	m->from = fdopen(out[0], "r");
	return m;
}

static void line_module_close(struct line_module *m)
{
	if (m->to)
		fclose(m->to);
	if (m->from)
		fclose(m->from);
	m->to = m->from = NULL;
	if (m->pid > 0) {
		waitpid(m->pid, NULL, 0);
		m->pid = -1;
	}
}

const char *rp_frame_line(const cJSON *frame)
{
	const char *mod = rp_str(frame, "module");
	unsigned long long off = hex_field(frame, "offset");

	if (!lines_on || !mod || off == 0)
		return "";
	for (size_t i = 0; i < nline_cache; i++)
		if (line_cache[i].offset == off && strcmp(line_cache[i].module, mod) == 0)
			return line_cache[i].text;
	struct line_module *m = line_module(mod);
	if (!m || !m->to || nline_cache == MAX_LINE_CACHE)
		return "";
	struct line_entry *e = &line_cache[nline_cache++];
	e->module = m->path;
	e->offset = off;
	e->text[0] = '\0';

	/* The offset is from the load base, which is the address in the file for shared objects
	 * and PIEs and the absolute address (base 0) for fixed executables: addr2line's input in
	 * both cases. A frame is a return address: the call is the byte before it. */
	char line[4096];
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	bool ok = fprintf(m->to, "0x%llx\n", off - 1) > 0 && fflush(m->to) == 0 &&
		  fgets(line, sizeof(line), m->from) != NULL;
	signal(SIGPIPE, old);
	if (!ok) {
		line_module_close(m);   /* addr2line is missing or died: no lines from this module */
		return e->text;
	}
	line[strcspn(line, "\n")] = '\0';
	/* "??:0" or "??:?" when unknown; "/path/file.c:42 (discriminator 3)" otherwise. */
	char *disc = strstr(line, " (discriminator");
	if (disc)
		*disc = '\0';
	char *colon = strrchr(line, ':');
	if (strncmp(line, "??", 2) == 0 || !colon || colon[1] == '?' || strcmp(colon, ":0") == 0)
		return e->text;
	const char *slash = strrchr(line, '/');
	snprintf(e->text, sizeof(e->text), "%s", slash ? slash + 1 : line);
	return e->text;
}

void rp_lines_close(void)
{
	for (size_t i = 0; i < nline_modules; i++) {
		line_module_close(&line_modules[i]);
		free(line_modules[i].path);
	}
	nline_modules = 0;
	nline_cache = 0;
}

void rp_describe_stack(const struct rp_report *r, const cJSON *stack_id, char *out, size_t outlen)
{
	const cJSON *frames = rp_frames(r, stack_id);
	const cJSON *fr;

	snprintf(out, outlen, "(no stack)");
	if (!frames)
		return;
	cJSON_ArrayForEach(fr, frames) {
		if (rp_frame_is_guard(fr) && fr->next)
			continue;
		const char *fn = rp_str(fr, "fn");
		const char *mod = rp_str(fr, "module");
		const char *off = rp_str(fr, "offset");
		const char *line = rp_frame_line(fr);
		const char *base = mod ? strrchr(mod, '/') : NULL;
		base = base ? base + 1 : (mod ? mod : "?");
		snprintf(out, outlen, "%s%s%s (%s+%s)", fn ? fn : "??", *line ? " at " : "", line, base,
			 off ? off : "?");
		return;
	}
}
