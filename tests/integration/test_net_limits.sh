#!/bin/bash
# Rate limits (limiter.c) applied by the accept and connect hooks: an accept "wait" rule holds a
# level-triggered epoll listener back until a token is due (no spin, the backlog is served at the
# rate), a "shed" rule resets what is beyond it, a blocking accept sleeps, a connect "fail" rule
# refuses with ECONNREFUSED.
. "$(dirname "$0")/lib.sh"

build_c srv <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000LL + t.tv_nsec / 1000000; }
int main(int argc, char **argv)
{
	int blocking = strcmp(argv[1], "block") == 0;
	int port = atoi(argv[2]);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 64))
		return 2;
	pid_t child = fork();
	if (child == 0) {
		for (int i = 0; i < 20; i++) { int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (struct sockaddr *)&a, sizeof(a)); }
		sleep(5);
		_exit(0);
	}
	usleep(100000);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	long long start = now_ms();
	long wakeups = 0, accepted = 0;
	if (blocking) {
		struct timeval tv = { 0, 200000 };
		setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	while (now_ms() - start < 1000) {
		if (blocking) {
			if (accept(lfd, NULL, NULL) >= 0) accepted++;
			wakeups++;
			continue;
		}
		struct epoll_event out[4];
		long long left = 1000 - (now_ms() - start);
		int n = epoll_wait(ep, out, 4, left > 0 ? (int)left : 0);
		if (n <= 0)
			continue;
		wakeups++;
		while (accept4(lfd, NULL, NULL, SOCK_NONBLOCK) >= 0)
			accepted++;
	}
	printf("%ld %ld\n", wakeups, accepted);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
C
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
policy() { cat > $1.json <<J
{ "version": 1, "mode": "enforce",
  "limits": [ { "name": "in", "call": "accept", "rate": 5, "burst": 1, "port": $PORT, "on_limit": "$2" } ] }
J
}
policy wait wait; policy shed shed
run() { GUARD_POLICY=$1.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./srv $2 $PORT; }

set -- $(run wait epoll) || fail "wait run failed"
echo "accept wait, epoll: wakeups=$1 accepted=$2"
[ "$2" -ge 4 ] && [ "$2" -le 8 ] || fail "accept wait: $2 accepted in 1 s at 5/s"
[ "$1" -le 15 ] || fail "accept wait: $1 wake-ups in 1 s"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'd["limits"][0]["waited_ms"] == 0 and d["limits"][0]["limited"] >= 1')" = True ] || fail "limits: $(jget $r 'd["limits"]')"
rm -f reports/*

set -- $(run wait block) || fail "blocking wait run failed"
echo "accept wait, blocking: returns=$1 accepted=$2"
[ "$2" -ge 4 ] && [ "$2" -le 8 ] || fail "blocking accept wait: $2 accepted in 1 s at 5/s"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'd["limits"][0]["waited_ms"]')" -ge 400 ] || fail "blocking wait: $(jget $r 'd["limits"]')"
rm -f reports/*

set -- $(run shed epoll) || fail "shed run failed"
echo "accept shed, epoll: wakeups=$1 accepted=$2"
[ "$2" -ge 1 ] && [ "$2" -le 8 ] || fail "accept shed: $2 accepted"
# A shed non-blocking accept returns EAGAIN after one reset: one wake-up per pending client at
# most, then the listener is quiet (a spin would be thousands).
[ "$1" -le 25 ] || fail "accept shed: $1 wake-ups in 1 s for 20 clients"
r=$(ls reports/*.json); json_ok $r
shed=$(jget $r 'd["net"]["shed"]')
[ $((shed + $2)) -eq 20 ] || fail "accept shed: $shed shed + $2 accepted != 20 clients"
echo ok
