/* guard-report: read a libguard JSON report and print what a person needs first.
 *
 *   guard-report REPORT.json
 *
 * Violations first, then the top sites of each guard, each named by its first frame outside
 * libguard. Exit status: 0 clean, 1 the report holds violations, 2 the report cannot be read.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP 5

static char *read_file(const char *path, size_t *len)
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
				return NULL;
			}
			buf = grown;
		}
		size_t k = fread(buf + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static const cJSON *find_stack(const cJSON *root, double id)
{
	const cJSON *st;

	cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(root, "stacks")) {
		const cJSON *sid = cJSON_GetObjectItemCaseSensitive(st, "id");
		if (cJSON_IsNumber(sid) && sid->valuedouble == id)
			return st;
	}
	return NULL;
}

/* The frame a person cares about: the first one outside libguard itself. */
static void describe_stack(const cJSON *root, const cJSON *stack_id, char *out, size_t outlen)
{
	const cJSON *st = cJSON_IsNumber(stack_id) ? find_stack(root, stack_id->valuedouble) : NULL;
	const cJSON *fr;

	snprintf(out, outlen, "(no stack)");
	if (!st)
		return;
	cJSON_ArrayForEach(fr, cJSON_GetObjectItemCaseSensitive(st, "frames")) {
		const char *fn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fr, "fn"));
		const char *mod = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fr, "module"));
		const char *off = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fr, "offset"));
		if (mod && strstr(mod, "libguard"))
			continue;
		const char *base = mod ? strrchr(mod, '/') : NULL;
		base = base ? base + 1 : (mod ? mod : "?");
		snprintf(out, outlen, "%s (%s+%s)", fn ? fn : "??", base, off ? off : "?");
		return;
	}
}

static double num(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_sites(const cJSON *root, const char *title, const cJSON *arr, const char *value_key,
			const char *unit)
{
	const cJSON *it;
	int n = 0, total = cJSON_GetArraySize(arr);
	char where[512];

	if (total == 0)
		return;
	printf("%s (%d site%s):\n", title, total, total == 1 ? "" : "s");
	/* Sites are listed largest first by the writer; print the top ones. */
	cJSON_ArrayForEach(it, arr) {
		if (n++ == TOP)
			break;
		describe_stack(root, cJSON_GetObjectItemCaseSensitive(it, "stack"), where, sizeof(where));
		printf("  %14.0f %-8s %s\n", num(it, value_key), unit, where);
	}
}

int main(int argc, char **argv)
{
	size_t len;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: guard-report REPORT.json\n");
		return 2;
	}
	char *text = read_file(argv[1], &len);
	if (!text) {
		fprintf(stderr, "guard-report: error: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	cJSON *root = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsObject(root)) {
		fprintf(stderr, "guard-report: error: %s: not a libguard JSON report\n", argv[1]);
		cJSON_Delete(root);
		return 2;
	}
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "guard");
	printf("libguard report: %s\n", argv[1]);
	printf("  program %s (pid %.0f), reason %s, policy %s, mode %s\n",
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "exe")) ?: "?", num(g, "pid"),
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "reason")) ?: "?",
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "policy")) ?: "?",
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "mode")) ?: "?");
	printf("  ran %.3f s, guard's own memory %.0f bytes\n",
	       (num(g, "written_unix_ms") - num(g, "started_unix_ms")) / 1000.0, num(g, "self_bytes"));

	const cJSON *viol = cJSON_GetObjectItemCaseSensitive(root, "violations");
	int nviol = cJSON_GetArraySize(viol);
	char where[512];
	if (nviol > 0) {
		const cJSON *v;
		printf("VIOLATIONS (%d):\n", nviol);
		cJSON_ArrayForEach(v, viol) {
			describe_stack(root, cJSON_GetObjectItemCaseSensitive(v, "stack"), where,
				       sizeof(where));
			printf("  %-16s x%-6.0f %s\n",
			       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "kind")) ?: "?",
			       num(v, "count"), where);
		}
	} else {
		printf("no violations\n");
	}

	const cJSON *heap = cJSON_GetObjectItemCaseSensitive(root, "heap");
	if (heap) {
		printf("heap: %.0f bytes allocated (%s), sampling every %.0f bytes\n",
		       num(heap, "allocated_bytes"),
		       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(heap, "backend")) ?: "?",
		       num(heap, "sample_bytes"));
		print_sites(root, "  live heap by site", cJSON_GetObjectItemCaseSensitive(heap, "live"),
			    "bytes", "bytes");
		print_sites(root, "  leak suspects", cJSON_GetObjectItemCaseSensitive(heap, "suspects"),
			    "bytes", "bytes");
	}
	const cJSON *fd = cJSON_GetObjectItemCaseSensitive(root, "fd");
	if (fd) {
		printf("fds: %.0f open (peak %.0f, limit %.0f, untracked %.0f)\n", num(fd, "open"),
		       num(fd, "peak"), num(fd, "max"), num(fd, "untracked"));
		print_sites(root, "  open fds by site", cJSON_GetObjectItemCaseSensitive(fd, "by_site"),
			    "count", "fds");
	}
	const cJSON *net = cJSON_GetObjectItemCaseSensitive(root, "net");
	if (net) {
		printf("net: %.0f connect timeouts, %.0f idle shutdowns, %.0f shed\n",
		       num(net, "connect_timeouts"), num(net, "idle_shutdowns"), num(net, "shed"));
		print_sites(root, "  events by site", cJSON_GetObjectItemCaseSensitive(net, "by_site"),
			    "count", "events");
	}
	const cJSON *lim;
	cJSON_ArrayForEach(lim, cJSON_GetObjectItemCaseSensitive(root, "limits")) {
		printf("limit %s (%s): %.0f allowed, %.0f limited, %.0f ms waited\n",
		       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lim, "name")) ?: "?",
		       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lim, "call")) ?: "?",
		       num(lim, "allowed"), num(lim, "limited"), num(lim, "waited_ms"));
	}
	const cJSON *clk = cJSON_GetObjectItemCaseSensitive(root, "clock");
	if (clk) {
		printf("clock: %d jumps, %.0f monotonic regressions, %.0f ms clamped\n",
		       cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(clk, "jumps")),
		       num(clk, "monotonic_regressions"), num(clk, "clamped_ms"));
		print_sites(root, "  wall-clock readers",
			    cJSON_GetObjectItemCaseSensitive(clk, "realtime_readers"), "calls", "calls");
	}
	const cJSON *locks = cJSON_GetObjectItemCaseSensitive(root, "locks");
	if (locks)
		print_sites(root, "locks: contended sites",
			    cJSON_GetObjectItemCaseSensitive(locks, "contended"), "wait_ns", "ns");
	const cJSON *thr = cJSON_GetObjectItemCaseSensitive(root, "threads");
	if (thr) {
		printf("threads: %.0f live, peak %.0f\n", num(thr, "live"), num(thr, "peak"));
		print_sites(root, "  unjoined threads by site",
			    cJSON_GetObjectItemCaseSensitive(thr, "unjoined"), "count", "threads");
	}
	cJSON_Delete(root);
	return nviol > 0 ? 1 : 0;
}
