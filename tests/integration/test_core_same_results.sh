#!/bin/bash
# Calls whose results the library must leave exactly as they are, checked by running each
# program plainly and under the library with the same arguments and comparing every return
# value and errno:
#   - the program takes over the guard's own descriptor numbers with dup2 (libunwind's pipe, the
#     clock's timerfd, the guardian's eventfd): its data goes where it sent it, close gives EOF,
#     and nothing hangs when stacks are captured afterwards;
#   - the memalign family and realloc set errno as glibc does (jemalloc leaves it alone for
#     impossible sizes), and aligned_alloc accepts what this glibc accepts;
#   - under a small RLIMIT_NOFILE the program's next fd is the lowest free one, and, with every
#     fd taken, dup2 beyond the limit fails with EBADF (not fd.max's EMFILE).
. "$(dirname "$0")/lib.sh"
need python3

build_c takeover <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* takeover N...: for each fd number N, a pipe's write end is dup2'ed onto N; a byte written
 * through N must come out of the pipe, then EOF once N is closed. Threads that open files and
 * allocate run meanwhile (stack captures, the guardian's wake-ups). */
static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200; i++) {
		close(open("/dev/null", O_RDONLY));
		free(malloc(100 + i));
	}
	return NULL;
}
int main(int argc, char **argv)
{
	alarm(10);
	if (argc > 1 && strcmp(argv[1], "list") == 0) {
		/* The descriptors open once a thread has run (the guardian's start with it). */
		pthread_t t;
		pthread_create(&t, NULL, churn, NULL);
		pthread_join(t, NULL);
		usleep(100000);
		for (int fd = 3; fd < 65536; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				printf("%d\n", fd);
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		int n = atoi(argv[i]), p[2];
		if (pipe(p) != 0)
			return 2;
		int rc = dup2(p[1], n);
		printf("dup2 onto %d: %s\n", n, rc == n ? "ok" : strerror(errno));
		close(p[1]);
		pthread_t t;
		pthread_create(&t, NULL, churn, NULL);
		pthread_join(t, NULL);
		usleep(100000);   /* the guardian, if any, runs */
		printf("write %zd\n", write(n, "x", 1));
		printf("close %d\n", close(n));
		char buf[16];
		ssize_t got, total = 0;
		while ((got = read(p[0], buf, sizeof(buf))) > 0)
			total += got;
		printf("read %zd then %s\n", total, got == 0 ? "EOF" : strerror(errno));
		close(p[0]);
	}
	return 0;
}
C
build_c allocs <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#define SHOW(expr) do { errno = 0; void *r_ = (expr); printf("%-32s %s errno %d\n", #expr, r_ ? "ptr" : "NULL", errno); } while (0)
int main(void)
{
	volatile size_t huge = SIZE_MAX, odd = 3;
	void *p = malloc(10);
	SHOW(realloc(p, huge));
	SHOW(reallocarray(p, huge, 1));
	SHOW(memalign(64, huge));
	SHOW(memalign(((size_t)1 << 63) + 1, 10));
	SHOW(valloc(huge));
	SHOW(aligned_alloc(odd, 10));
	free(p);
	return 0;
}
C
build_c rlim <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
int main(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 2;
	printf("open: %d\n", open("/dev/null", O_RDONLY));
	/* Full (how many it took is not compared: fd.max keeps a reserve fd within the limit). */
	while (open("/dev/null", O_RDONLY) >= 0)
		;
	printf("full: %s\n", strerror(errno));
	int rc = dup2(0, 70);
	printf("dup2 beyond the limit: %d %s\n", rc, rc < 0 ? strerror(errno) : "");
	return 0;
}
C

# The guard's descriptor numbers: what a guarded process has open that a plain one has not.
./takeover list > plain_fds || fail "listing fds failed"
env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./takeover list > guarded_fds || fail "listing fds failed"
own=$(comm -13 <(sort plain_fds) <(sort guarded_fds) | sort -n | tr '\n' ' ')
[ "$(echo $own | wc -w)" -ge 4 ] || fail "found only '$own' as the guard's descriptors (want libunwind's pipe, the clock's timerfd, the guardian's eventfd)"

cat > sampled.json <<'J'
{ "version": 1, "mode": "enforce", "heap": { "sample_bytes": 1 }, "fd": { "stacks": true },
  "report": { "interval_s": 1 } }
J
same() {   # same NAME PROGRAM ARGS...: identical output plain and under both policies
  local name=$1; shift
  timeout 20 "$@" > "$name.plain" 2>&1 || fail "$name: plain run failed: $(tail -n 3 "$name.plain")"
  for pol in default sampled; do
    local envp=()
    [ $pol = sampled ] && envp=(GUARD_POLICY=$T/sampled.json)
    timeout 20 env "${envp[@]}" LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports "$@" \
      > "$name.$pol" 2> "$name.$pol.err" ||
      fail "$name ($pol policy): exit $? (hang or crash?): $(tail -n 3 "$name.$pol" "$name.$pol.err")"
    diff "$name.plain" "$name.$pol" > "$name.diff" ||
      fail "$name ($pol policy) differs from the plain run: $(cat "$name.diff")"
  done
}
same takeover ./takeover $own
grep -c "read 1 then EOF" takeover.plain | grep -qx "$(echo $own | wc -w)" ||
  fail "the takeover program itself misbehaves: $(cat takeover.plain)"
same allocs ./allocs
same rlim ./rlim
echo "ok: the guard's fds $own taken over, allocation errors and small fd limits give the plain results"
