#!/bin/bash
# The fd report names the site that leaks, with its exact count, and nothing for sites that open
# and close (sockets, pipes, files through open/close and through fopen/fclose), and a descriptor
# that fclose closes behind the program's fdopen.
. "$(dirname "$0")/lib.sh"

build_c leak <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static int keep[64];
__attribute__((noinline)) void leak_sockets(void)
{
	for (int i = 0; i < 37; i++)
		keep[i] = socket(AF_INET, SOCK_STREAM, 0);
}
__attribute__((noinline)) void churn_sockets(void)
{
	for (int i = 0; i < 300; i++)
		close(socket(AF_INET, SOCK_DGRAM, 0));
}
__attribute__((noinline)) void churn_pipes(void)
{
	for (int i = 0; i < 200; i++) {
		int p[2];
		if (pipe(p) == 0) { close(p[0]); close(p[1]); }
	}
}
__attribute__((noinline)) void churn_files(void)
{
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen("/etc/hostname", "r");
		if (f) fclose(f);
		close(open("/etc/hostname", O_RDONLY));
	}
}
int main(void)
{
	churn_sockets();
	leak_sockets();
	churn_pipes();
	churn_files();
	/* a stale entry: an fd closed behind the hooks' back, by a raw close inside "libc" */
	int fd = open("/etc/hostname", O_RDONLY);
	fclose(fdopen(fd, "r"));
	return keep[36] < 0;
}
C
guarded ./leak || fail "leak exited with $?"
r=$(ls reports/*.json) || fail "no report"
json_ok $r
sites=$(jget $r 'len(d["fd"]["by_site"])')
[ "$sites" = 1 ] || fail "expected exactly one fd site, got $sites: $(jget $r 'd["fd"]')"
[ "$(jget $r 'd["fd"]["by_site"][0]["count"]')" = 37 ] || fail "leak site count: $(jget $r 'd["fd"]')"
[ "$(jget $r 'd["fd"]["by_site"][0]["kinds"]')" = "{'socket': 37}" ] || fail "kinds: $(jget $r 'd["fd"]')"
fns=$(jget $r '[f["fn"] for s in d["stacks"] if s["id"] == d["fd"]["by_site"][0]["stack"] for f in s["frames"]]')
case "$fns" in "['leak_sockets'"*) ;; *) fail "leak site does not start at leak_sockets: $fns" ;; esac
open=$(jget $r 'd["fd"]["open"]'); peak=$(jget $r 'd["fd"]["peak"]')
[ "$open" -ge 37 ] && [ "$open" -lt 60 ] || fail "open = $open"
[ "$peak" -ge "$open" ] || fail "peak $peak < open $open"
[ "$(jget $r 'd["fd"]["max"]')" -gt 0 ] || fail "max not reported"
echo ok
