/* The idle reaper's cost per tracked connection per scan (issue 5).
 *
 * reaper N: one process with the core linked in (no hooks, like tests/unit), policy enforce with
 * net.idle_timeout_ms 600000 (nothing is ever reaped), holding N accepted loopback connections
 * made through lg_net_accept (the hook-facing function, so the fd guard's table has them flagged
 * as accepted). A child process holds the client ends, so the parent's fd numbers are the
 * listener, the guard's own few and the N accepted sockets, as in a server. It times
 * lg_net_scan(), the function the guardian runs every net period, in four states:
 *   base    before any connection (the table's scan bound is a handful of fds)
 *   young   N connections younger than idle_timeout_ms: per entry, a load of info and created_ns,
 *           no syscall (the first minutes of every connection)
 *   old     the same N connections, each scan 601 s further ahead: each is past idle_timeout_ms, so the
 *           scan asks the kernel getsockopt(TCP_INFO) and finds it recently active (its
 *           tcpi_last_data_recv/sent are the real, small ones): not reaped. This is the steady
 *           state of a server whose keep-alive connections outlive idle_timeout_ms.
 *   settled the same, scanned again at the same moment: each connection's next look is due only
 *           idle_timeout_ms - quiet later, so the scan makes no syscall (the usual scan)
 *   empty   after the N connections are closed: the scan still walks every slot up to the highest
 *           fd ever seen (fd.c's high_fd never comes down), each now untracked.
 * and, as the baseline of "old", a bare loop of getsockopt(TCP_INFO) over the same N fds.
 * Each figure is the fastest of 3 timed batches, a batch running scans for >= 20 ms.
 * Prints one line per state: "STATE N ns_per_scan", then the scan bound (highest fd seen) before
 * and with the connections: "base_high N fd", "high N fd".
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char policy_text[] =
	"{ \"version\": 1, \"mode\": \"enforce\",\n"
	"  \"report\": { \"at_exit\": false, \"signal\": null },\n"
	"  \"net\": { \"idle_timeout_ms\": 600000 } }\n";

static int *conns;
static int nconns;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "reaper: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* What is timed: one scan at now + ahead_ns, or one bare TCP_INFO pass over the connections. */
static uint64_t ahead_ns;
static volatile uint32_t sink;

static void one_scan(void)
{
	lg_net_scan(lg_now_ns() + ahead_ns);
}

/* Each scan a further 601 s ahead: every connection is due for a new look (TCP_INFO) again. */
static void one_scan_due(void)
{
	ahead_ns += 601ull * 1000000000ull;
	lg_net_scan(lg_now_ns() + ahead_ns);
}

static void one_tcp_info_pass(void)
{
	for (int i = 0; i < nconns; i++) {
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		if (getsockopt(conns[i], IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
			sink += ti.tcpi_last_data_recv;
	}
}

/* ns per call of fn: the fastest of 3 batches of >= 20 ms each. */
static double time_ns(void (*fn)(void))
{
	double best = 1e300;

	fn();   /* warm the table and the caches */
	for (int b = 0; b < 3; b++) {
		uint64_t t0 = mono_ns(), t;
		long n = 0;
		do {
			fn();
			n++;
		} while ((t = mono_ns()) - t0 < 20000000ull);
		double per = (double)(t - t0) / (double)n;
		if (per < best)
			best = per;
	}
	return best;
}

/* Counters from the report's net section, to check that nothing was reaped. */
static uint64_t idle_shutdowns(void)
{
	struct lg_snapshot *s = calloc(1, sizeof(*s));
	uint64_t n;

	if (!s)
		die("calloc");
	lg_guards_snapshot(s);
	n = s->net.idle_shutdowns;
	free(s);
	return n;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	struct rlimit rl;
	char path[] = "/tmp/lg-bench-reaper-XXXXXX";
	int ready[2], hold[2];

	if (n < 1)
		return 2;
	/* N accepted fds here, N client fds in the child (which inherits the limit). */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) {
			fprintf(stderr, "reaper: RLIMIT_NOFILE hard limit %lu is below %d + 64\n",
				(unsigned long)rl.rlim_max, n);
			return 2;
		}
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			die("setrlimit");
	}

	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) != 0)
		die("listener");
	if (pipe(ready) != 0 || pipe(hold) != 0)
		die("pipe");

	/* The clients, forked before the runtime starts (no guardian thread to carry over). */
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(lfd);
		close(ready[0]);
		close(hold[1]);
		for (int i = 0; i < n; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
				_exit(3);
		}
		char b = 'r';
		if (write(ready[1], &b, 1) != 1)
			_exit(4);
		while (read(hold[0], &b, 1) > 0)   /* until the parent closes hold[1] */
			;
		_exit(0);
	}
	close(ready[1]);
	close(hold[0]);

	int pf = mkstemp(path);
	if (pf < 0 || write(pf, policy_text, sizeof(policy_text) - 1) != (ssize_t)sizeof(policy_text) - 1)
		die("policy file");
	close(pf);
	int rc = lg_init(path);
	unlink(path);
	if (rc != 0 || lg_state() != LG_READY || !lg_fd_tracking()) {
		fprintf(stderr, "reaper: the runtime did not start (rc %d, state %d)\n", rc, lg_state());
		return 2;
	}
	lg_fd_on_create(lfd, LG_FD_SOCKET, 0, 0);
	lg_net_on_listen(lfd);

	ahead_ns = 0;
	nconns = 0;
	double base = time_ns(one_scan);
	int base_high = lg_fd_high();

	conns = calloc((size_t)n, sizeof(*conns));
	if (!conns)
		die("calloc");
	for (int i = 0; i < n; i++) {
		int c = lg_net_accept(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			die("accept");
		conns[nconns++] = c;
	}
	char b;
	if (read(ready[0], &b, 1) != 1) {
		fprintf(stderr, "reaper: the client process failed\n");
		return 2;
	}
	if (lg_fd_accepted_count() != (uint64_t)n) {
		fprintf(stderr, "reaper: the fd table has %llu accepted connections, not %d\n",
			(unsigned long long)lg_fd_accepted_count(), n);
		return 2;
	}

	ahead_ns = 0;
	double young = time_ns(one_scan);
	ahead_ns = 0;
	double old = time_ns(one_scan_due);   /* past idle_timeout_ms, due for TCP_INFO every scan */
	/* The steady state: after one look at a recently active connection the scan knows the
	 * earliest time it can be idle and asks the kernel nothing until then. */
	double settled = time_ns(one_scan);
	double bare = time_ns(one_tcp_info_pass);
	uint64_t reaped = idle_shutdowns();
	int high = lg_fd_high();

	for (int i = 0; i < nconns; i++) {
		lg_fd_on_close(conns[i]);
		close(conns[i]);
	}
	nconns = 0;
	ahead_ns = 0;
	double empty = time_ns(one_scan);

	close(hold[1]);
	waitpid(child, NULL, 0);
	if (reaped != 0) {
		fprintf(stderr, "reaper: %llu connections were reaped: the scan did not take the "
			"active path\n", (unsigned long long)reaped);
		return 2;
	}
	printf("base %d %.1f\n", n, base);
	printf("young %d %.1f\n", n, young);
	printf("old %d %.1f\n", n, old);
	printf("settled %d %.1f\n", n, settled);
	printf("tcp_info %d %.1f\n", n, bare);
	printf("empty %d %.1f\n", n, empty);
	printf("base_high %d %d\n", n, base_high);
	printf("high %d %d\n", n, high);
	return (int)(sink & 0);
}
