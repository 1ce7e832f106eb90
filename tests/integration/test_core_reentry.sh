# Hooks re-entered from inside the guard pass straight through: a signal handler that allocates,
# reads clocks and takes a lock fires every 50 us while the main thread allocates with every
# allocation sampled (so signals often land inside the guard's stack capture and bookkeeping).
. "$(dirname "$0")/lib.sh"
build_c reenter <<'C'
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static volatile sig_atomic_t fired;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static void handler(int sig)
{
	(void)sig;
	struct timespec ts;
	/* Not async-signal-safe by POSIX, but common in real programs; glibc and jemalloc survive it
	 * unless the signal lands inside them, so only touch what a guard hook would. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (pthread_mutex_trylock(&m) == 0)
		pthread_mutex_unlock(&m);
	fired++;
}
int main(void)
{
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	struct itimerval it = { { 0, 50 }, { 0, 50 } };
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	unsigned long sum = 0;
	for (int i = 0; i < 200000; i++) {
		char *p = malloc((size_t)(i % 512) + 1);
		p[0] = (char)i;
		sum += (unsigned char)p[0];
		pthread_mutex_lock(&m);
		pthread_mutex_unlock(&m);
		free(p);
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	printf("done %lu signals>0:%d\n", sum, fired > 0);
	return 0;
}
C
cat > every.json <<'J'
{ "heap": { "sample_bytes": 1 }, "locks": { "sample": 1 } }
J
plain=$(./reenter) || fail "plain run failed"
GUARD_POLICY=$T/every.json guarded ./reenter >out 2>err || fail "guarded run failed: $(cat err)"
[ "$(cat out)" = "$plain" ] || fail "output differs: $(cat out) vs $plain"
grep -q "signals>0:1" out || fail "no signal fired: the test tested nothing"
json_ok reports/*.json
echo "ok: $(cat out)"
