#!/bin/bash
# A blocking connect to a listener whose backlog is full hangs for seconds (SYN retransmits);
# under connect_timeout_ms 300 it fails with ETIMEDOUT within 0.2-0.6 s, the socket's flags are
# as the program left them, and the report names the function that called connect.
. "$(dirname "$0")/lib.sh"

build_c dial <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static struct sockaddr_in a = { .sin_family = AF_INET };
static void on_alarm(int s) { (void)s; }
__attribute__((noinline)) int dial_backend(int *err)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	*err = errno;
	int fl = fcntl(fd, F_GETFL);
	return rc == 0 ? 0 : (fl & O_NONBLOCK) ? -2 : -1;
}
int main(void)
{
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t al = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 0) || getsockname(lfd, (struct sockaddr *)&a, &al))
		return 2;
	/* Fill the accept queue (backlog 0 holds one) and the SYN queue behind it. */
	for (int i = 0; i < 4; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(c, (struct sockaddr *)&a, sizeof(a));
	}
	usleep(200000);
	/* Without libguard the connect would hang: a signal without SA_RESTART bounds it. */
	struct sigaction sa = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &sa, NULL);
	alarm(2);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int err = 0, rc = dial_backend(&err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("%d %s %ld\n", rc, strerrorname_np(err) ? strerrorname_np(err) : "?", ms);
	return 0;
}
C
cat > enforce.json <<'J'
{ "version": 1, "mode": "enforce", "net": { "connect_timeout_ms": 300 } }
J
set -- $(timeout 10 ./dial) || fail "plain run failed"
echo "plain: rc=$1 errno=$2 ms=$3"
[ "$3" -ge 1500 ] || fail "the plain connect did not hang ($3 ms): the scenario is broken"

set -- $(GUARD_POLICY=enforce.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./dial) || fail "guarded run failed"
echo "guarded: rc=$1 errno=$2 ms=$3"
[ "$1 $2" = "-1 ETIMEDOUT" ] || fail "expected -1 ETIMEDOUT with the flags restored, got $1 $2"
[ "$3" -ge 200 ] && [ "$3" -le 600 ] || fail "connect took $3 ms"
r=$(ls reports/*.json); json_ok $r
# Sites: the blocking connect in dial_backend (1), and the non-blocking fillers in main still in
# SYN_SENT past the deadline, failed by the guardian (3: the accept queue took one).
sites=$(jget $r 'sorted((x["count"], [f["fn"] for s in d["stacks"] if s["id"] == x["stack"] for f in s["frames"]][0]) for x in d["net"]["by_site"] if x["event"] == "connect_timeout")')
[ "$sites" = "[(1, 'dial_backend'), (3, 'main')]" ] || fail "connect_timeout sites: $sites"
[ "$(jget $r 'd["net"]["connect_timeouts"]')" = 4 ] || fail "net: $(jget $r 'd["net"]')"
echo ok
