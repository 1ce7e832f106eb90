#!/bin/bash
# An epoll server with a silent client and a client that sends a byte every 100 ms: under
# idle_timeout_ms 500 the server sees EOF on the silent one within 0.4-1.6 s (shutdown, the fd
# stays the program's) and never on the chatty one. Observed, nothing is shut down and the would-
# be shutdown is reported. Also: max_connections sheds a third connection beyond 2.
. "$(dirname "$0")/lib.sh"

build_c server <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000LL + t.tv_nsec / 1000000; }
static long long accepted_at[64], eof_at[64];
__attribute__((noinline)) int serve_accept(int lfd) { return accept4(lfd, NULL, NULL, SOCK_NONBLOCK); }
int main(int argc, char **argv)
{
	int nclients = argc > 1 ? 3 : 2;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) || getsockname(lfd, (struct sockaddr *)&a, &al))
		return 2;
	pid_t child = fork();
	if (child == 0) {
		int silent = socket(AF_INET, SOCK_STREAM, 0);
		connect(silent, (struct sockaddr *)&a, sizeof(a));
		usleep(20000);
		int chatty = socket(AF_INET, SOCK_STREAM, 0);
		connect(chatty, (struct sockaddr *)&a, sizeof(a));
		if (nclients == 3) {
			usleep(20000);
			int third = socket(AF_INET, SOCK_STREAM, 0);
			connect(third, (struct sockaddr *)&a, sizeof(a));
		}
		for (int i = 0; i < 25; i++) { usleep(100000); if (write(chatty, "x", 1) != 1) break; }
		_exit(0);
	}
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	int order[64], n_acc = 0;
	long long start = now_ms();
	while (now_ms() - start < 2200) {
		struct epoll_event out[16];
		int n = epoll_wait(ep, out, 16, 50);
		for (int i = 0; i < n; i++) {
			int fd = out[i].data.fd;
			if (fd == lfd) {
				int c;
				while ((c = serve_accept(lfd)) >= 0) {
					order[n_acc++] = c;
					accepted_at[c] = now_ms();
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
				continue;
			}
			char buf[64];
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				eof_at[fd] = now_ms();
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			}
		}
	}
	/* accepted silent-eof-ms chatty-eof-ms (-1 = none) */
	printf("%d", n_acc);
	for (int i = 0; i < 2 && i < n_acc; i++)
		printf(" %lld", eof_at[order[i]] ? eof_at[order[i]] - accepted_at[order[i]] : -1);
	printf("\n");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
C
cat > enforce.json <<'J'
{ "version": 1, "mode": "enforce", "net": { "idle_timeout_ms": 500 } }
J
cat > observe.json <<'J'
{ "version": 1, "mode": "observe", "net": { "idle_timeout_ms": 500 } }
J
cat > cap.json <<'J'
{ "version": 1, "mode": "enforce", "net": { "max_connections": 2 } }
J

set -- $(GUARD_POLICY=enforce.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./server) || fail "guarded run failed"
echo "enforce: accepted=$1 silent_eof_ms=$2 chatty_eof_ms=$3"
[ "$1" = 2 ] || fail "accepted $1 connections"
[ "$2" -ge 400 ] && [ "$2" -le 1600 ] || fail "silent client: EOF after $2 ms"
[ "$3" = -1 ] || fail "chatty client got EOF after $3 ms"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'd["net"]["idle_shutdowns"]')" = 1 ] || fail "net: $(jget $r 'd["net"]')"
fn=$(jget $r '[f["fn"] for x in d["net"]["by_site"] if x["event"] == "idle_shutdown" for s in d["stacks"] if s["id"] == x["stack"] for f in s["frames"]][:1]')
[ "$fn" = "['serve_accept']" ] || fail "idle_shutdown site starts at $fn"
rm -f reports/*

set -- $(GUARD_POLICY=observe.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./server) || fail "observed run failed"
echo "observe: accepted=$1 silent_eof_ms=$2 chatty_eof_ms=$3"
[ "$2 $3" = "-1 -1" ] || fail "observe mode shut a connection down"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'd["net"]["idle_shutdowns"]')" = 1 ] || fail "observe: would-be idle shutdown not reported: $(jget $r 'd["net"]')"
rm -f reports/*

set -- $(GUARD_POLICY=cap.json timeout 10 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./server 3) || fail "capped run failed"
echo "max_connections 2: accepted=$1"
[ "$1" = 2 ] || fail "max_connections 2: the server was given $1 connections"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'd["net"]["shed"]')" = 1 ] || fail "shed: $(jget $r 'd["net"]')"
echo ok
