#!/bin/bash
# Descriptors that libc opens inside itself have their creation site in the fd report, like any
# other: fopen, opendir, tmpfile, mkstemp and the fortified open (__open_2, what open becomes
# under _FORTIFY_SOURCE with flags that are not a constant). Each leaking function is named with
# its exact count; what is closed (fclose, closedir, pclose) is not, and a stream reopened with
# freopen is counted once, at its new site.
. "$(dirname "$0")/lib.sh"
need python3

build_c stdio_leak -O2 -D_FORTIFY_SOURCE=2 <<'C'
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile int rdonly = O_RDONLY;   /* not a constant: the fortified open calls __open_2 */
static void *keep[64];
static int nkeep;
__attribute__((noinline)) void leak_fopen(void)
{
	for (int i = 0; i < 5; i++)
		keep[nkeep++] = fopen("/etc/hostname", "r");
}
__attribute__((noinline)) void leak_opendir(void)
{
	for (int i = 0; i < 3; i++)
		keep[nkeep++] = opendir("/");
}
__attribute__((noinline)) void leak_temp(void)
{
	char name[] = "/tmp/lg-stdio-XXXXXX";
	int fd = mkstemp(name);
	unlink(name);
	keep[nkeep++] = (void *)(long)fd;
	keep[nkeep++] = tmpfile();
}
__attribute__((noinline)) void leak_fortified(void)
{
	for (int i = 0; i < 4; i++)
		keep[nkeep++] = (void *)(long)open("/etc/hostname", rdonly);
}
__attribute__((noinline)) void churn(void)
{
	for (int i = 0; i < 100; i++) {
		FILE *f = fopen("/etc/hostname", "r");
		if (f) fclose(f);
		DIR *d = opendir("/");
		if (d) closedir(d);
		f = tmpfile();
		if (f) fclose(f);
	}
	for (int i = 0; i < 3; i++) {
		FILE *p = popen("exit 0", "r");
		if (p) pclose(p);
	}
	FILE *f = freopen("/etc/hostname", "r", stdin);   /* fd 0 stays fd 0 */
	if (!f) exit(3);
	/* A stream without a descriptor: fclose leaves errno alone, as glibc does. */
	char buf[16];
	f = fmemopen(buf, sizeof(buf), "w");
	errno = 0;
	if (!f || fclose(f) != 0 || errno != 0) exit(4);
}
int main(void)
{
	printf("%d\n", getpid());
	fflush(stdout);
	churn();
	leak_fopen();
	leak_opendir();
	leak_temp();
	leak_fortified();
	for (int i = 0; i < nkeep; i++)
		if (!keep[i] || keep[i] == (void *)-1L)
			return 2;
	return 0;
}
C
nm "$T/stdio_leak" | grep -q "U __open_2" || skip "the compiler did not fortify open into __open_2"
guarded ./stdio_leak >out 2>err; rc=$?
[ $rc -eq 0 ] || { cat err; fail "stdio_leak exited with $rc (4: fclose of an fmemopen stream changed errno)"; }
pid=$(head -1 out)
r=$(reports_for "$pid") || fail "no report for $pid"
json_ok $r
python3 - "$r" <<'PY' || fail "the fd report does not name the libc-opened descriptors' sites"
import json, sys
d = json.load(open(sys.argv[1]))
fns = {s["id"]: [f["fn"] for f in s["frames"]] for s in d["stacks"]}
got = {}
for site in d["fd"]["by_site"]:
    top = next((f for f in fns[site["stack"]] if f), None)
    got[top] = got.get(top, 0) + site["count"]
print("sites:", got)
want = {"leak_fopen": 5, "leak_opendir": 3, "leak_temp": 2, "leak_fortified": 4,
        "churn": 1}   # stdin, reopened on a file by churn, is open at exit
assert got == want, "want %s" % want
PY
echo "ok: fopen, opendir, mkstemp, tmpfile and __open_2 leaks named; fclose, closedir, pclose and freopen kept the table exact"
