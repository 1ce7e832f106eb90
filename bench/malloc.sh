#!/bin/bash
# The mixed malloc benchmark (bench/malloc.c, 2 threads) under: plain glibc, jemalloc alone,
# libguard with every guard disabled (guard-off), only the heap guard at default sampling
# (guard-heap), the default policy (guard-default: every guard on, heap sampling at 512 KiB),
# libguard sampling every allocation (guard-every), jemalloc's own profiler (prof:true) and
# heaptrack. Figures are CPU time per operation inside the program (see bench/malloc.c). Runs are interleaved, repeated,
# and each figure is the median, as a ratio to jemalloc alone measured in the same run.
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
cat > "$W/every.json" <<'EOF'
{ "version": 1, "report": { "at_exit": false, "signal": null }, "heap": { "sample_bytes": 1 } }
EOF

# jemalloc's profiler: only if this build has it (config.prof).
prof=no
if MALLOC_CONF=stats_print:true LD_PRELOAD=$JE /bin/true 2>&1 | grep -q 'config.prof: true'; then
  prof=yes
fi
have_heaptrack=no
command -v heaptrack >/dev/null && have_heaptrack=yes

run() {   # run VARIANT TOUCH: prints ns/op
  local a="$OPS 8192 $2"
  case $1 in
    glibc)     "$W/malloc" $a ;;
    jemalloc)  LD_PRELOAD=$JE "$W/malloc" $a ;;
    guard-off) LD_PRELOAD=$LIB GUARD_POLICY=$W/off.json "$W/malloc" $a ;;
    guard-default) LD_PRELOAD=$LIB GUARD_POLICY=$W/default.json "$W/malloc" $a ;;
    guard-heap)    LD_PRELOAD=$LIB GUARD_POLICY=$W/heap.json "$W/malloc" $a ;;
    guard-every)   LD_PRELOAD=$LIB GUARD_POLICY=$W/every.json "$W/malloc" $a ;;
    je-prof)   (cd "$W" && LD_PRELOAD=$JE MALLOC_CONF=prof:true,prof_final:false "$W/malloc" $a) ;;
    heaptrack) (cd "$W" && heaptrack -o "$W/ht" "$W/malloc" $a 2>/dev/null | grep -E '^[0-9.]+$'; rm -f "$W"/ht*) ;;
  esac
}

variants="glibc jemalloc guard-off guard-heap guard-default guard-every"
[ $prof = yes ] && variants="$variants je-prof"
[ $have_heaptrack = yes ] && variants="$variants heaptrack"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for touch in $TOUCHES; do
  declare -A res=()
  for r in $(seq "$REPS"); do
    for v in $variants; do
      # heaptrack is ~20x slower: three repetitions are enough to take its median.
      if [ $v = heaptrack ] && [ "$r" -gt 3 ]; then continue; fi
      x=$(run $v $touch | tail -1)
      res[$v]="${res[$v]:-} $x"
    done
  done
  base=$(echo "${res[jemalloc]}" | median)
  echo "mixed malloc benchmark, TOUCH=$touch, 2 threads, $OPS ops/thread, $REPS interleaved runs, medians"
  echo "ratio to jemalloc alone ($base ns/op):"
  for v in $variants; do
    m=$(echo "${res[$v]}" | median)
    printf '  %-14s %8.2f ns/op  %6.3fx\n' "$v" "$m" "$(echo "$m / $base" | bc -l)"
  done
  unset res
done
[ $prof = yes ] || echo "  je-prof        (this jemalloc was built without profiling: not measured)"
[ $have_heaptrack = yes ] || echo "  heaptrack      (not installed: apt-get install heaptrack)"
echo "budgets: guard-default (and guard-heap) <= 1.05x, guard-every <= 4x, guard-off within 2%"

# Own memory at default sampling, against the program's heap: a report taken while the program's
# tables are full (interval report after 1 s of a longer run).
mkdir -p "$W/rep"
cat > "$W/report.json" <<'EOF'
{ "version": 1, "report": { "interval_s": 1, "at_exit": false, "signal": null } }
EOF
LD_PRELOAD=$LIB GUARD_POLICY=$W/report.json GUARD_REPORT_DIR=$W/rep "$W/malloc" $((OPS * 30)) >/dev/null
f=$(ls "$W"/rep/*.json 2>/dev/null | head -1)
if [ -n "$f" ]; then
  python3 - "$f" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
own, heap = d["guard"]["self_bytes"], d["heap"]["allocated_bytes"]
print("guard.self_bytes %d vs the program's heap (jemalloc stats.allocated) %d: %.2f%%"
      % (own, heap, 100.0 * own / heap if heap else 0))
EOF
else
  echo "no interval report was written: self_bytes not measured"
fi
