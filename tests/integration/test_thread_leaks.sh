# Thread leaks and threads.max: 20 joinable threads never joined at one function and 5 joined at
# another; the report names the first with 20 and not the second. Detached threads, threads that
# end with pthread_exit or are cancelled, and tryjoin/timedjoin are followed too. threads.max:
# enforce mode fails pthread_create with EAGAIN, observe mode records a violation.
. "$(dirname "$0")/lib.sh"
need python3

build_c leaks <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *quick(void *arg) { return arg; }
static void *exits(void *arg) { pthread_exit(arg); }
static void *forever(void *arg) { (void)arg; for (;;) pause(); }

__attribute__((noinline)) void leak_twenty(void)
{
	for (int i = 0; i < 20; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, quick, NULL) != 0)
			abort();
	}
}

__attribute__((noinline)) void join_five(void)
{
	pthread_t t[5];
	for (int i = 0; i < 5; i++)
		pthread_create(&t[i], NULL, i % 2 ? exits : quick, NULL);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	while (pthread_tryjoin_np(t[2], NULL) == EBUSY)
		usleep(1000);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_timedjoin_np(t[3], NULL, &ts);
	pthread_detach(t[4]);
}

__attribute__((noinline)) void detached_ones(void)
{
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < 3; i++) {
		pthread_t t;
		pthread_create(&t, &a, quick, NULL);
	}
	pthread_attr_destroy(&a);
}

__attribute__((noinline)) void cancelled_one(void)
{
	pthread_t t;
	pthread_create(&t, NULL, forever, NULL);
	pthread_cancel(t);
	pthread_join(t, NULL);
}

__attribute__((noinline)) void still_running(void)
{
	pthread_t t;
	pthread_create(&t, NULL, forever, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "max") == 0) {
		/* threads.max is 3: the 4th live thread is refused in enforce mode. */
		pthread_t t[4];
		int rc[4];
		for (int i = 0; i < 4; i++)
			rc[i] = pthread_create(&t[i], NULL, forever, NULL);
		printf("%d %d %d %d\n", rc[0], rc[1], rc[2], rc[3] == EAGAIN ? -1 : rc[3]);
		return 0;
	}
	leak_twenty();
	join_five();
	detached_ones();
	cancelled_one();
	still_running();
	usleep(200000);   /* the leaked and detached threads have ended */
	puts("done");
	return 0;
}
C

out=$(timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports "$T/leaks") || fail "leaks failed"
[ "$out" = done ] || fail "unexpected output: $out"
f=$(ls "$T"/reports/*.json | head -1)
json_ok "$f"
python3 - "$f" <<'PY' || fail "thread report does not match the program"
import json, sys
d = json.load(open(sys.argv[1]))
stacks = {s["id"]: [fr["fn"] for fr in s["frames"]] for s in d["stacks"]}
th = d["threads"]
print("threads", th)
for u in th["unjoined"]:
    print(u, stacks[u["stack"]][:3])
by_fn = {}
for u in th["unjoined"]:
    by_fn[stacks[u["stack"]][0]] = by_fn.get(stacks[u["stack"]][0], 0) + u["count"]
assert by_fn.get("leak_twenty") == 20, by_fn
assert "join_five" not in by_fn, by_fn
assert "detached_ones" not in by_fn and "cancelled_one" not in by_fn, by_fn
# A joinable thread still running at exit will never be joined either.
assert by_fn.get("still_running") == 1, by_fn
assert th["unjoined"][0]["count"] == 20
# 20 + 5 + 3 + 1 + 1 created; only still_running is alive at exit.
assert th["live"] == 1, th
assert 1 <= th["peak"] <= 30, th
PY
echo "ok: leaks"

# threads.max: enforce refuses the 4th with EAGAIN; observe lets it through and records it.
for mode in enforce observe; do
  rm -f "$T"/reports/*
  printf '{ "version": 1, "mode": "%s", "threads": { "enabled": true, "max": 3 } }\n' "$mode" > "$T/max.json"
  out=$(timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports GUARD_POLICY=$T/max.json "$T/leaks" max) \
    || fail "max ($mode) failed"
  f=$(ls "$T"/reports/*.json | head -1)
  v=$(jget "$f" 'sum(x["count"] for x in d["violations"] if x["kind"] == "threads.max")')
  [ "$v" = 1 ] || fail "$mode: $v threads.max violations, want 1"
  if [ $mode = enforce ]; then
    [ "$out" = "0 0 0 -1" ] || fail "enforce: pthread_create results $out, want the 4th to be EAGAIN"
    [ "$(jget "$f" 'd["threads"]["peak"]')" = 3 ] || fail "enforce: peak is not 3"
  else
    [ "$out" = "0 0 0 0" ] || fail "observe: pthread_create results $out, want all 0"
    [ "$(jget "$f" 'd["threads"]["peak"]')" = 4 ] || fail "observe: peak is not 4"
  fi
  echo "ok: max $mode"
done

# Without the library the same program prints the same.
[ "$("$T/leaks")" = done ] || fail "plain run differs"
