#!/bin/bash
# Heap guard, issue 3: one function leaks 10 MiB, one churns 1 GiB (allocate, free at once), one
# holds 5 MiB and frees it before exit. Sampled at 65536 bytes the leak is estimated within 25%
# and the others are near zero; with every allocation sampled the figures are exact.
. "$(dirname "$0")/lib.sh"

build_c leaky <<'EOF'
#include <stdlib.h>
#include <string.h>
#define NOINLINE __attribute__((noinline, noclone))
static void *volatile sink;
static void **held;
/* 10240 x 1 KiB = 10485760 bytes, plus 4096 x 0 bytes is not asked: sizes are all 1 KiB. */
NOINLINE void leak_fn(void)
{
	for (int i = 0; i < 10240; i++) {
		char *p = malloc(1024);
		memset(p, 1, 16);
		sink = p;
	}
	__asm__ volatile("");
}
NOINLINE void churn_fn(void)
{
	for (long i = 0; i < (1L << 30) / 4096; i++) {
		char *p = (i & 1) ? malloc(4096) : calloc(1, 4096);
		p[0] = 1;
		sink = p;
		free(p);
	}
	__asm__ volatile("");
}
NOINLINE void hold_fn(void)
{
	held = malloc(5 * 1024 * sizeof(void *));
	for (int i = 0; i < 5 * 1024; i++)
		held[i] = malloc(1024);
	__asm__ volatile("");
}
NOINLINE void release_fn(void)
{
	for (int i = 0; i < 5 * 1024; i++)
		free(held[i]);
	free(held);
}
int main(void)
{
	hold_fn();
	leak_fn();
	churn_fn();
	release_fn();
	return 0;
}
EOF

# check REPORT MODE: MODE exact or sampled
check() {
  python3 - "$1" "$2" <<'EOF' || fail "heap figures wrong in $1 ($2)"
import json, sys
d = json.load(open(sys.argv[1])); mode = sys.argv[2]
h = d["heap"]
stacks = {s["id"]: [f["fn"] for f in s["frames"]] for s in d["stacks"]}
def site(fn):
    return [l for l in h["live"] if fn in stacks.get(l["stack"], [])]
leak, churn, hold = site("leak_fn"), site("churn_fn"), site("hold_fn")
lb = sum(l["bytes"] for l in leak); lo = sum(l["objects"] for l in leak)
cb = sum(l["bytes"] for l in churn); hb = sum(l["bytes"] for l in hold)
print(mode, "leak", lb, lo, "churn", cb, "hold", hb, "allocated", h["allocated_bytes"])
assert h["backend"] == "jemalloc", h["backend"]
assert h["allocated_bytes"] >= 10485760, h["allocated_bytes"]
# The innermost frame of the leak's stack is leak_fn itself (the hooks are skipped).
assert leak and stacks[leak[0]["stack"]][0] == "leak_fn", leak
if mode == "exact":
    assert h["sample_bytes"] == 1
    assert lb == 10485760 and lo == 10240, (lb, lo)
    assert not churn and not hold, (churn, hold)
else:
    assert h["sample_bytes"] == 65536
    assert abs(lb - 10485760) <= 0.25 * 10485760, lb
    assert cb <= 0.01 * 10485760 and hb <= 0.01 * 10485760, (cb, hb)
assert h["live"] == sorted(h["live"], key=lambda l: -l["bytes"]), "live not sorted by bytes"
EOF
}

for mode in exact sampled; do
  rate=1; [ $mode = sampled ] && rate=65536
  printf '{ "version": 1, "heap": { "sample_bytes": %s } }\n' $rate > policy-$mode.json
  rm -f reports/*
  timeout 60 env GUARD_POLICY=$T/policy-$mode.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports ./leaky || fail "leaky exited with $?"
  r=$(ls reports/*.json) || fail "no report"
  json_ok $r
  check $r $mode
done
echo ok
