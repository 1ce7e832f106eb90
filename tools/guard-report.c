/* guard-report: read a libguard JSON report and show what a person needs first.
 *
 *   guard-report [--no-lines] REPORT.json               summary: violations, then top sites
 *   guard-report --svg OUT.svg [--profile P] REPORT.json   interactive flame graph of profile P
 *                                                        (heap, fds, locks, clock, threads;
 *                                                        default heap)
 *   guard-report --diff OLD.json NEW.json [--profile P]  growth per site from OLD to NEW
 *
 * Sites are named by their first frame outside libguard, with file:line from addr2line when the
 * module has line information (--no-lines turns that off). Exit status: 0 clean, 1 the report
 * (NEW for --diff) holds violations, 2 bad usage or a report that cannot be read.
 */
#include "tools/report_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP 5

static void print_sites(const struct rp_report *r, const char *title, const cJSON *arr,
			const char *value_key, const char *unit)
{
	const cJSON *it;
	int n = 0, total = cJSON_GetArraySize(arr);
	char where[1024], value[64];

	if (total == 0)
		return;
	printf("%s (%d site%s):\n", title, total, total == 1 ? "" : "s");
	/* Sites are listed largest first by the writer; print the top ones. */
	cJSON_ArrayForEach(it, arr) {
		if (n++ == TOP)
			break;
		rp_describe_stack(r, cJSON_GetObjectItemCaseSensitive(it, "stack"), where, sizeof(where));
		rp_human(rp_num(it, value_key), unit, value, sizeof(value));
		printf("  %14s  %s\n", value, where);
	}
}

static int count_violations(const struct rp_report *r)
{
	return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->root, "violations"));
}

static void summary(const struct rp_report *r)
{
	const cJSON *root = r->root;
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "guard");
	char where[1024], a[64], b[64];

	printf("libguard report: %s\n", r->path);
	printf("  program %s (pid %.0f), reason %s, policy %s, mode %s\n", rp_str(g, "exe") ?: "?",
	       rp_num(g, "pid"), rp_str(g, "reason") ?: "?", rp_str(g, "policy") ?: "?",
	       rp_str(g, "mode") ?: "?");
	rp_human(rp_num(g, "self_bytes"), "bytes", a, sizeof(a));
	printf("  ran %.3f s, guard's own memory %s\n",
	       (rp_num(g, "written_unix_ms") - rp_num(g, "started_unix_ms")) / 1000.0, a);

	const cJSON *viol = cJSON_GetObjectItemCaseSensitive(root, "violations");
	int nviol = cJSON_GetArraySize(viol);
	if (nviol > 0) {
		const cJSON *v;
		printf("VIOLATIONS (%d):\n", nviol);
		cJSON_ArrayForEach(v, viol) {
			rp_describe_stack(r, cJSON_GetObjectItemCaseSensitive(v, "stack"), where, sizeof(where));
			printf("  %-16s x%-6.0f %s\n", rp_str(v, "kind") ?: "?", rp_num(v, "count"), where);
		}
	} else {
		printf("no violations\n");
	}

	const cJSON *heap = cJSON_GetObjectItemCaseSensitive(root, "heap");
	if (heap) {
		rp_human(rp_num(heap, "allocated_bytes"), "bytes", a, sizeof(a));
		rp_human(rp_num(heap, "sample_bytes"), "bytes", b, sizeof(b));
		printf("heap: %s allocated (%s), sampling every %s\n", a,
		       rp_str(heap, "backend") ?: "?", b);
		print_sites(r, "  live heap by site", cJSON_GetObjectItemCaseSensitive(heap, "live"),
			    "bytes", "bytes");
		print_sites(r, "  leak suspects", cJSON_GetObjectItemCaseSensitive(heap, "suspects"),
			    "bytes", "bytes");
	}
	const cJSON *fd = cJSON_GetObjectItemCaseSensitive(root, "fd");
	if (fd) {
		printf("fds: %.0f open (peak %.0f, limit %.0f, untracked %.0f)\n", rp_num(fd, "open"),
		       rp_num(fd, "peak"), rp_num(fd, "max"), rp_num(fd, "untracked"));
		print_sites(r, "  open fds by site", cJSON_GetObjectItemCaseSensitive(fd, "by_site"),
			    "count", "fds");
	}
	const cJSON *net = cJSON_GetObjectItemCaseSensitive(root, "net");
	if (net) {
		printf("net: %.0f connect timeouts, %.0f idle shutdowns, %.0f shed\n",
		       rp_num(net, "connect_timeouts"), rp_num(net, "idle_shutdowns"), rp_num(net, "shed"));
		print_sites(r, "  events by site", cJSON_GetObjectItemCaseSensitive(net, "by_site"),
			    "count", "events");
	}
	const cJSON *lim;
	cJSON_ArrayForEach(lim, cJSON_GetObjectItemCaseSensitive(root, "limits")) {
		printf("limit %s (%s): %.0f allowed, %.0f limited, %.0f ms waited\n",
		       rp_str(lim, "name") ?: "?", rp_str(lim, "call") ?: "?", rp_num(lim, "allowed"),
		       rp_num(lim, "limited"), rp_num(lim, "waited_ms"));
	}
	const cJSON *clk = cJSON_GetObjectItemCaseSensitive(root, "clock");
	if (clk) {
		printf("clock: %d jumps, %.0f monotonic regressions, %.0f ms clamped\n",
		       cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(clk, "jumps")),
		       rp_num(clk, "monotonic_regressions"), rp_num(clk, "clamped_ms"));
		print_sites(r, "  wall-clock readers",
			    cJSON_GetObjectItemCaseSensitive(clk, "realtime_readers"), "calls", "calls");
	}
	const cJSON *locks = cJSON_GetObjectItemCaseSensitive(root, "locks");
	if (locks)
		print_sites(r, "locks: contended sites",
			    cJSON_GetObjectItemCaseSensitive(locks, "contended"), "wait_ns", "ns");
	const cJSON *thr = cJSON_GetObjectItemCaseSensitive(root, "threads");
	if (thr) {
		printf("threads: %.0f live, peak %.0f\n", rp_num(thr, "live"), rp_num(thr, "peak"));
		print_sites(r, "  unjoined threads by site",
			    cJSON_GetObjectItemCaseSensitive(thr, "unjoined"), "count", "threads");
	}
}

static int usage(void)
{
	fprintf(stderr,
		"usage: guard-report [--no-lines] REPORT.json\n"
		"       guard-report --svg OUT.svg [--profile heap|fds|locks|clock|threads] REPORT.json\n"
		"       guard-report --diff OLD.json NEW.json [--profile PROFILE]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *svg = NULL, *profile = NULL, *files[2] = { NULL, NULL };
	bool diff = false;
	int nfiles = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--svg") == 0 && i + 1 < argc) {
			svg = argv[++i];
		} else if (strcmp(a, "--profile") == 0 && i + 1 < argc) {
			profile = argv[++i];
		} else if (strcmp(a, "--diff") == 0) {
			diff = true;
		} else if (strcmp(a, "--no-lines") == 0) {
			rp_lines_enable(false);
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage();
			return 0;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "guard-report: error: unknown option %s\n", a);
			return usage();
		} else if (nfiles < 2) {
			files[nfiles++] = a;
		} else {
			return usage();
		}
	}
	if (nfiles != (diff ? 2 : 1) || (diff && svg))
		return usage();
	if (profile && !rp_profile_find(profile)) {
		fprintf(stderr, "guard-report: error: unknown profile \"%s\" (heap, fds, locks, clock, "
				"threads)\n", profile);
		return 2;
	}

	struct rp_report r[2];
	if (rp_load(&r[0], files[0]) != 0)
		return 2;
	if (diff && rp_load(&r[1], files[1]) != 0) {
		rp_free(&r[0]);
		return 2;
	}
	int rc;
	if (diff) {
		rc = rp_diff(&r[0], &r[1], profile);
		if (rc == 0 && count_violations(&r[1]) > 0)
			rc = 1;
		rp_free(&r[1]);
	} else if (svg) {
		rc = rp_svg(&r[0], profile ? profile : "heap", svg);
		if (rc == 0 && count_violations(&r[0]) > 0)
			rc = 1;
	} else {
		summary(&r[0]);
		rc = count_violations(&r[0]) > 0 ? 1 : 0;
	}
	rp_free(&r[0]);
	rp_lines_close();
	fflush(stdout);
	return rc;
}
