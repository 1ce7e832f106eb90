#!/bin/bash
# The mixed malloc benchmark (bench/malloc.c, 2 threads) under: plain glibc, jemalloc alone,
# libguard with every guard disabled (guard-off), libguard switched off with GUARD_DISABLE=1
# (guard-disabled: the hooks only forward), the heap guard on but sampling nothing (guard-hooks:
# sample_bytes 2^40, what the hooks alone cost while the heap guard is on), only the heap guard at
# default sampling (guard-heap), the default policy (guard-default: every guard on, heap sampling at 512 KiB),
# libguard sampling every allocation (guard-every), jemalloc's own profiler (prof:true), the
# same with its stack capture replaced by one constant frame (je-prof-1frame: jemalloc's sampling
# and bookkeeping alone, bench/je_prof_1frame.c) and heaptrack. Figures are CPU time per
# operation inside the program (see bench/malloc.c). Runs are interleaved in rounds; each ratio
# is the median over rounds of the ratio to jemalloc alone in the same round.
# Two workloads (bench/malloc.c's TOUCH): "1", where each block gets one byte written and the
# allocator is nearly all the work, and "full", where each block is filled as a program that
# uses its memory does. Also: guard.self_bytes against the program's heap at default sampling.
# usage: bench/malloc.sh [REPS] [OPS_PER_THREAD] [TOUCH...]
set -u
cd "$(dirname "$0")/.." || exit 2
REPS=${1:-7}
OPS=${2:-2000000}
shift $(( $# < 2 ? $# : 2 ))
TOUCHES=${*:-1 full}
LIB=$PWD/build/libguard.so
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -f "$LIB" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
[ -f "$JE" ] || { echo "libjemalloc.so.2 is missing (apt-get install libjemalloc2)" >&2; exit 2; }
W=$(mktemp -d /tmp/lg-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
cc -O2 -o "$W/malloc" bench/malloc.c -lpthread || exit 2
cat > "$W/off.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null },
  "heap": { "enabled": false }, "fd": { "enabled": false }, "clock": { "enabled": false },
  "locks": { "enabled": false }, "threads": { "enabled": false } }
EOF
cat > "$W/default.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null } }
EOF
cat > "$W/heap.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null },
  "fd": { "enabled": false }, "clock": { "enabled": false },
  "locks": { "enabled": false }, "threads": { "enabled": false } }
EOF
cat > "$W/hooks.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null },
  "heap": { "sample_bytes": 1099511627776 },
  "fd": { "enabled": false }, "clock": { "enabled": false },
  "locks": { "enabled": false }, "threads": { "enabled": false } }
EOF
cat > "$W/every.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null }, "heap": { "sample_bytes": 1 } }
EOF

# jemalloc's profiler: only if this build has it (config.prof).
prof=no
if MALLOC_CONF=stats_print:true LD_PRELOAD=$JE /bin/true 2>&1 | grep -q 'config.prof: true'; then
  prof=yes
fi
prof1=no
if [ $prof = yes ] &&
   cc -O2 -shared -fPIC -o "$W/je_prof_1frame.so" bench/je_prof_1frame.c -ljemalloc; then
  prof1=yes
fi
have_heaptrack=no
command -v heaptrack >/dev/null && have_heaptrack=yes

run() {   # run VARIANT TOUCH: prints ns/op
  local a="$OPS 8192 $2"
  case $1 in
    glibc)     "$W/malloc" $a ;;
    jemalloc)  LD_PRELOAD=$JE "$W/malloc" $a ;;
    guard-off) LD_PRELOAD=$LIB GUARD_POLICY=$W/off.json "$W/malloc" $a ;;
    guard-disabled) LD_PRELOAD=$LIB GUARD_DISABLE=1 "$W/malloc" $a ;;
    guard-default) LD_PRELOAD=$LIB GUARD_POLICY=$W/default.json "$W/malloc" $a ;;
    guard-hooks)   LD_PRELOAD=$LIB GUARD_POLICY=$W/hooks.json "$W/malloc" $a ;;
    guard-heap)    LD_PRELOAD=$LIB GUARD_POLICY=$W/heap.json "$W/malloc" $a ;;
    guard-every)   LD_PRELOAD=$LIB GUARD_POLICY=$W/every.json "$W/malloc" $a ;;
    je-prof)   (cd "$W" && LD_PRELOAD=$JE MALLOC_CONF=prof:true,prof_final:false "$W/malloc" $a) ;;
    # jemalloc first: preloaded alone, the hook's library would bring it in after libc.
    je-prof-1frame) (cd "$W" && LD_PRELOAD="$JE $W/je_prof_1frame.so" \
                     MALLOC_CONF=prof:true,prof_final:false "$W/malloc" $a) ;;
    heaptrack) (cd "$W" && heaptrack -o "$W/ht" "$W/malloc" $a 2>/dev/null | grep -E '^[0-9.]+$'; rm -f "$W"/ht*) ;;
  esac
}

variants="glibc jemalloc guard-off guard-disabled guard-hooks guard-heap guard-default guard-every"
[ $prof = yes ] && variants="$variants je-prof"
[ $prof1 = yes ] && variants="$variants je-prof-1frame"
[ $have_heaptrack = yes ] && variants="$variants heaptrack"
for touch in $TOUCHES; do
  : > "$W/res"
  for r in $(seq "$REPS"); do
    for v in $variants; do
      # heaptrack is ~20x slower: three repetitions are enough to take its median.
      if [ $v = heaptrack ] && [ "$r" -gt 3 ]; then continue; fi
      echo "$v $r $(run $v $touch | tail -1)" >> "$W/res"
    done
  done
  echo "mixed malloc benchmark, TOUCH=$touch, 2 threads, $OPS ops/thread, $REPS interleaved rounds"
  # Each variant's ratio to jemalloc alone is taken within a round (runs seconds apart), and the
  # median of those is reported: this VM's speed drifts by 10-30% over minutes.
  python3 - "$W/res" $variants <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 3]
val = {}
for v, r, x in rows:
    val.setdefault(v, {})[r] = float(x)
base = val["jemalloc"]
print("  %-14s %10s  %s" % ("variant", "ns/op", "ratio to jemalloc alone (median of per-round ratios, range)"))
for v in sys.argv[2:]:
    ratios = [val[v][r] / base[r] for r in val.get(v, {}) if r in base]
    if not ratios:
        continue
    print("  %-14s %10.2f  %6.3fx  (%.3f-%.3f)" % (v, statistics.median(val[v].values()),
          statistics.median(ratios), min(ratios), max(ratios)))
EOF
done
[ $prof = yes ] || echo "  je-prof        (this jemalloc was built without profiling: not measured)"
[ $have_heaptrack = yes ] || echo "  heaptrack      (not installed: apt-get install heaptrack)"
echo "budgets: guard-default (and guard-heap) <= 1.05x, guard-every <= 4x, guard-off within 2%"

# Own memory at default sampling, against the program's heap: reports every second of a run of a
# few seconds (one file per second, %t), and the one taken while both threads' tables were full
# (the largest heap) is used. self_bytes is read after the report's own snapshot is built, so it
# includes the report's working memory.
mkdir -p "$W/rep"
cat > "$W/report.json" <<'EOF'
{ "version": 1, "report": { "interval_s": 1, "at_exit": false, "signal": null, "name": "r-%t" } }
EOF
LD_PRELOAD=$LIB GUARD_POLICY=$W/report.json GUARD_REPORT_DIR=$W/rep "$W/malloc" $((OPS * 30)) >/dev/null
if ls "$W"/rep/*.json >/dev/null 2>&1; then
  python3 - "$W"/rep/*.json <<'EOF'
import json, sys
best = max((json.load(open(f)) for f in sys.argv[1:]), key=lambda d: d["heap"]["allocated_bytes"])
own, heap = best["guard"]["self_bytes"], best["heap"]["allocated_bytes"]
print("guard.self_bytes %d vs the program's heap (jemalloc stats.allocated) %d: %.2f%%"
      % (own, heap, 100.0 * own / heap if heap else 0))
EOF
else
  echo "no interval report was written: self_bytes not measured"
fi
