#!/bin/bash
# fd.max 64: enforced, socket() fails with EMFILE once 64 fds are open; observed, the program goes
# on and the violation is in the report.
. "$(dirname "$0")/lib.sh"

build_c fill -ldl <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
struct guard_stats { uint64_t heap_live_bytes, fds_open, threads_live, violations; };
__attribute__((noinline)) int open_many(int *err)
{
	int n = 0;
	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) { *err = errno; break; }
		n++;
	}
	return n;
}
int main(void)
{
	int err = 0, n = open_many(&err);
	/* The guard's own count of the program's fds, through its public API. */
	void (*stats)(struct guard_stats *) = (void (*)(struct guard_stats *))dlsym(RTLD_DEFAULT, "guard_stats");
	struct guard_stats st = { 0 };
	if (stats)
		stats(&st);
	printf("%d %s %llu\n", n, err ? strerrorname_np(err) : "none", (unsigned long long)st.fds_open);
	fflush(stdout);
	if (getenv("LINGER"))
		sleep(3);   /* the guardian names the top sites in its warning within 2 s */
	return 0;
}
C
cat > enforce.json <<'J'
{ "version": 1, "mode": "enforce", "fd": { "max": 64, "on_max": "fail" } }
J
cat > observe.json <<'J'
{ "version": 1, "mode": "observe", "fd": { "max": 64 } }
J
out=$(GUARD_POLICY=enforce.json guarded ./fill) || fail "enforce run failed"
set -- $out
# The program's fds, the guard's own excluded: exactly 64 open, and the next socket() refused.
[ "$2" = EMFILE ] || fail "enforce: socket() did not fail with EMFILE: $out"
[ "$3" = 64 ] || fail "enforce: $3 fds open when socket() was refused ($1 sockets)"
[ "$1" -ge 50 ] || fail "enforce: only $1 sockets before EMFILE"
r=$(ls reports/*.json); json_ok $r
[ "$(jget $r 'sum(v["count"] for v in d["violations"] if v["kind"] == "fd.max")')" -ge 1 ] || fail "enforce: no fd.max violation"
[ "$(jget $r 'd["fd"]["max"]')" = 64 ] || fail "fd.max not in report"
rm -f reports/*

out=$(LINGER=1 GUARD_POLICY=observe.json guarded ./fill 2>stderr.txt) || fail "observe run failed"
# One warning at warn_ratio (0.8 of 64), naming the site that holds the fds.
cat stderr.txt
[ "$(grep -c 'fd.warn_ratio' stderr.txt)" = 1 ] || fail "expected one warn_ratio warning: $(cat stderr.txt)"
grep -q 'top sites: open_many (' stderr.txt || fail "the warning does not name open_many: $(cat stderr.txt)"
set -- $out
[ "$1 $2" = "100 none" ] || fail "observe changed the program: $out"
[ "$3" -ge 100 ] || fail "observe: the guard counts $3 open fds"
r=$(ls reports/*.json); json_ok $r
v=$(jget $r 'sum(v["count"] for v in d["violations"] if v["kind"] == "fd.max")')
[ "$v" -ge 30 ] || fail "observe: fd.max violations $v"
vs=$(jget $r '[f["fn"] for v in d["violations"] if v["kind"] == "fd.max" for s in d["stacks"] if s["id"] == v["stack"] for f in s["frames"]][:1]')
[ "$vs" = "['open_many']" ] || fail "observe: violation stack starts at $vs"
echo ok
