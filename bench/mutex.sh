#!/bin/bash
# Mutex benchmark: plain vs libguard (default policy: locks profiled, every contended
# acquisition sampled) vs a mutrace-style hook that times every lock. Figures are medians of
# interleaved runs (5 uncontended, 9 contended; the contended one also best-of, which is less
# sensitive to other load on a shared 2-core machine), measured in one run of this script, as
# ratios and differences against plain.
# Budgets (DESIGN.md): uncontended pair <= +3 ns over plain; 2-thread contended throughput
# >= 0.95x plain.
set -u
cd "$(dirname "$0")/.." || exit 2
B=build/bench; mkdir -p "$B"
SO=$PWD/build/libguard.so
[ -f "$SO" ] || { echo "build/libguard.so is missing: run make" >&2; exit 2; }
cc -std=gnu11 -O2 -o "$B/mutex" bench/mutex.c -lpthread || exit 2
cc -std=gnu11 -O2 -shared -fPIC -o "$B/mutex_timed_hook.so" bench/mutex_timed_hook.c -ldl || exit 2
R=$(mktemp -d /tmp/lg-bench-mutex-XXXXXX); trap 'rm -rf "$R"' EXIT

run() {   # run WHICH ARGS...: one figure
  case $1 in
    plain) shift; "$B/mutex" "$@" ;;
    guard) shift; LD_PRELOAD=$SO GUARD_REPORT_DIR=$R "$B/mutex" "$@" ;;
    timed) shift; LD_PRELOAD=$PWD/$B/mutex_timed_hook.so "$B/mutex" "$@" ;;
  esac
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for mode in "uncontended" "uncontended --threaded"; do
  declare -A res=()
  for i in 1 2 3 4 5; do   # interleaved, so that load from others hits every variant alike
    for w in plain guard timed; do res[$w]+="$(run $w $mode) "; done
  done
  p=$(echo ${res[plain]} | tr ' ' '\n' | median)
  g=$(echo ${res[guard]} | tr ' ' '\n' | median)
  t=$(echo ${res[timed]} | tr ' ' '\n' | median)
  awk -v m="$mode" -v p="$p" -v g="$g" -v t="$t" 'BEGIN {
    printf "%-24s plain %.2f ns/pair; libguard %.2fx (%+.2f ns, budget +3); always-timed hook %.2fx (%+.2f ns)\n",
      m, p, g / p, g - p, t / p, t - p }'
  unset res
done

declare -A res=()
for i in 1 2 3 4 5 6 7 8 9; do
  for w in plain guard timed; do res[$w]+="$(run $w contended) "; done
done
best() { sort -g | tail -1; }
p=$(echo ${res[plain]} | tr ' ' '\n' | median)
g=$(echo ${res[guard]} | tr ' ' '\n' | median)
t=$(echo ${res[timed]} | tr ' ' '\n' | median)
pb=$(echo ${res[plain]} | tr ' ' '\n' | best)
gb=$(echo ${res[guard]} | tr ' ' '\n' | best)
tb=$(echo ${res[timed]} | tr ' ' '\n' | best)
contended=$(ls -t "$R"/*.json | head -1 | xargs python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(c["count"] for c in d["locks"]["contended"]))' 2>/dev/null)
awk -v p="$p" -v g="$g" -v t="$t" -v pb="$pb" -v gb="$gb" -v tb="$tb" -v c="${contended:-?}" 'BEGIN {
  printf "%-24s plain %.2f M pairs/s; libguard %.3fx median, %.3fx best (budget >= 0.95x; %s of 400k acquisitions contended in its last run); always-timed hook %.3fx median, %.3fx best\n",
    "contended, 2 threads", p / 1e6, g / p, gb / pb, c, t / p, tb / pb }'
