#!/bin/bash
# The guardian thread starts late in a single-threaded program (guardian.c): glibc skips its lock
# atomics until a process makes its first thread, and a thread of ours would cost the program
# that for good. Checked here: no thread of ours while the program stays single-threaded; a
# report signal while it sleeps is still served (and starts the thread); periodic work (the fd
# warning) still runs, in the program's own calls; a program that makes a thread gets the
# guardian at once; a policy with interval reports has it from the start; a forked child of a
# threaded parent starts without one.
. "$(dirname "$0")/lib.sh"

build_c app <<'C'
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; for (;;) pause(); return NULL; }
/* Threads of this process, as the kernel counts them. */
static int nthreads(void)
{
	char line[256]; int n = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "Threads:", 8) == 0) n = atoi(line + 8);
	if (f) fclose(f);
	return n;
}
int main(int argc, char **argv)
{
	const char *mode = argv[1];
	if (strcmp(mode, "single") == 0) {
		printf("start %d\n", nthreads()); fflush(stdout);
		for (int i = 0; i < 60; i++) usleep(100000);   /* a report signal arrives meanwhile */
		printf("end %d\n", nthreads());
	} else if (strcmp(mode, "thread") == 0) {
		pthread_t t;
		pthread_create(&t, NULL, idle, NULL);
		usleep(100000);
		printf("threads %d\n", nthreads());   /* main, idle, and the guardian */
	} else if (strcmp(mode, "fork") == 0) {
		pthread_t t;
		pthread_create(&t, NULL, idle, NULL);
		pid_t pid = fork();
		if (pid == 0) { printf("child %d\n", nthreads()); fflush(stdout); _exit(0); }
		waitpid(pid, NULL, 0);
	} else if (strcmp(mode, "fds") == 0) {
		for (int i = 0; i < 60; i++) open("/dev/null", O_RDONLY);
		printf("fds %d\n", nthreads()); fflush(stdout);
		sleep(1);
	}
	return 0;
}
C

# Single-threaded, default policy: no thread of ours, until a report signal asks for one.
guarded_exec ./app single >out 2>err &
pid=$!
sleep 1
[ "$(awk '/^Threads:/ {print $2}' /proc/$pid/status)" = 1 ] ||
  fail "a single-threaded program has $(awk '/^Threads:/ {print $2}' /proc/$pid/status) threads under the guard"
kill -USR2 $pid
sleep 1
r=$(reports_for $pid) || fail "no report after SIGUSR2 to a sleeping single-threaded program"
json_ok $r
reason=$(jget $r 'd["guard"]["reason"]'); [ "$reason" = signal ] || fail "the report's reason is $reason, not signal"
wait $pid || fail "the program failed: $(cat err)"
grep -q '^start 1$' out || fail "the program saw more than one thread at start: $(cat out)"
grep -q '^end 2$' out || fail "after the signal the guardian should run beside the program: $(cat out)"

# The fd warning (the guardian names the top sites) still comes, from the program's own calls.
echo '{ "version": 1, "fd": { "max": 64 } }' > fds.json
GUARD_POLICY=fds.json guarded ./app fds >out 2>err || fail "fds run failed"
grep -q 'fd.warn_ratio' err || fail "no fd.warn_ratio warning in a single-threaded program: $(cat err)"
grep -q '^fds 1$' out || fail "the warning needed a thread: $(cat out)"

# A program that makes a thread has the guardian beside it.
guarded ./app thread >out || fail "thread run failed"
grep -q '^threads 3$' out || fail "expected main, the program's thread and the guardian: $(cat out)"

# Interval reports need the thread from the start.
echo '{ "version": 1, "report": { "interval_s": 60 } }' > interval.json
GUARD_POLICY=interval.json guarded_exec ./app single >out 2>err &
pid=$!
sleep 0.5
[ "$(awk '/^Threads:/ {print $2}' /proc/$pid/status)" = 2 ] || fail "interval_s: no guardian thread"
kill $pid; wait $pid 2>/dev/null

# A forked child is single-threaded: its guardian waits too.
guarded ./app fork >out || fail "fork run failed"
grep -q '^child 1$' out || fail "the forked child has a guardian thread it does not need: $(cat out)"
echo ok
