#!/bin/bash
# A blocking connect that connect_timeout_ms bounds keeps connect's own semantics, compared
# with the plain run result by result:
#   - connected, a second connect fails with EISCONN (the socket is really connected);
#   - refused, a retry on the same socket tries again (ECONNREFUSED again, not ECONNABORTED);
#   - the program's own SO_SNDTIMEO is its connect timeout (EINPROGRESS when it expires);
#   - a signal whose handler lacks SA_RESTART interrupts it (EINTR).
# A UDP connect is left alone as well (test_limit_connect_fail checks that limits skip it).
. "$(dirname "$0")/lib.sh"

build_c conn <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
static void on_alarm(int s) { (void)s; }
static const char *name(int rc) { return rc == 0 ? "0" : strerrorname_np(errno); }
static struct sockaddr_in listener(int backlog_full)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, backlog_full ? 0 : 16) ||
	    getsockname(l, (struct sockaddr *)&a, &al))
		_exit(2);
	if (backlog_full) {   /* the accept queue (one) and the SYN queue behind it */
		for (int i = 0; i < 4; i++) {
			int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			connect(c, (struct sockaddr *)&a, sizeof(a));
		}
		usleep(200000);
	}
	return a;
}
int main(void)
{
	struct sockaddr_in open_l = listener(0), full_l = listener(1);
	struct sockaddr_in closed = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(closed);
	int tmp = socket(AF_INET, SOCK_STREAM, 0);
	bind(tmp, (struct sockaddr *)&closed, sizeof(closed));
	getsockname(tmp, (struct sockaddr *)&closed, &al);
	close(tmp);   /* a port nothing listens on */

	int s = socket(AF_INET, SOCK_STREAM, 0);
	printf("connect %s\n", name(connect(s, (struct sockaddr *)&open_l, sizeof(open_l))));
	printf("connect again %s\n", name(connect(s, (struct sockaddr *)&open_l, sizeof(open_l))));
	close(s);

	s = socket(AF_INET, SOCK_STREAM, 0);
	printf("refused %s\n", name(connect(s, (struct sockaddr *)&closed, sizeof(closed))));
	printf("retry %s\n", name(connect(s, (struct sockaddr *)&closed, sizeof(closed))));
	close(s);

	s = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { 0, 200000 };
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	printf("own timeout %s\n", name(connect(s, (struct sockaddr *)&full_l, sizeof(full_l))));
	close(s);

	struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 0 }, { 0, 200000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	s = socket(AF_INET, SOCK_STREAM, 0);
	printf("interrupted %s\n", name(connect(s, (struct sockaddr *)&full_l, sizeof(full_l))));
	close(s);

	s = socket(AF_INET, SOCK_DGRAM, 0);
	printf("udp %s\n", name(connect(s, (struct sockaddr *)&closed, sizeof(closed))));
	return 0;
}
C
cat > enforce.json <<'J'
{ "version": 1, "mode": "enforce", "net": { "connect_timeout_ms": 3000 } }
J
timeout 20 ./conn > plain || fail "plain run failed: $(cat plain)"
for want in "connect 0" "connect again EISCONN" "refused ECONNREFUSED" "retry ECONNREFUSED" \
            "own timeout EINPROGRESS" "interrupted EINTR" "udp 0"; do
  grep -qx "$want" plain || fail "the plain run is not what this test expects ('$want'): $(cat plain)"
done
GUARD_POLICY=$T/enforce.json timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./conn > guarded ||
  fail "guarded run failed: $(cat guarded)"
diff plain guarded || fail "connect under connect_timeout_ms differs from the plain run"
echo "ok: $(tr '\n' ';' < guarded)"
