#!/bin/bash
# A daemon-style closefrom(3) (close_range in glibc) closes the program's fds, never the guard's:
# the guardian still answers the report signal, the table forgets what was closed, and the
# descriptors made afterwards are counted at their site.
. "$(dirname "$0")/lib.sh"

build_c daemonish <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
static int keep[16];
__attribute__((noinline)) void open_after(void)
{
	for (int i = 0; i < 10; i++)
		keep[i] = socket(AF_INET, SOCK_STREAM, 0);
}
int main(void)
{
	for (int i = 0; i < 5; i++)
		open("/dev/null", O_RDONLY);   /* closed by closefrom below */
	closefrom(3);
	open_after();
	raise(SIGUSR2);                      /* the guardian writes a "signal" report */
	usleep(500000);
	/* The exit report will take the same name: look at the signal report now. */
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "f=$(grep -l '\"signal\"' \"$GUARD_REPORT_DIR\"/*-%d.json) && cp \"$f\" signal.json",
		 (int)getpid());
	system(cmd);
	return keep[9] < 0;
}
C
guarded ./daemonish || fail "daemonish exited with $?"
[ "$(count_reports)" -ge 1 ] || fail "no report"
[ -f signal.json ] || fail "no signal report: the guardian lost its descriptor to closefrom"
sig=signal.json
json_ok $sig
[ "$(jget $sig 'd["fd"]["untracked"]')" = 0 ] || fail "untracked after closefrom: $(jget $sig 'd["fd"]')"
[ "$(jget $sig '[s["count"] for s in d["fd"]["by_site"]]')" = "[10]" ] || fail "sites after closefrom: $(jget $sig 'd["fd"]')"
echo ok
