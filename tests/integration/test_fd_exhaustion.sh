#!/bin/bash
# No fd left and clients waiting in the backlog: under libguard (enforce) an event loop must not
# spin. Level-triggered epoll wakes at most 10 times in 500 ms (measured without libguard too: it
# spins); edge-triggered epoll gets its event again once an fd is free (no stall); a blocking
# accept sheds what it cannot serve instead of returning EMFILE in a loop.
. "$(dirname "$0")/lib.sh"

build_c exhaust <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000LL + t.tv_nsec / 1000000; }
int main(int argc, char **argv)
{
	const char *mode = argv[1];   /* lt | et | block */
	int lfd = socket(AF_INET, SOCK_STREAM | (strcmp(mode, "block") ? SOCK_NONBLOCK : 0), 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 64) || getsockname(lfd, (struct sockaddr *)&a, &al))
		return 2;
	pid_t child = fork();
	if (child == 0) {   /* clients: connect and wait */
		int c[6];
		for (int i = 0; i < 6; i++) { c[i] = socket(AF_INET, SOCK_STREAM, 0); connect(c[i], (struct sockaddr *)&a, sizeof(a)); }
		sleep(5);
		_exit(0);
	}
	usleep(150000);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | (strcmp(mode, "et") ? 0 : EPOLLET), .data.u64 = 42 };
	if (strcmp(mode, "block"))
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	else {
		struct timeval tv = { 0, 100000 };   /* accept honours SO_RCVTIMEO */
		setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	struct rlimit rl = { 32, 32 };
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return 3;
	int last = -1, filled = 0;
	for (;;) { int fd = open("/dev/null", O_RDONLY); if (fd < 0) break; last = fd; filled++; }
	long long start = now_ms(), freed = 0;
	long wakeups = 0, accepted = 0, emfile = 0;
	while (now_ms() - start < 500) {
		if (!freed && now_ms() - start >= 250) { close(last); freed = 1; }
		if (strcmp(mode, "block") == 0) {
			int fd = accept(lfd, NULL, NULL);
			wakeups++;
			if (fd >= 0) accepted++; else if (errno == EMFILE) emfile++;
			continue;
		}
		struct epoll_event out[8];
		/* Sleep until the next thing the test does: its own timeouts are not wake-ups to count. */
		long long left = (freed ? 500 : 250) - (now_ms() - start);
		int n = epoll_wait(ep, out, 8, left > 0 ? (int)left : 0);
		if (n == 0)
			continue;
		wakeups++;
		for (int i = 0; i < n; i++) {
			if (out[i].data.u64 != 42) return 4;
			for (;;) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
				if (fd >= 0) { accepted++; continue; }
				if (errno == EMFILE) emfile++;
				break;
			}
		}
	}
	printf("%ld %ld %ld %d\n", wakeups, accepted, emfile, filled);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
C
cat > enforce.json <<'J'
{ "version": 1, "mode": "enforce", "fd": { "on_max": "fail" } }
J

# Without libguard: the level-triggered loop spins.
set -- $(timeout 10 ./exhaust lt) || fail "plain run failed"
echo "plain lt: wakeups=$1 accepted=$2 emfile=$3"
[ "$1" -gt 1000 ] || fail "the plain loop did not spin ($1 wake-ups): the scenario is broken"

set -- $(GUARD_POLICY=enforce.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./exhaust lt) || fail "guarded lt failed"
echo "guarded lt: wakeups=$1 accepted=$2 emfile=$3 filled=$4"
[ "$1" -le 10 ] || fail "level-triggered: $1 wake-ups in 500 ms"
[ "$2" -ge 1 ] || fail "level-triggered: nothing accepted after an fd was freed"

set -- $(GUARD_POLICY=enforce.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./exhaust et) || fail "guarded et failed"
echo "guarded et: wakeups=$1 accepted=$2 emfile=$3"
[ "$1" -le 10 ] || fail "edge-triggered: $1 wake-ups in 500 ms"
[ "$2" -ge 1 ] || fail "edge-triggered: the listener stalled after an fd was freed"

set -- $(timeout 10 ./exhaust block) || fail "plain block failed"
echo "plain block: wakeups=$1 accepted=$2 emfile=$3"
# Twice: as run here, and with every inherited fd closed. Which limit the program meets first
# depends on that: an inherited fd numbered above 32 counts towards fd.max (the guard refuses
# first), but takes no slot under RLIMIT_NOFILE (the kernel refuses first).
closed_run() {
  local fd
  for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
  exec "$@"
}
for how in inherited closed; do
  run=(); [ $how = closed ] && run=(closed_run)
  set -- $("${run[@]}" timeout 10 env GUARD_POLICY=enforce.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./exhaust block 2>err.$how) ||
    fail "guarded block ($how fds) failed"
  cat err.$how >&2
  # The reserve fd is lent to the report: a program that holds every fd still gets one.
  ! grep -q "cannot write report" err.$how || fail "no report for want of an fd ($how fds)"
  echo "guarded block ($how fds): wakeups=$1 accepted=$2 emfile=$3 filled=$4"
  [ "$1" -le 10 ] || fail "blocking accept ($how fds): $1 returns in 500 ms"
done
for r in reports/*.json; do json_ok $r; done
echo ok
