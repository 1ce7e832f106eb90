#!/bin/bash
# Function names longer than the symbolizer's name chunk (one page) are kept whole, and the
# names copied around them stay intact: a stripped program that exports its functions
# (-rdynamic -s: named only through dladdr, whose names are copied) leaks from two functions
# with 17000- and 20000-character names (C++ templates get there) and from two with short names,
# every allocation sampled.
. "$(dirname "$0")/lib.sh"

L1=long_$(printf 'a%.0s' $(seq 17000))
L2=long_$(printf 'b%.0s' $(seq 20000))
build_c names -rdynamic -s <<EOF
#include <stdlib.h>
#define NOINLINE __attribute__((noinline, noclone))
void *volatile sink;
NOINLINE void short_one(void) { sink = malloc(100); __asm__ volatile(""); }
NOINLINE void $L1(void) { sink = malloc(200); __asm__ volatile(""); }
NOINLINE void short_two(void) { sink = malloc(300); __asm__ volatile(""); }
NOINLINE void $L2(void) { sink = malloc(400); __asm__ volatile(""); }
int main(void)
{
	$L1();
	short_one();
	$L2();
	short_two();
	return 0;
}
EOF

cat > policy.json <<'EOF'
{ "version": 1, "heap": { "sample_bytes": 1 }, "report": { "signal": null } }
EOF
GUARD_POLICY=$T/policy.json guarded ./names || fail "the program failed under the guard"
r=$(ls "$T"/reports/*.json | head -1)
[ -n "$r" ] || fail "no report"
python3 - "$r" "$L1" "$L2" <<'PY' || fail "names wrong in $r"
import json, sys
d = json.load(open(sys.argv[1]))
names = {f["fn"] for s in d["stacks"] for f in s["frames"] if f.get("fn")}
stacks = {s["id"]: s["frames"][0].get("fn") for s in d["stacks"]}
sizes = {stacks.get(l["stack"]): l["bytes"] for l in d["heap"]["live"]}
want = {"short_one": 100, sys.argv[2]: 200, "short_two": 300, sys.argv[3]: 400}
for fn, size in want.items():
    assert sizes.get(fn) == size, (fn[:20], len(fn), sizes.get(fn), [(k or "")[:20] for k in sizes])
assert "main" in names, sorted(n[:20] for n in names)
print("named:", sorted((n[:12], len(n)) for n in want))
PY
echo ok
