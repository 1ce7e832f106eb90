#!/bin/bash
# A vfork child runs on its parent's memory until it execs: the dup2 and close calls it makes
# (as Python's subprocess does) are not the parent's and must not change the parent's fd table.
# The parent's report names its own fds at their sites, none untracked, and no pipe made by the
# child; and the parent is tracked again after vfork returns (two files opened then are named).
# Also (guard_stats' open fd count): a fork right after vfork makes a tracked child, and a vfork
# child whose exec fails and that calls exit() (not _exit) leaves the parent tracked.
. "$(dirname "$0")/lib.sh"
need python3

build_c vf <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static int keep[6];
__attribute__((noinline)) void keep_files(void)
{
	for (int i = 0; i < 4; i++)
		keep[i] = open("/dev/null", O_RDONLY);
}
__attribute__((noinline)) void after_child(void)
{
	for (int i = 4; i < 6; i++)
		keep[i] = open("/dev/null", O_RDONLY);
}
int main(void)
{
	keep_files();
	for (int round = 0; round < 3; round++) {
		int p[2];
		if (pipe(p) != 0)
			return 2;
		pid_t c = vfork();
		if (c == 0) {
			dup2(p[1], 1);
			for (int i = 0; i < 4; i++)
				close(keep[i]);
			close(p[0]);
			close(p[1]);
			execlp("echo", "echo", "child", (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		char b[64];
		ssize_t n = read(p[0], b, sizeof(b));
		close(p[0]);
		waitpid(c, NULL, 0);
		printf("round %d: read %zd\n", round, n);
	}
	after_child();
	printf("pid %d\n", getpid());
	return 0;
}
C
guarded ./vf > out 2> err || fail "vf failed: $(cat err)"
grep -c "read 6" out | grep -qx 3 || fail "the children's output did not arrive: $(cat out)"
pid=$(sed -n 's/^pid //p' out)
r=$(reports_for "$pid") || fail "no report for the parent ($pid)"
python3 - "$r" <<'PY' || fail "the parent's fd report is wrong after vfork"
import json, sys
d = json.load(open(sys.argv[1]))
fns = {s["id"]: [f["fn"] for f in s["frames"]] for s in d["stacks"]}
sites = {}   # by function (a loop the compiler unrolled has a call site per iteration)
for s in d["fd"]["by_site"]:
    fn = next(f for f in fns[s["stack"]] if f)
    for kind, n in s["kinds"].items():
        sites[(fn, kind)] = sites.get((fn, kind), 0) + n
print("sites", sites, "untracked", d["fd"]["untracked"])
assert sites == {("keep_files", "file"): 4, ("after_child", "file"): 2}, sites
assert d["fd"]["untracked"] == 0, d["fd"]["untracked"]
PY
build_c vf2 -ldl <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
struct guard_stats { uint64_t heap_live_bytes, fds_open, threads_live, violations; };
static long fds(void)
{
	void (*gs)(struct guard_stats *) = (void (*)(struct guard_stats *))dlsym(RTLD_DEFAULT, "guard_stats");
	struct guard_stats s;
	if (!gs)
		return -1;
	gs(&s);
	return (long)s.fds_open;
}
int main(void)
{
	long base = fds();
	pid_t c = vfork();
	if (c == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	waitpid(c, NULL, 0);   /* not hooked: nothing of ours runs before the fork */
	pid_t f = fork();
	if (f == 0) {
		open("/dev/null", O_RDONLY);
		printf("fork child %s\n", fds() == base + 1 ? "tracked" : "NOT tracked");
		fflush(stdout);
		_exit(0);
	}
	waitpid(f, NULL, 0);
	c = vfork();
	if (c == 0) {
		execl("/nonexistent", "x", (char *)NULL);
		exit(127);   /* wrong in a vfork child, and common: runs the exit handlers */
	}
	waitpid(c, NULL, 0);
	open("/dev/null", O_RDONLY);
	printf("parent %s\n", fds() == base + 1 ? "tracked" : "NOT tracked");
	return 0;
}
C
guarded ./vf2 > out2 2> err2 || fail "vf2 failed: $(cat err2)"
grep -qx "fork child tracked" out2 || fail "a fork right after vfork made an unguarded child: $(cat out2)"
grep -qx "parent tracked" out2 || fail "exit() in a vfork child turned the parent's guard off: $(cat out2)"
echo "ok: vfork children's dup2/close left the parent's table alone; the parent is tracked after, and so is a fork child"
