# The issue's program: it times itself with gettimeofday every 10 ms while the policy injects a
# -2 s realtime step at 1 s. With realtime "pass" it sees the step and the report has one jump of
# about -2000 ms with the reading function named; with "clamp" it never sees time go backwards.
. "$(dirname "$0")/lib.sh"
need python3 cc

build_c tick <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static __attribute__((noinline)) long long read_wall_clock(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return tv.tv_sec * 1000000LL + tv.tv_usec;
}
int main(int argc, char **argv)
{
	int ms = atoi(argv[1]);
	long long prev = read_wall_clock(), min_step = 1LL << 62, backwards = 0;
	struct timespec d = { 0, 10 * 1000000 };
	for (int i = 0; i < ms / 10; i++) {
		nanosleep(&d, NULL);
		long long now = read_wall_clock();
		if (now - prev < min_step)
			min_step = now - prev;
		backwards += now < prev;
		prev = now;
	}
	printf("min_step_ms=%lld backwards=%lld\n", min_step / 1000, backwards);
	return 0;
}
C

policy() {
  cat > "$T/$1.json" <<P
{ "version": 1, "report": { "name": "$1-%p" }, "heap": { "enabled": false },
  "clock": { "jump_ms": 100, "realtime": "$1",
             "inject": [ { "at_ms": 1000, "clock": "realtime", "step_ms": -2000 } ] } }
P
}

# Without the library the program never sees a step: the check below can tell.
out=$(timeout 20 "$T/tick" 300) || fail "tick failed plainly"
case "$out" in *backwards=0*) ;; *) fail "plain run saw time go backwards: $out" ;; esac

# pass: the step is visible to the program, reported once, with the reader's stack.
policy pass
out=$(GUARD_POLICY=$T/pass.json timeout 20 env LD_PRELOAD="$LG_SO" GUARD_REPORT_DIR="$T/reports" "$T/tick" 2000) \
  || fail "tick failed under libguard (pass)"
echo "pass: $out"
case "$out" in *backwards=1*) ;; *) fail "pass: the program did not see the injected step: $out" ;; esac
min=$(echo "$out" | sed -n 's/.*min_step_ms=\(-\{0,1\}[0-9]*\).*/\1/p')
[ "$min" -le -1900 ] && [ "$min" -ge -2000 ] || fail "pass: step seen by the program was ${min} ms, not about -2000"
r=$(ls "$T"/reports/pass-*.json) || fail "pass: no report"
json_ok "$r"
python3 - "$r" <<'PY' || fail "pass: report is wrong"
import json, sys
d = json.load(open(sys.argv[1])); c = d["clock"]
stacks = {s["id"]: [f["fn"] for f in s["frames"]] for s in d["stacks"]}
print(json.dumps(c))
assert len(c["jumps"]) == 1, c["jumps"]
j = c["jumps"][0]
assert j["clock"] == "realtime" and -2100 <= j["delta_ms"] <= -1900, j
# The jump's time is the wall clock the program saw just after the step.
assert abs(j["unix_ms"] - (d["guard"]["started_unix_ms"] + 1000 - 2000)) < 500, j
assert stacks[j["stack"]][0] == "read_wall_clock", stacks[j["stack"]]
readers = [stacks[r["stack"]][0] for r in c["realtime_readers"]]
assert "read_wall_clock" in readers, readers
calls = [r["calls"] for r in c["realtime_readers"]]
assert calls == sorted(calls, reverse=True) and sum(calls) >= 1, calls
assert c["clamped_ms"] == 0 and c["monotonic_regressions"] == 0, c
PY

# clamp: the program's clock stands still instead of going back; clamped_ms says for how long.
policy clamp
out=$(GUARD_POLICY=$T/clamp.json timeout 20 env LD_PRELOAD="$LG_SO" GUARD_REPORT_DIR="$T/reports" "$T/tick" 2500) \
  || fail "tick failed under libguard (clamp)"
echo "clamp: $out"
case "$out" in *"min_step_ms=0 backwards=0"*) ;; *) fail "clamp: the program saw time go backwards: $out" ;; esac
r=$(ls "$T"/reports/clamp-*.json) || fail "clamp: no report"
json_ok "$r"
python3 - "$r" <<'PY' || fail "clamp: report is wrong"
import json, sys
c = json.load(open(sys.argv[1]))["clock"]
print(json.dumps(c))
assert len(c["jumps"]) == 1 and -2100 <= c["jumps"][0]["delta_ms"] <= -1900, c["jumps"]
# Held from the step at 1 s to the end at 2.5 s (real time had 2 s to catch up).
assert 1300 <= c["clamped_ms"] <= 1700, c["clamped_ms"]
PY
echo "ok"
