#!/bin/bash
# Heap guard, issue 3: a site whose live bytes grow in growth_windows consecutive intervals is a
# leak suspect (and a heap.growth violation); a program with a steady heap, churning all the time,
# has none. Both run at once, ~5.5 s, growth windows of 1 s (report.interval_s 1).
. "$(dirname "$0")/lib.sh"

build_c service <<'EOF'
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define NOINLINE __attribute__((noinline, noclone))
static void *volatile sink;
static void *ring[1024];
static unsigned next;
/* A leak of about 1 MiB a second. */
NOINLINE void grow_fn(void)
{
	for (int i = 0; i < 100; i++) {
		char *p = malloc(1024);
		p[0] = 1;
		sink = p;
	}
	__asm__ volatile("");
}
/* A cache of 1 MiB that replaces its entries all the time. */
NOINLINE void steady_fn(void)
{
	for (int i = 0; i < 2000; i++) {
		unsigned k = next++ % 1024;
		free(ring[k]);
		ring[k] = malloc(1024);
		((char *)ring[k])[0] = 1;
	}
	__asm__ volatile("");
}
int main(int argc, char **argv)
{
	int growing = argc > 1 && strcmp(argv[1], "grow") == 0;
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int i = 0; i < 1024; i++)
		ring[i] = malloc(1024);
	for (int t = 0; t < 550; t++) {   /* 5.5 s */
		if (growing && t % 10 == 0)
			grow_fn();
		steady_fn();
		nanosleep(&tick, NULL);
	}
	return 0;
}
EOF

cat > policy.json <<'EOF'
{ "version": 1, "report": { "interval_s": 1 },
  "heap": { "sample_bytes": 4096, "growth_windows": 3 } }
EOF
mkdir -p reports/grow reports/steady
GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports/grow timeout 30 ./service grow &
g=$!
GUARD_POLICY=$T/policy.json LD_PRELOAD=$LG_SO GUARD_REPORT_DIR=$T/reports/steady timeout 30 ./service steady &
s=$!
wait $g || fail "the growing service exited with $?"
wait $s || fail "the steady service exited with $?"

final() { ls "$T/reports/$1"/guard-service-*.json | head -1; }
fg=$(final grow); fs=$(final steady)
[ -n "$fg" ] && [ -n "$fs" ] || fail "missing reports"
json_ok "$fg" "$fs"

python3 - "$fg" "$fs" <<'EOF' || fail "growth detection wrong"
import json, sys
g, s = (json.load(open(p)) for p in sys.argv[1:3])
def names(d, sid):
    return [f["fn"] for st in d["stacks"] if st["id"] == sid for f in st["frames"]]
gs = g["heap"]["suspects"]
print("grow suspects:", [(x["bytes"], x["windows"], names(g, x["stack"])[:2]) for x in gs])
print("steady suspects:", s["heap"]["suspects"])
assert gs, "the growing service has no suspect"
assert any(names(g, x["stack"])[0] == "grow_fn" and x["windows"] >= 3 for x in gs), gs
assert not any("steady_fn" in names(g, x["stack"]) for x in gs), "the steady site is a suspect"
assert any(v["kind"] == "heap.growth" for v in g["violations"]), g["violations"]
assert s["heap"]["suspects"] == [], s["heap"]["suspects"]
assert not any(v["kind"] == "heap.growth" for v in s["violations"]), s["violations"]
EOF
echo ok
