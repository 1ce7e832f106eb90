#!/bin/bash
# One run of a leaking program with all four formats: the folded heap profile, the SVG flame
# graph, `go tool pprof -top` and guard-report's summary all name the leaking function; the prom
# file parses as text exposition; every profile file is there, written atomically (no temp left).
. "$(dirname "$0")/lib.sh"
need python3
GR=$LG_BUILD/guard-report
[ -x "$GR" ] && [ -f "$LG_SO" ] || fail "build first (make)"

build_c leak -g -fno-omit-frame-pointer <<'EOF'
#include <stdlib.h>
#include <string.h>
static void *keep[256];
__attribute__((noinline)) void *leak_here(size_t n)
{
	void *p = malloc(n);
	memset(p, 1, n);
	return p;
}
__attribute__((noinline)) void serve(void)
{
	for (int i = 0; i < 64; i++)
		keep[i] = leak_here(65536);
	__asm__ volatile("" ::: "memory");
}
int main(void)
{
	serve();
	return keep[0] == NULL;
}
EOF
cat > policy.json <<'EOF'
{ "version": 1, "report": { "formats": ["json", "folded", "pprof", "prom"] }, "heap": { "sample_bytes": 1 } }
EOF
GUARD_POLICY=$T/policy.json timeout 20 env LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./leak \
  || fail "the leaking program failed under the guard"
json=$(ls reports/*.json 2>/dev/null | head -1)
[ -n "$json" ] || fail "no JSON report"
json_ok "$json"
base=${json%.json}
n=$(jget "$json" 'len(d.get("heap", {}).get("live", []))')
[ "$n" -gt 0 ] || skip "the heap guard recorded no live sites (heap sampling not in this build)"

for p in heap fds locks clock threads; do
  [ "$(jget "$json" "'$( [ $p = fds ] && echo fd || echo $p)' in d")" = True ] || continue
  [ -f "$base.$p.folded" ] || fail "no $p.folded for an enabled guard"
  [ -f "$base.$p.pb.gz" ] || fail "no $p.pb.gz for an enabled guard"
done
[ -f "$base.prom" ] || fail "no .prom file"
ls -a reports | grep -q '\.tmp$' && fail "a temp file was left in the report dir"

# Folded: root first, the leaking function is the leaf of the heaviest line.
top=$(sort -t' ' -k2 -n -r "$base.heap.folded" | head -1)
case "$top" in
  *main\;serve\;leak_here\ *) ;;
  *) fail "heaviest folded heap line is not main;serve;leak_here: $top" ;;
esac
bytes=${top##* }
[ "$bytes" -ge $((64 * 65536)) ] || fail "folded heap value $bytes is below the 4 MiB leaked"

# SVG flame graph names the function.
"$GR" --svg flame.svg "$json" > /dev/null || fail "guard-report --svg failed"
grep -q 'data-n="leak_here"' flame.svg || fail "the flame graph does not name leak_here"
if command -v rsvg-convert >/dev/null 2>&1; then
  rsvg-convert -o flame.png flame.svg || fail "the flame graph does not render"
fi

# Summary names the function, with its line.
"$GR" "$json" > summary.txt || fail "guard-report exited $? on a clean report"
grep -q "leak_here" summary.txt || { cat summary.txt; fail "the summary does not name leak_here"; }

# Prometheus text exposition: grammar, HELP/TYPE before samples, and the live heap.
python3 - "$base.prom" <<'EOF' || fail "the prom file is not valid text exposition"
import re, sys
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample = re.compile(r"^(%s)(?:\{(?:%s(?:,%s)*)?\})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|[-+]Inf)$" % (name, label, label))
typed, seen, live = {}, set(), None
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("# HELP "):
        continue
    m = re.match(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % name, line)
    if m:
        assert m.group(1) not in typed, "TYPE twice: " + line
        typed[m.group(1)] = m.group(2)
        continue
    m = sample.match(line)
    assert m, "bad line: " + line
    assert m.group(1) in typed, "sample before its TYPE: " + line
    if m.group(1) == "libguard_heap_sampled_live_bytes":
        live = float(m.group(2))
assert live is not None and live >= 64 * 65536, live
EOF

# pprof: go tool pprof reads the heap profile and names the function.
if command -v go >/dev/null 2>&1; then
  out=$(HOME=$T GOCACHE=$T/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local timeout 60 \
        go tool pprof -top "$base.heap.pb.gz" 2>&1) || { echo "$out"; fail "go tool pprof cannot read the heap profile"; }
  echo "$out" | grep -q "Type: inuse_space" || { echo "$out"; fail "pprof: default sample type is not inuse_space"; }
  echo "$out" | grep -Eq "^ +4(\.[0-9]+)?MB +100% .*leak_here$" || { echo "$out"; fail "pprof -top does not put leak_here first with 4MB"; }
else
  echo "note: go is not installed (golang-go): pprof not checked"
fi
echo ok
