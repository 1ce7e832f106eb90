/* The connection guard (libguard/net.c), driven directly: connect timeouts, socket timeouts the
 * program did not set, connection caps and the report's net section.
 *
 * One runtime per process, enforce mode, connect_timeout_ms 200, read/write timeouts 1500/2500
 * ms, max_connections 1. Everything runs on 127.0.0.1.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char policy_text[] =
	"{ \"version\": 1, \"mode\": \"enforce\", \"report\": { \"at_exit\": false, \"signal\": null },\n"
	"  \"net\": { \"connect_timeout_ms\": 200, \"read_timeout_ms\": 1500,\n"
	"           \"write_timeout_ms\": 2500, \"max_connections\": 1 } }\n";

static int boot(void **state)
{
	(void)state;
	return boot_policy(policy_text) == 0 && lg_fd_tracking() ? 0 : -1;
}

static struct lg_snap_net net_snap(void)
{
	struct lg_snapshot *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	lg_guards_snapshot(s);
	struct lg_snap_net n = s->net;
	free(s);
	assert_true(n.present);
	return n;
}

static int listener(struct sockaddr_in *a, int backlog, int type)
{
	socklen_t al = sizeof(*a);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | type, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &al), 0);
	lg_fd_on_create(fd, LG_FD_SOCKET, 0, 0);
	lg_net_on_listen(fd);
	return fd;
}

static int tracked_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	lg_fd_on_create(fd, LG_FD_SOCKET, 0, 0);
	return fd;
}

static void drop(int fd)
{
	lg_fd_on_close(fd);
	close(fd);
}

static uint32_t timeout_ms(int fd, int opt)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, opt, &tv, &len), 0);
	return (uint32_t)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
}

static void test_net_connect_times_out_on_a_full_backlog(void **state)
{
	struct sockaddr_in a;
	int fillers[4];

	(void)state;
	int lfd = listener(&a, 0, 0);
	for (int i = 0; i < 4; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fillers[i], (struct sockaddr *)&a, sizeof(a));
	}
	usleep(100000);
	uint64_t before = net_snap().connect_timeouts;
	int fd = tracked_socket();
	uint64_t t0 = lg_now_ns();
	errno = 0;
	int rc = lg_net_connect(fd, (struct sockaddr *)&a, sizeof(a));
	int err = errno;
	uint64_t ms = (lg_now_ns() - t0) / 1000000;
	assert_int_equal(rc, -1);
	assert_int_equal(err, ETIMEDOUT);
	assert_true(ms >= 190 && ms < 1000);
	/* The program's flags are back: still a blocking socket. */
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	assert_int_equal(net_snap().connect_timeouts, before + 1);
	drop(fd);
	for (int i = 0; i < 4; i++)
		close(fillers[i]);
	drop(lfd);
}

static void test_net_connect_keeps_the_kernels_errno(void **state)
{
	struct sockaddr_in a;

	(void)state;
	int lfd = listener(&a, 4, 0);
	drop(lfd);   /* nothing listens there now: RST at once */
	int fd = tracked_socket();
	errno = 0;
	assert_int_equal(lg_net_connect(fd, (struct sockaddr *)&a, sizeof(a)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	drop(fd);
}

static void test_net_connect_sets_timeouts_unless_the_program_did(void **state)
{
	struct sockaddr_in a;

	(void)state;
	int lfd = listener(&a, 4, 0);
	int fd = tracked_socket();
	errno = 1234;
	assert_int_equal(lg_net_connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(errno, 1234);   /* success leaves errno alone */
	assert_int_equal(timeout_ms(fd, SO_RCVTIMEO), 1500);
	assert_int_equal(timeout_ms(fd, SO_SNDTIMEO), 2500);
	assert_true(lg_fd_flags(fd) & LG_FDF_CONNECTED);
	drop(fd);

	/* The program's own SO_RCVTIMEO stands; the write timeout it did not set is ours. */
	fd = tracked_socket();
	struct timeval mine = { .tv_sec = 7 };
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &mine, sizeof(mine)), 0);
	lg_net_on_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO);
	assert_int_equal(lg_net_connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(timeout_ms(fd, SO_RCVTIMEO), 7000);
	assert_int_equal(timeout_ms(fd, SO_SNDTIMEO), 2500);
	drop(fd);

	/* A non-blocking socket gets none (they would change nothing, and cost a syscall). */
	fd = tracked_socket();
	fcntl(fd, F_SETFL, O_NONBLOCK);
	int rc = lg_net_connect(fd, (struct sockaddr *)&a, sizeof(a));
	assert_true(rc == 0 || errno == EINPROGRESS);
	assert_int_equal(timeout_ms(fd, SO_RCVTIMEO), 0);
	drop(fd);
	drop(lfd);
}

static void test_net_accept_sheds_beyond_max_connections(void **state)
{
	struct sockaddr_in a;
	char byte;

	(void)state;
	int lfd = listener(&a, 8, SOCK_NONBLOCK);
	int c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c1, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(connect(c2, (struct sockaddr *)&a, sizeof(a)), 0);
	usleep(20000);
	uint64_t shed = net_snap().shed;

	int s1 = lg_net_accept(lfd, NULL, NULL, 0);
	assert_true(s1 >= 0);
	assert_true(lg_fd_flags(s1) & LG_FDF_ACCEPTED);
	assert_int_equal(lg_fd_accepted_count(), 1);
	/* A blocking accepted socket gets the read timeout. */
	assert_int_equal(timeout_ms(s1, SO_RCVTIMEO), 1500);
	/* The second is beyond max_connections 1: reset, and a non-blocking listener says EAGAIN. */
	errno = 0;
	assert_int_equal(lg_net_accept(lfd, NULL, NULL, SOCK_NONBLOCK), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(net_snap().shed, shed + 1);
	assert_int_equal(read(c2, &byte, 1), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(lg_fd_accepted_count(), 1);
	/* Once the first is closed there is room again. */
	drop(s1);
	assert_int_equal(lg_fd_accepted_count(), 0);
	int c3 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c3, (struct sockaddr *)&a, sizeof(a)), 0);
	usleep(20000);
	int s3 = lg_net_accept(lfd, NULL, NULL, SOCK_NONBLOCK);
	assert_true(s3 >= 0);
	assert_int_equal(timeout_ms(s3, SO_RCVTIMEO), 0);   /* SOCK_NONBLOCK: none */
	drop(s3);
	close(c1);
	close(c2);
	close(c3);
	drop(lfd);
}

static void test_net_report_names_sites_by_event(void **state)
{
	(void)state;
	struct lg_snap_net n = net_snap();
	bool timeout = false, shed = false;
	for (size_t i = 0; i < n.nsites; i++) {
		assert_true(n.sites[i].count > 0);
		timeout |= strcmp(n.sites[i].event, "connect_timeout") == 0;
		shed |= strcmp(n.sites[i].event, "shed") == 0;
	}
	assert_true(timeout);
	assert_true(shed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_connect_times_out_on_a_full_backlog),
		cmocka_unit_test(test_net_connect_keeps_the_kernels_errno),
		cmocka_unit_test(test_net_connect_sets_timeouts_unless_the_program_did),
		cmocka_unit_test(test_net_accept_sheds_beyond_max_connections),
		cmocka_unit_test(test_net_report_names_sites_by_event),
	};
	return cmocka_run_group_tests(tests, boot, NULL);
}
