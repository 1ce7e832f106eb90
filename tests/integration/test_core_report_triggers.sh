# Reports are written at exit, on the policy's signal (by the guardian, never in the handler),
# every interval_s, and the name template expands %e %p %t.
. "$(dirname "$0")/lib.sh"
build_c waiter <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) { int s = argc > 1 ? atoi(argv[1]) : 3; for (int i = 0; i < s * 10; i++) usleep(100000); puts("end"); return 0; }
C
guarded_exec ./waiter 3 >out 2>err &
pid=$!
sleep 1
kill -USR2 $pid
sleep 0.5
kill -0 $pid || fail "SIGUSR2 killed the program instead of asking for a report"
r=$(reports_for $pid) || fail "no report after SIGUSR2"
[ "$(jget $r 'd["guard"]["reason"]')" = signal ] || fail "reason is not signal"
wait $pid || fail "program failed"
[ "$(jget $r 'd["guard"]["reason"]')" = exit ] || fail "the exit report did not replace the signal one"

cat > interval.json <<'J'
{ "report": { "interval_s": 1, "name": "iv-%e-%p-%t" } }
J
GUARD_POLICY=$T/interval.json guarded_exec ./waiter 3 >/dev/null 2>err &
pid=$!
sleep 1.6
n=$(ls reports/iv-waiter-$pid-*.json 2>/dev/null | wc -l)
[ "$n" -ge 1 ] || fail "no interval report after 1.6 s: $(ls reports)"
r=$(ls reports/iv-waiter-$pid-*.json | head -1)
[ "$(jget $r 'd["guard"]["reason"]')" = interval ] || fail "reason is not interval: $(jget $r 'd["guard"]["reason"]')"
wait $pid
echo "ok: signal, interval and exit reports"
