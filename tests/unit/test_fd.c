/* The fd guard (libguard/fd.c) and the epoll hold-back (libguard/net.c), driven directly: the
 * table, counting, reconciliation, fd.max, sites, and holding a listener back in epoll.
 *
 * One runtime per process, booted with an enforce policy whose fd.max is 0 (follow
 * RLIMIT_NOFILE), so a test can move the limit with setrlimit + lg_fd_on_rlimit. Real fds are
 * made with raw syscalls (the hooks are not linked into unit tests) and told to the guard.
 */
#include "libguard/internal.h"
#include "libguard/report/snapshot.h"
#include "boot_helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NOINLINE __attribute__((noinline, noclone))
static volatile unsigned sink;
/* Loop bounds the compiler cannot unroll: an unrolled loop has one call site per iteration. */
static volatile int two = 2, three = 3;

static const char policy_text[] =
	"{ \"version\": 1, \"mode\": \"enforce\", \"report\": { \"at_exit\": false, \"signal\": null },\n"
	"  \"fd\": { \"max\": 0, \"on_max\": \"fail\", \"stacks\": true } }\n";

static int boot(void **state)
{
	(void)state;
	return boot_policy(policy_text) == 0 && lg_fd_tracking() ? 0 : -1;
}

static int raw_devnull(void)
{
	return (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
}

/* The fd section of a fresh snapshot. Its arrays live in guard memory, left to process exit. */
static struct lg_snap_fd snap_fd(void)
{
	struct lg_snapshot *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	lg_guards_snapshot(s);
	struct lg_snap_fd fd = s->fd;
	free(s);
	return fd;
}

/* One high fd and none below it for a long way: a scan of the table (a snapshot) reads no page
 * that no entry was ever written to. Reading one would map the kernel's zero page, which mincore,
 * and so guard.self_bytes, counts as resident. */
static void test_fd_scans_leave_unwritten_pages_alone(void **state)
{
	(void)state;
	int fd = dup2(0, 4000);   /* segment 2 holds fds 2048..4095; nothing else uses 2100..3999 */
	assert_int_equal(fd, 4000);
	lg_fd_on_create(fd, LG_FD_FILE, 0, 0);
	struct lg_fd_entry *e = lg_fd_entry(fd, false);
	assert_non_null(e);
	char *seg = (char *)(e - (4000 - 2048));
	/* The whole pages of the segment that hold only fds 2100..3999. */
	size_t first = ((2100 - 2048) * sizeof(struct lg_fd_entry) + 4095) / 4096;
	size_t end = (4000 - 2048) * sizeof(struct lg_fd_entry) / 4096;
	unsigned char vec[64];

	assert_true(end > first + 10 && end < sizeof(vec));
	assert_true(lg_fd_high() >= 4000);
	(void)snap_fd();   /* reconciles and groups: scans every entry up to the highest fd */
	assert_int_equal(mincore(seg, end * 4096, vec), 0);
	for (size_t i = first; i < end; i++)
		if (vec[i] & 1)
			fail_msg("page %zu of the segment (fds %zu..) is resident after a scan", i,
				 2048 + i * 4096 / sizeof(struct lg_fd_entry));
	assert_true(atomic_load(&e->info) != 0);   /* the entry itself was kept */
	lg_fd_on_close(fd);
	close(fd);
}

static void test_fd_entry_is_bounds_checked_and_grows(void **state)
{
	(void)state;
	assert_null(lg_fd_entry(-1, true));
	assert_null(lg_fd_entry(INT32_MIN, true));
	/* A segment is mapped only when asked to grow. */
	assert_null(lg_fd_entry(300000, false));
	struct lg_fd_entry *e = lg_fd_entry(300000, true);
	assert_non_null(e);
	assert_ptr_equal(lg_fd_entry(300000, false), e);
	/* Segment edges are distinct entries: 1023 | 1024, 2047 | 2048. */
	assert_ptr_not_equal(lg_fd_entry(1023, true), lg_fd_entry(1024, true));
	assert_ptr_not_equal(lg_fd_entry(2047, true), lg_fd_entry(2048, true));
	assert_ptr_equal(lg_fd_entry(2047, true) + 1, lg_fd_entry(1024, true) + 1024);
	/* The kernel's ceiling on fd numbers (fs.nr_open) is 2^20 by default. */
	assert_non_null(lg_fd_entry((1 << 20) - 1, true));
}

static void test_fd_counts_creates_reuse_and_closes(void **state)
{
	(void)state;
	uint64_t base = lg_fd_open_count();
	int fd = raw_devnull();
	assert_true(fd >= 0);

	lg_fd_on_create(fd, LG_FD_FILE, 0, 0);
	assert_int_equal(lg_fd_open_count(), base + 1);
	/* The same number handed out again (the old fd closed inside libc): replaced, not added. */
	lg_fd_on_create(fd, LG_FD_SOCKET, LG_FDF_ACCEPTED, 0);
	assert_int_equal(lg_fd_open_count(), base + 1);
	assert_int_equal(lg_fd_accepted_count(), 1);
	assert_int_equal(lg_fd_flags(fd), LG_FDF_ACCEPTED);
	lg_fd_set_flags(fd, LG_FDF_LISTEN, LG_FDF_ACCEPTED);
	assert_int_equal(lg_fd_flags(fd), LG_FDF_LISTEN);
	assert_int_equal(lg_fd_accepted_count(), 0);
	lg_fd_on_close(fd);
	syscall(SYS_close, fd);
	assert_int_equal(lg_fd_open_count(), base);
	/* Closing what is not tracked changes nothing. */
	lg_fd_on_close(fd);
	lg_fd_on_close(-5);
	assert_int_equal(lg_fd_open_count(), base);
	assert_int_equal(lg_fd_flags(fd), 0);
}

static void test_fd_reconcile_drops_stale_and_counts_untracked(void **state)
{
	(void)state;
	uint64_t base = lg_fd_open_count();
	/* Unseen first, so that the stale number is not handed out again to it. */
	int unseen = raw_devnull();          /* opened where no hook saw it */
	int stale = raw_devnull();
	assert_true(unseen >= 0 && stale >= 0);
	lg_fd_on_create(stale, LG_FD_FILE, 0, 0);
	syscall(SYS_close, stale);          /* closed where no hook saw it, like fclose */
	assert_int_equal(lg_fd_open_count(), base + 1);
	struct timespec ms = { 0, 2000000 };
	nanosleep(&ms, NULL);               /* the scan drops only entries older than itself */

	struct lg_snap_fd s = snap_fd();
	assert_true(s.present);
	assert_int_equal(s.open, base);
	assert_int_equal(lg_fd_open_count(), base);
	assert_true(s.untracked >= 1);
	uint64_t untracked = s.untracked;
	syscall(SYS_close, unseen);
	s = snap_fd();
	assert_int_equal(s.untracked, untracked - 1);
}

static NOINLINE void make_at_site_a(int fd)
{
	lg_fd_on_create(fd, LG_FD_SOCKET, 0, 0);
	sink++;
}

static NOINLINE void make_at_site_b(int fd, int kind)
{
	lg_fd_on_create(fd, kind, 0, 0);
	sink++;
}

static void test_fd_sites_group_by_stack_sorted_by_count(void **state)
{
	int a[3], b[2];

	(void)state;
	for (int i = 0; i < three; i++)
		make_at_site_a(a[i] = raw_devnull());
	for (int i = 0; i < two; i++)   /* one call site: one stack */
		make_at_site_b(b[i] = raw_devnull(), i ? LG_FD_EVENTFD : LG_FD_PIPE);

	struct lg_snap_fd s = snap_fd();
	assert_true(s.nsites >= 2);
	assert_int_equal(s.sites[0].count, 3);
	assert_int_equal(s.sites[0].kinds[LG_FD_SOCKET], 3);
	assert_int_equal(s.sites[1].count, 2);
	assert_int_equal(s.sites[1].kinds[LG_FD_PIPE], 1);
	assert_int_equal(s.sites[1].kinds[LG_FD_EVENTFD], 1);
	assert_int_not_equal(s.sites[0].stack, s.sites[1].stack);
	/* The first frame of the site is the function that created the fd. */
	const uintptr_t *frames;
	assert_true(lg_stack_frames(s.sites[0].stack, &frames) > 0);
	struct lg_symbol sym;
	assert_int_equal(lg_symbolize(frames[0] - 1, &sym), 0);
	assert_string_equal(sym.fn, "make_at_site_a");

	for (int i = 0; i < 3; i++) {
		lg_fd_on_close(a[i]);
		syscall(SYS_close, a[i]);
	}
	for (int i = 0; i < 2; i++) {
		lg_fd_on_close(b[i]);
		syscall(SYS_close, b[i]);
	}
	s = snap_fd();
	for (size_t i = 0; i < s.nsites; i++)
		assert_true(s.sites[i].count == 0 || s.sites[i].kinds[LG_FD_SOCKET] != 3);
}

static void test_fd_max_follows_rlimit_and_refuses_in_enforce(void **state)
{
	struct rlimit old, rl;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	uint64_t used = lg_fd_open_count();
	struct lg_snap_fd s = snap_fd();
	used += s.untracked;
	rl.rlim_cur = used + 2;
	rl.rlim_max = old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	lg_fd_on_rlimit(RLIMIT_NOFILE);
	assert_int_equal(lg_fd_max(), used + 2);

	uint64_t before = lg_violations_total();
	assert_int_equal(lg_fd_admit(2, 0), 0);
	assert_int_equal(lg_fd_admit(3, 0), -EMFILE);
	assert_int_equal(lg_violations_total(), before + 1);

	/* Observe mode never refuses. */
	lg_policy.mode = LG_MODE_OBSERVE;
	assert_int_equal(lg_fd_admit(3, 0), 0);
	lg_policy.mode = LG_MODE_ENFORCE;

	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	lg_fd_on_rlimit(RLIMIT_NOFILE);
	assert_int_equal(lg_fd_max(), old.rlim_cur == RLIM_INFINITY ? UINT64_MAX : old.rlim_cur);
	assert_int_equal(lg_fd_admit(3, 0), 0);
}

/* ---- holding a listener back in epoll ---- */

struct listener {
	int lfd, ep, client;
	struct sockaddr_in addr;
};

static void listener_up(struct listener *l, uint32_t events)
{
	socklen_t al = sizeof(l->addr);

	memset(&l->addr, 0, sizeof(l->addr));
	l->addr.sin_family = AF_INET;
	l->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(l->lfd >= 0);
	assert_int_equal(bind(l->lfd, (struct sockaddr *)&l->addr, sizeof(l->addr)), 0);
	assert_int_equal(listen(l->lfd, 8), 0);
	assert_int_equal(getsockname(l->lfd, (struct sockaddr *)&l->addr, &al), 0);
	lg_fd_on_create(l->lfd, LG_FD_SOCKET, LG_FDF_LISTEN, 0);
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(l->ep >= 0);
	struct epoll_event ev = { .events = events, .data.u64 = 0xfeed };
	assert_int_equal(lg_fd_epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev), 0);
	l->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(l->client, (struct sockaddr *)&l->addr, sizeof(l->addr)), 0);
}

static void listener_down(struct listener *l)
{
	lg_fd_on_close(l->lfd);
	close(l->lfd);
	close(l->ep);
	close(l->client);
}

static uint64_t ms_since(uint64_t t0) { return (lg_now_ns() - t0) / 1000000; }

static void test_fd_hold_hides_a_level_triggered_listener_until_due(void **state)
{
	struct listener l;
	struct epoll_event out[4];

	(void)state;
	listener_up(&l, EPOLLIN);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 1);
	assert_int_equal(out[0].data.u64, 0xfeed);

	uint64_t t0 = lg_now_ns();
	assert_int_equal(lg_fd_hold(l.lfd, t0 + 150000000ull, LG_HOLD_LIMIT), 0);
	assert_int_equal(lg_fd_nheld, 1);
	/* The kernel itself reports nothing for it now: no busy loop, even outside our wait. */
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 0);
	/* Our wait does not return early (no spurious 0) and wakes at the release. */
	int n = lg_fd_epoll_wait(l.ep, out, 4, 2000000000ll, NULL, 0);
	uint64_t waited = ms_since(t0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].data.u64, 0xfeed);
	assert_true(waited >= 140 && waited < 1000);
	assert_int_equal(lg_fd_nheld, 0);
	listener_down(&l);
}

static void test_fd_hold_redelivers_an_edge_triggered_listener(void **state)
{
	struct listener l;
	struct epoll_event out[4];

	(void)state;
	listener_up(&l, EPOLLIN | EPOLLET);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 1);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 0);   /* the edge was consumed */
	assert_int_equal(lg_fd_hold(l.lfd, lg_now_ns() + 50000000ull, LG_HOLD_FD), 0);
	/* The program's own MOD while held is kept for the release, not applied. */
	struct epoll_event mod = { .events = EPOLLIN | EPOLLET, .data.u64 = 0xbeef };
	assert_int_equal(lg_fd_epoll_ctl(l.ep, EPOLL_CTL_MOD, l.lfd, &mod), 0);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 0);
	int n = lg_fd_epoll_wait(l.ep, out, 4, 1000000000ll, NULL, 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].data.u64, 0xbeef);
	listener_down(&l);
}

static void test_fd_close_releases_exhaustion_holds(void **state)
{
	struct listener l;
	struct epoll_event out[4];

	(void)state;
	listener_up(&l, EPOLLIN);
	int spare = raw_devnull();
	lg_fd_on_create(spare, LG_FD_FILE, 0, 0);
	assert_int_equal(lg_fd_hold(l.lfd, lg_now_ns() + 60000000000ull, LG_HOLD_FD), 0);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 0);
	lg_fd_on_close(spare);   /* an fd is free: waiting listeners go again */
	syscall(SYS_close, spare);
	assert_int_equal(lg_fd_nheld, 0);
	assert_int_equal(epoll_wait(l.ep, out, 4, 0), 1);
	/* A listener in no epoll set cannot be held: the caller sheds instead. */
	int lone = raw_devnull();
	lg_fd_on_create(lone, LG_FD_SOCKET, 0, 0);
	assert_int_equal(lg_fd_hold(lone, lg_now_ns() + 1000000ull, LG_HOLD_FD), -1);
	lg_fd_on_close(lone);
	syscall(SYS_close, lone);
	/* A DEL of a held fd forgets the hold without putting the events back. */
	assert_int_equal(lg_fd_hold(l.lfd, lg_now_ns() + 60000000000ull, LG_HOLD_LIMIT), 0);
	assert_int_equal(lg_fd_epoll_ctl(l.ep, EPOLL_CTL_DEL, l.lfd, NULL), 0);
	assert_int_equal(lg_fd_nheld, 0);
	listener_down(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_entry_is_bounds_checked_and_grows),
		cmocka_unit_test(test_fd_scans_leave_unwritten_pages_alone),
		cmocka_unit_test(test_fd_counts_creates_reuse_and_closes),
		cmocka_unit_test(test_fd_reconcile_drops_stale_and_counts_untracked),
		cmocka_unit_test(test_fd_sites_group_by_stack_sorted_by_count),
		cmocka_unit_test(test_fd_max_follows_rlimit_and_refuses_in_enforce),
		cmocka_unit_test(test_fd_hold_hides_a_level_triggered_listener_until_due),
		cmocka_unit_test(test_fd_hold_redelivers_an_edge_triggered_listener),
		cmocka_unit_test(test_fd_close_releases_exhaustion_holds),
	};
	return cmocka_run_group_tests(tests, boot, NULL);
}
