# Mutex kinds keep their exact semantics under the library: error-checking (EDEADLK, EPERM),
# recursive, robust (EOWNERDEAD, ENOTRECOVERABLE), priority inheritance and protection, timed
# and clock locks timing out or given a bad clock or deadline, rwlocks relocked by their
# writer, rwlock clock variants (whose waits are in the report). The program prints every return code; the output must be identical with and without
# libguard, and the expected codes are checked too (so that both cannot be wrong together).
. "$(dirname "$0")/lib.sh"
need python3

build_c kinds <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

static void show(const char *what, int rc) { printf("%s %s\n", what, rc ? strerrorname_np(rc) : "0"); }

static void make(int type, int robust, int protocol)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, type);
	if (robust)
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (protocol)
		pthread_mutexattr_setprotocol(&a, protocol);
	pthread_mutex_init(&m, &a);
	pthread_mutexattr_destroy(&a);
}

static void *lock_and_die(void *arg) { (void)arg; pthread_mutex_lock(&m); return NULL; }
static void *hold_100ms(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	usleep(100000);
	pthread_mutex_unlock(&m);
	return NULL;
}

static struct timespec in_ms(clockid_t c, long ms)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	ts.tv_nsec += ms * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	return ts;
}

/* A writer that waits on a rwlock with glibc 2.30's clock variant, named in the report. */
static __attribute__((noinline)) int clock_writer(pthread_rwlock_t *l, clockid_t c, long ms)
{
	struct timespec ts = in_ms(c, ms);
	int rc = pthread_rwlock_clockwrlock(l, c, &ts);
	__asm__ volatile("");
	return rc;
}

int main(void)
{
	pthread_t t;
	struct timespec ts;

	make(PTHREAD_MUTEX_ERRORCHECK, 0, 0);
	show("errorcheck lock", pthread_mutex_lock(&m));
	show("errorcheck relock", pthread_mutex_lock(&m));
	ts = in_ms(CLOCK_REALTIME, 10);
	show("errorcheck timedlock by owner", pthread_mutex_timedlock(&m, &ts));
	show("errorcheck unlock", pthread_mutex_unlock(&m));
	show("errorcheck unlock again", pthread_mutex_unlock(&m));

	make(PTHREAD_MUTEX_RECURSIVE, 0, 0);
	show("recursive lock", pthread_mutex_lock(&m));
	show("recursive relock", pthread_mutex_lock(&m));
	show("recursive unlock", pthread_mutex_unlock(&m));
	show("recursive unlock", pthread_mutex_unlock(&m));
	show("recursive unlock again", pthread_mutex_unlock(&m));

	make(PTHREAD_MUTEX_NORMAL, 1, 0);
	pthread_create(&t, NULL, lock_and_die, NULL);
	pthread_join(t, NULL);
	show("robust lock after owner died", pthread_mutex_lock(&m));
	show("robust unlock without consistent", pthread_mutex_unlock(&m));
	show("robust lock unrecoverable", pthread_mutex_lock(&m));
	ts = in_ms(CLOCK_REALTIME, 10);
	show("robust timedlock unrecoverable", pthread_mutex_timedlock(&m, &ts));

	make(PTHREAD_MUTEX_ERRORCHECK, 1, 0);
	pthread_create(&t, NULL, lock_and_die, NULL);
	pthread_join(t, NULL);
	show("robust errorcheck lock after owner died", pthread_mutex_lock(&m));
	show("robust consistent", pthread_mutex_consistent(&m));
	show("robust relock", pthread_mutex_lock(&m));
	show("robust unlock", pthread_mutex_unlock(&m));

	make(PTHREAD_MUTEX_NORMAL, 1, PTHREAD_PRIO_INHERIT);
	pthread_create(&t, NULL, lock_and_die, NULL);
	pthread_join(t, NULL);
	show("robust pi lock after owner died", pthread_mutex_lock(&m));
	show("robust pi consistent", pthread_mutex_consistent(&m));
	show("robust pi unlock", pthread_mutex_unlock(&m));

	make(PTHREAD_MUTEX_ERRORCHECK, 0, PTHREAD_PRIO_INHERIT);
	show("pi lock", pthread_mutex_lock(&m));
	show("pi relock", pthread_mutex_lock(&m));
	show("pi unlock", pthread_mutex_unlock(&m));
	pthread_create(&t, NULL, hold_100ms, NULL);
	usleep(20000);
	show("pi contended lock", pthread_mutex_lock(&m));
	show("pi unlock", pthread_mutex_unlock(&m));
	pthread_join(t, NULL);

	make(PTHREAD_MUTEX_NORMAL, 0, PTHREAD_PRIO_PROTECT);
	show("protect lock", pthread_mutex_lock(&m));
	show("protect unlock", pthread_mutex_unlock(&m));

	make(PTHREAD_MUTEX_NORMAL, 0, 0);
	pthread_create(&t, NULL, hold_100ms, NULL);
	usleep(20000);
	ts = in_ms(CLOCK_REALTIME, 10);
	show("timedlock times out", pthread_mutex_timedlock(&m, &ts));
	ts = in_ms(CLOCK_MONOTONIC, 10);
	show("clocklock times out", pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &ts));
	show("clocklock bad clock", pthread_mutex_clocklock(&m, CLOCK_PROCESS_CPUTIME_ID, &ts));
	ts.tv_nsec = 2000000000;
	show("timedlock bad deadline, held", pthread_mutex_timedlock(&m, &ts));
	ts = in_ms(CLOCK_REALTIME, 1000);
	show("timedlock waits", pthread_mutex_timedlock(&m, &ts));
	show("unlock", pthread_mutex_unlock(&m));
	pthread_join(t, NULL);
	ts.tv_nsec = 2000000000;
	show("timedlock bad deadline, free", pthread_mutex_timedlock(&m, &ts));
	show("unlock", pthread_mutex_unlock(&m));
	ts = in_ms(CLOCK_MONOTONIC, 10);
	show("clocklock bad clock, free", pthread_mutex_clocklock(&m, CLOCK_PROCESS_CPUTIME_ID, &ts));

	show("rwlock wrlock", pthread_rwlock_wrlock(&rw));
	show("rwlock rdlock by writer", pthread_rwlock_rdlock(&rw));
	show("rwlock wrlock by writer", pthread_rwlock_wrlock(&rw));
	ts = in_ms(CLOCK_REALTIME, 10);
	show("rwlock timedwrlock by writer", pthread_rwlock_timedwrlock(&rw, &ts));
	show("rwlock unlock", pthread_rwlock_unlock(&rw));
	show("rwlock rdlock", pthread_rwlock_rdlock(&rw));
	show("rwlock rdlock again", pthread_rwlock_rdlock(&rw));
	ts = in_ms(CLOCK_REALTIME, 10);
	show("rwlock timedwrlock times out", pthread_rwlock_timedwrlock(&rw, &ts));
	show("rwlock timedrdlock", pthread_rwlock_timedrdlock(&rw, &ts));
	show("rwlock clockwrlock times out", clock_writer(&rw, CLOCK_MONOTONIC, 10));
	show("rwlock clockwrlock bad clock", clock_writer(&rw, CLOCK_PROCESS_CPUTIME_ID, 10));
	ts = in_ms(CLOCK_MONOTONIC, 10);
	show("rwlock clockrdlock", pthread_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &ts));
	return 0;
}
C

timeout 20 "$T/kinds" > "$T/plain.out" 2>&1 || fail "plain run failed: $(tail -3 "$T/plain.out")"
timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports "$T/kinds" > "$T/guarded.out" 2>&1 \
  || fail "guarded run failed: $(tail -3 "$T/guarded.out")"
diff "$T/plain.out" "$T/guarded.out" || fail "return codes differ under libguard"

# The expected codes, so that a change in both runs is seen too.
expect() { grep -qx "$1 $2" "$T/guarded.out" || fail "'$1' is not $2: $(grep "^$1 " "$T/guarded.out")"; }
expect "errorcheck relock" EDEADLK
expect "errorcheck timedlock by owner" EDEADLK
expect "errorcheck unlock again" EPERM
expect "recursive relock" 0
expect "recursive unlock again" EPERM
expect "robust lock after owner died" EOWNERDEAD
expect "robust lock unrecoverable" ENOTRECOVERABLE
expect "robust timedlock unrecoverable" ENOTRECOVERABLE
expect "robust pi lock after owner died" EOWNERDEAD
expect "pi relock" EDEADLK
expect "pi contended lock" 0
expect "timedlock times out" ETIMEDOUT
expect "clocklock times out" ETIMEDOUT
expect "clocklock bad clock" EINVAL
expect "timedlock bad deadline, held" EINVAL
expect "timedlock waits" 0
expect "clocklock bad clock, free" EINVAL
expect "rwlock rdlock by writer" EDEADLK
expect "rwlock wrlock by writer" EDEADLK
expect "rwlock timedwrlock times out" ETIMEDOUT
expect "rwlock clockwrlock times out" ETIMEDOUT
expect "rwlock clockwrlock bad clock" EINVAL
expect "rwlock clockrdlock" 0

# The waits that did happen are in the report; the EDEADLK ones are not contention.
f=$(ls "$T"/reports/*.json | head -1)
json_ok "$f"
n=$(jget "$f" 'sum(c["count"] for c in d["locks"]["contended"])')
[ "$n" -ge 5 ] && [ "$n" -le 9 ] || fail "$n contended acquisitions recorded, want the 5 to 9 real waits"
python3 - "$f" <<'PY' || fail "the rwlock clockwrlock wait is not in the report"
import json, sys
d = json.load(open(sys.argv[1]))
stacks = {s["id"]: [fr["fn"] for fr in s["frames"]] for s in d["stacks"]}
# The site starts at the function that called pthread_rwlock_clockwrlock.
assert any(stacks[c["stack"]][0] == "clock_writer" for c in d["locks"]["contended"]), \
    [stacks[c["stack"]][:3] for c in d["locks"]["contended"]]
PY
echo "ok: $(wc -l < "$T/plain.out") return codes identical"
