# clock_gettime from a signal handler at a high rate (setitimer every 100 us) while other threads
# read every clock: no deadlock, bounded time, and the handler's readings stay sane. Run with the
# default policy and with clamp + an injected step, so the slow paths (jump recording, stack
# capture, the clamp mark) run inside handlers too. Also: clock reads from a library constructor
# that runs before libguard is initialised (raw-syscall path).
. "$(dirname "$0")/lib.sh"
need python3 cc

build_c sigclock <<'C'
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
static atomic_long handled, bad;
static atomic_int stop;
static void on_alarm(int sig)
{
	struct timespec a, b;
	struct timeval tv;
	(void)sig;
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_REALTIME, &b);
	gettimeofday(&tv, NULL);
	if (a.tv_sec <= 0 || b.tv_sec < 1000000000 || time(NULL) < 1000000000)
		bad++;
	handled++;
}
static void *reader(void *arg)
{
	struct timespec ts, prev = { 0, 0 };
	struct timeval tv;
	long n = 0;
	(void)arg;
	while (!stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_sec < prev.tv_sec || (ts.tv_sec == prev.tv_sec && ts.tv_nsec < prev.tv_nsec))
			bad++;
		prev = ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		clock_gettime(CLOCK_REALTIME_COARSE, &ts);
		gettimeofday(&tv, NULL);
		timespec_get(&ts, TIME_UTC);
		n += time(NULL) > 0;
	}
	return (void *)n;
}
int main(void)
{
	struct sigaction sa;
	pthread_t th[3];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, reader, NULL);
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {   /* the main thread reads too, and takes most of the signals */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 2);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	stop = 1;
	long reads = 0;
	for (int i = 0; i < 3; i++) {
		void *n;
		pthread_join(th[i], &n);
		reads += (long)n;
	}
	printf("handled=%ld bad=%ld reads=%ld\n", (long)handled, (long)bad, reads);
	return bad != 0;
}
C

cat > "$T/clamp.json" <<'P'
{ "version": 1, "report": { "name": "clamp-%p" },
  "clock": { "jump_ms": 100, "realtime": "clamp",
             "inject": [ { "at_ms": 500, "clock": "realtime", "step_ms": -2000 },
                         { "at_ms": 1200, "clock": "realtime", "step_ms": 1500 } ] } }
P

for run in default clamp; do
  pol=""; [ $run = clamp ] && pol=$T/clamp.json
  start=$(date +%s%N)
  out=$(GUARD_POLICY=$pol timeout -k 2 20 env LD_PRELOAD="$LG_SO" GUARD_REPORT_DIR="$T/reports" "$T/sigclock"); rc=$?
  secs=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$run: $out (${secs} ms, exit $rc)"
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$run: hung (deadlock?)"
  [ $rc -eq 0 ] || fail "$run: exit $rc: $out"
  [ $secs -lt 10000 ] || fail "$run: took ${secs} ms for a 2 s program"
  handled=$(echo "$out" | sed -n 's/.*handled=\([0-9]*\).*/\1/p')
  [ "${handled:-0}" -ge 1000 ] || fail "$run: only ${handled:-0} signals handled"
done
r=$(ls "$T"/reports/clamp-*.json) || fail "no clamp report"
json_ok "$r"
jget "$r" 'd["clock"]'
[ "$(jget "$r" 'len(d["clock"]["jumps"])')" = 2 ] || fail "clamp: expected the 2 injected jumps"
[ "$(jget "$r" 'd["clock"]["clamped_ms"] > 0')" = True ] || fail "clamp: clamped_ms is 0"

# Before init: a library constructor that reads every clock, preloaded before and after us.
cat > "$T/early.c" <<'C'
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
__attribute__((constructor)) static void early(void)
{
	struct timespec a, b, c;
	struct timeval tv;
	int ok = clock_gettime(CLOCK_REALTIME, &a) == 0 && clock_gettime(CLOCK_MONOTONIC, &b) == 0 &&
		 gettimeofday(&tv, NULL) == 0 && timespec_get(&c, TIME_UTC) == TIME_UTC &&
		 /* time() reads the coarse clock: it can trail by a tick across a second */
		 time(NULL) >= a.tv_sec - 1 && a.tv_sec > 1000000000 && tv.tv_sec >= a.tv_sec;
	fprintf(stderr, "early: %s\n", ok ? "ok" : "BAD");
}
C
cc -shared -fPIC -o "$T/early.so" "$T/early.c" || fail "cannot build early.so"
for order in "$T/early.so:$LG_SO" "$LG_SO:$T/early.so"; do
  err=$(timeout 10 env LD_PRELOAD="$order" GUARD_REPORT_DIR="$T/reports" /bin/true 2>&1) || fail "preload $order failed"
  [ "$err" = "early: ok" ] || fail "preload $order: $err"
done
echo ok
